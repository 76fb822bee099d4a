// SPDX-License-Identifier: Apache-2.0
// df11-ctl's output: jobs as JSON objects and results as JSON lines in the OpenAI batch output
// form, one line per item, in the order the results were stored (match them by custom_id):
//   {"id": "df11-item-<item_id>", "custom_id": "...",
//    "response": {"status_code": 200, "body": <the worker's response JSON>}, "error": null}
//   {"id": "df11-item-<item_id>", "custom_id": "...", "response": null,
//    "error": {"code": "item_failed", "message": "line 3: \"prompt\" must be a string"}}
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "launcher/control/control_client.h"
#include "runtime/core/status.h"

namespace df11 {

nlohmann::json JobToJson(const rpc::Job& job);
nlohmann::json ResultToOutputLine(const rpc::ItemResult& result);
nlohmann::json ClusterToJson(const rpc::ClusterState& cluster);

// After a failed call: OK to make it again, else the Status to give up with.
using RetryPolicy = std::function<Status(const Status& failure)>;

// Fetches every stored result of `job_id`, page by page, and writes one line each to `out`; a
// page whose fetch fails is fetched again while `retry` says so. Returns the number of lines.
StatusOr<int64_t> WriteJobResults(ControlClient& client, const std::string& job_id,
                                  std::ostream& out, int32_t page_size = 1000,
                                  const RetryPolicy& retry = nullptr);

}  // namespace df11
