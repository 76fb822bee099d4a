// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/forward_backend.h"

#include "kernels/sampling/sampling.h"

namespace df11 {

int64_t TotalTokens(std::span<const SequenceStep> steps) {
  int64_t n = 0;
  for (const SequenceStep& s : steps) n += static_cast<int64_t>(s.tokens.size());
  return n;
}

Status ForwardBackend::ForwardArgmax(std::span<const SequenceStep> steps,
                                     std::vector<int32_t>* ids) {
  std::vector<float> logits;
  DF11_RETURN_IF_ERROR(Forward(steps, false, &logits));
  const int64_t v = weights().dims.vocab_rows;
  ids->clear();
  for (size_t r = 0; r * v < logits.size(); ++r) ids->push_back(ArgmaxRef(logits.data() + r * v, v));
  return Status::Ok();
}

}  // namespace df11
