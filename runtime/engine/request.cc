// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/request.h"

#include <algorithm>

namespace df11 {

int64_t MaxNewTokens(const GenerationRequest& request, int64_t context) {
  return std::min(request.max_tokens, context - static_cast<int64_t>(request.prompt.size()));
}

std::string RequestError(const GenerationRequest& request, int64_t vocab, int64_t context) {
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  if (prompt == 0) return "empty prompt";
  auto bad = std::find_if(request.prompt.begin(), request.prompt.end(),
                          [&](int32_t t) { return t < 0 || t >= vocab; });
  if (bad != request.prompt.end()) {
    return "token id " + std::to_string(*bad) + " is outside the vocabulary [0, " +
           std::to_string(vocab) + ")";
  }
  if (prompt >= context) {
    return "prompt of " + std::to_string(prompt) + " tokens does not fit the context of " +
           std::to_string(context) + " tokens (max_position_embeddings)";
  }
  if (request.max_tokens < 1) {
    return "\"max_tokens\" = " + std::to_string(request.max_tokens) + ": expected an integer >= 1";
  }
  return SamplingParamsError(request.sampling);
}

}  // namespace df11
