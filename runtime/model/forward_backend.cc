// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/forward_backend.h"

#include <algorithm>
#include <string>

#include "kernels/sampling/sampling.h"

namespace df11 {

RopeParams RopeParamsOf(const ModelConfig& c, bool local) {
  const bool own = local && c.local_rope_theta > 0;
  const RopeScaling& s = own ? c.local_rope_scaling : c.rope_scaling;
  RopeParams rope;
  rope.head_dim = c.head_dim;
  rope.theta = own ? c.local_rope_theta : c.rope_theta;
  rope.scaling_type = s.type;
  rope.factor = s.factor;
  rope.low_freq_factor = s.low_freq_factor;
  rope.high_freq_factor = s.high_freq_factor;
  rope.original_max_position_embeddings = s.original_max_position_embeddings;
  rope.beta_fast = s.beta_fast;
  rope.beta_slow = s.beta_slow;
  rope.truncate = s.truncate;
  rope.attention_factor = s.attention_factor;
  rope.mscale = s.mscale;
  rope.mscale_all_dim = s.mscale_all_dim;
  return rope;
}

int64_t TotalTokens(std::span<const SequenceStep> steps) {
  int64_t n = 0;
  for (const SequenceStep& s : steps) n += static_cast<int64_t>(s.tokens.size());
  return n;
}

int64_t LogitsRows(std::span<const SequenceStep> steps, bool all_tokens) {
  int64_t rows = 0;
  for (const SequenceStep& s : steps) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    rows += all_tokens ? n : std::min(n, s.drafts + 1);
  }
  return rows;
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

Status ForwardBackend::ForwardSample(std::span<const SequenceStep> steps,
                                     std::span<const SampleSpec> specs,
                                     std::vector<int32_t>* tokens, std::vector<uint64_t>* rngs) {
  if (specs.size() != steps.size()) {
    return Status::InvalidArgument("ForwardSample: " + std::to_string(specs.size()) +
                                   " sampling specs for " + std::to_string(steps.size()) +
                                   " steps");
  }
  std::vector<float> logits;
  DF11_RETURN_IF_ERROR(Forward(steps, false, &logits));
  const int64_t v = weights().dims.vocab_rows;
  tokens->clear();
  rngs->clear();
  for (size_t s = 0; s < steps.size(); ++s) {
    uint64_t rng = specs[s].rng;
    tokens->push_back(SampleRef(logits.data() + s * v, v, specs[s].params,
                                specs[s].history.data(),
                                static_cast<int64_t>(specs[s].history.size()), &rng));
    rngs->push_back(rng);
  }
  return Status::Ok();
}

}  // namespace df11
