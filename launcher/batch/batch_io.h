// SPDX-License-Identifier: Apache-2.0
// Batch generation files: JSON lines in, JSON lines out. Input lines are
//   {"custom_id", "prompt" | "messages", "max_tokens"?, "temperature"?, "top_p"?, "top_k"?,
//    "min_p"?, "repetition_penalty"?, "seed"?, "stop"?}
// (the OpenAI batch form {"custom_id", "method", "url", "body": {...}} is accepted too);
// output lines are {"custom_id", "text", "token_ids", "finish_reason", "usage"} or
// {"custom_id", "error"} for a line that cannot be served.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/engine/engine.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

// Defaults for fields a line leaves out (the command-line flags).
struct BatchDefaults {
  int64_t max_tokens = 128;
  SamplingParams sampling;
  uint64_t seed = 0;
  bool chat = false;  // apply the chat template to "prompt" lines as one user message
};

// One parsed input line: a request, or the error that line gets.
struct BatchItem {
  std::string custom_id;
  std::optional<GenerationRequest> request;
  std::string error;
};

// Parses line `line_number` (1-based, for messages) of a batch file.
BatchItem ParseBatchLine(const std::string& line, int64_t line_number, const BatchDefaults& defaults,
                         const Tokenizer& tokenizer, const ChatTemplate* chat);

// Turns a prompt (plain or chat) into token ids.
StatusOr<std::vector<int32_t>> EncodePrompt(const std::string& prompt, bool chat,
                                            const Tokenizer& tokenizer, const ChatTemplate* chat_template);

nlohmann::json ResultToJson(const GenerationResult& result);
nlohmann::json ErrorToJson(const std::string& custom_id, const std::string& error);

}  // namespace df11
