// SPDX-License-Identifier: Apache-2.0
// Reads a batch file for submission without a model: checks each JSON line's shape and values and
// turns it into an item (request_json = the line, with "custom_id" filled in as "line-N" when
// missing) or into a per-line error. Accepted lines, as vllm run-batch takes them:
//   {"custom_id", "method": "POST", "url": "/v1/completions" | "/v1/chat/completions",
//    "body": {"prompt" | "messages", "max_tokens", "temperature", "top_p", "seed", "stop", ...}}
// and the plain form {"custom_id", "prompt" | "messages", "max_tokens", ...}. Blank lines are
// skipped; custom_ids must be unique within a file.
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

namespace df11 {

struct BatchInputLine {
  int64_t line_number = 0;  // 1-based
  std::string custom_id;
  std::string request_json;  // the line as JSON (empty when `error` is set and it did not parse)
  std::string error;         // "line N: <what is wrong>"; empty for a valid line
};

// Returns one entry per non-blank line, valid or not.
std::vector<BatchInputLine> ReadBatchInput(std::istream& in);

}  // namespace df11
