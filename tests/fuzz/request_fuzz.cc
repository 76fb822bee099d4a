// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for what a client sends: one batch line read by the request rules both the
// worker and df11-ctl use (ParseRequestJson, ReadRequestFields), and the same bytes as a whole
// batch file (ReadBatchInput). Any input must give a parsed request or an error string; a parsed
// request must hold what the sampler serves.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "kernels/common/check.h"
#include "kernels/sampling/sampling.h"
#include "launcher/batch/request_fields.h"
#include "launcher/control/batch_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  std::string overflow;
  if (df11::ParseRequestJson(text, &j, &overflow).empty() && overflow.empty() && j.is_object()) {
    df11::RequestFields fields;
    const nlohmann::json& body = j.contains("body") && j["body"].is_object() ? j["body"] : j;
    if (df11::ReadRequestFields(body, &fields).empty()) {
      DF11_CHECK(fields.max_tokens >= 1);
      const char* rule = nullptr;
      DF11_CHECK(df11::InvalidSamplingField(fields.sampling, &rule) == df11::SamplingField::kNone);
    }
  }
  std::istringstream in(text);
  for (const df11::BatchInputLine& line : df11::ReadBatchInput(in)) {
    if (!line.error.empty()) continue;
    // A valid line is a JSON object naming its custom_id.
    const nlohmann::json r = nlohmann::json::parse(line.request_json, nullptr, false);
    DF11_CHECK(r.is_object() && !line.custom_id.empty());
  }
  return 0;
}
