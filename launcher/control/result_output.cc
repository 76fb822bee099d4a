// SPDX-License-Identifier: Apache-2.0
#include "launcher/control/result_output.h"

namespace df11 {

using nlohmann::json;

json JobToJson(const rpc::Job& job) {
  return {{"id", job.id},
          {"label", job.label},
          {"state", rpc::to_string(job.state)},
          {"items_total", job.items_total},
          {"items_done", job.items_done},
          {"items_failed", job.items_failed},
          {"tokens_generated", job.tokens_generated},
          {"created_ms", job.created_ms},
          {"updated_ms", job.updated_ms},
          {"eta_s", job.eta_s},
          {"tokens_per_s", job.tokens_per_s}};
}

json ResultToOutputLine(const rpc::ItemResult& r) {
  json line = {{"id", "df11-item-" + std::to_string(r.item_id)}, {"custom_id", r.custom_id}};
  if (!r.error.empty()) {
    line["response"] = nullptr;
    line["error"] = {{"code", "item_failed"}, {"message", r.error}};
    return line;
  }
  // A worker reports JSON; anything else is passed on as a string rather than dropped.
  json body = json::parse(r.response_json, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) body = r.response_json;
  line["response"] = {{"status_code", 200}, {"body", std::move(body)}};
  line["error"] = nullptr;
  return line;
}

json ClusterToJson(const rpc::ClusterState& c) {
  json groups = json::array();
  for (const rpc::GroupStatus& g : c.groups) {
    groups.push_back({{"group_id", g.group_id},
                      {"ranks", g.ranks},
                      {"hosts", g.hosts},
                      {"devices", g.devices},
                      {"manifest_hash", g.manifest_hash},
                      {"registered_ms", g.registered_ms},
                      {"last_heartbeat_ms", g.last_heartbeat_ms},
                      {"alive", g.alive},
                      {"items_leased", g.items_leased},
                      {"items_in_flight", g.progress.items_in_flight},
                      {"tokens_generated", g.progress.tokens_generated},
                      {"tokens_per_s", g.progress.tokens_per_s}});
  }
  return {{"groups", std::move(groups)},
          {"items_queued", c.items_queued},
          {"items_leased", c.items_leased},
          {"jobs_active", c.jobs_active},
          {"now_ms", c.now_ms}};
}

StatusOr<int64_t> WriteJobResults(ControlClient& client, const std::string& job_id,
                                  std::ostream& out, int32_t page_size, const RetryPolicy& retry) {
  int64_t offset = 0;
  int64_t written = 0;
  for (;;) {
    StatusOr<rpc::ResultPage> fetched = client.FetchResults(job_id, offset, page_size);
    if (!fetched.ok()) {
      if (!retry) return fetched.status();
      DF11_RETURN_IF_ERROR(retry(fetched.status()));
      continue;
    }
    const rpc::ResultPage& page = *fetched;
    for (const rpc::ItemResult& r : page.results) {
      out << ResultToOutputLine(r).dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
      ++written;
    }
    if (!out) return Status::IoError("writing results of job " + job_id);
    if (page.results.empty() || page.end_of_job) break;
    offset = page.next_offset;
  }
  return written;
}

}  // namespace df11
