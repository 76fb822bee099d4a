// SPDX-License-Identifier: Apache-2.0
// One generation request and its result, and the checks that decide whether a request can be
// served at all (whatever else runs): a prompt of vocabulary ids that leaves room in the
// context, max_tokens >= 1 and sampling parameters the sampler serves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/sampling/sampling.h"

namespace df11 {

struct GenerationRequest {
  std::string id;               // echoed in the result (custom_id)
  std::vector<int32_t> prompt;  // token ids, BOS/template already applied
  SamplingParams sampling;
  uint64_t seed = 0;
  int64_t max_tokens = 128;       // most new tokens (clamped to what the context leaves)
  std::vector<std::string> stop;  // stop strings; the text ends before the first one
  // false: no drafted tokens for this request (EngineOptions::speculative)
  bool speculative = true;
};

struct GenerationResult {
  std::string id;
  std::vector<int32_t> tokens;  // generated ids (EOS excluded)
  std::string text;
  std::string finish_reason;  // "stop" or "length"
  int64_t prompt_tokens = 0;
  std::string error;  // non-empty: the request could not be served
  // From the start of the Generate call that served it (so waiting for a place counts): the
  // step that gave its first token (0-based, -1: none) and the seconds to that token and to the
  // end of its last step.
  int64_t first_token_step = -1;
  double first_token_seconds = -1;
  double finish_seconds = -1;
  // Speculative decoding (the request ran with drafts): tokens drafted for it and accepted, and
  // the steps that gave it tokens (tokens.size() / token_steps tokens per step).
  bool speculative = false;
  int64_t draft_tokens = 0;
  int64_t accepted_tokens = 0;
  int64_t token_steps = 0;
};

// The new tokens `request` may generate in a context of `context` positions: max_tokens,
// clamped to what the prompt leaves.
int64_t MaxNewTokens(const GenerationRequest& request, int64_t context);

// Why `request` can never be served by a model of `vocab` ids and `context` positions (the
// message names the field and what was expected), or "".
std::string RequestError(const GenerationRequest& request, int64_t vocab, int64_t context);

}  // namespace df11
