// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/step_runner.h"

#include "kernels/common/check.h"
#include "runtime/engine/speculation.h"

namespace df11 {

bool HasDrafts(std::span<const SequenceStep> steps) {
  for (const SequenceStep& s : steps) {
    if (s.drafts > 0) return true;
  }
  return false;
}

Status LocalStepRunner::StepWithDrafts(std::span<const SequenceStep> steps, bool greedy_only,
                                       StepOutput* out, std::span<const SampleSpec> sample) {
  DF11_CHECK(greedy_only || sample.size() == steps.size());
  DF11_RETURN_IF_ERROR(backend_->Forward(steps, false, &out->logits));
  const int64_t v = backend_->weights().dims.vocab_rows;
  DF11_CHECK_MSG(static_cast<int64_t>(out->logits.size()) == LogitsRows(steps, false) * v,
                 "the backend returned no logits for drafted tokens");
  const float* row = out->logits.data();
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::span<const int32_t> drafts =
        steps[i].tokens.subspan(steps[i].tokens.size() - static_cast<size_t>(steps[i].drafts));
    const size_t before = out->tokens.size();
    if (greedy_only) {
      std::vector<int32_t> targets;
      for (size_t j = 0; j <= drafts.size(); ++j) targets.push_back(ArgmaxRef(row + j * v, v));
      AcceptGreedyDrafts(targets, drafts, &out->tokens);
    } else {
      uint64_t rng = sample[i].rng;
      VerifyDrafts(row, v, sample[i].params, sample[i].history, drafts, &rng, &out->tokens);
      out->rng.push_back(rng);
    }
    out->counts.push_back(static_cast<int32_t>(out->tokens.size() - before));
    row += static_cast<int64_t>(drafts.size() + 1) * v;
  }
  out->logits.clear();
  return Status::Ok();
}

Status LocalStepRunner::Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
                             std::span<const SampleSpec> sample) {
  out->tokens.clear();
  out->rng.clear();
  out->counts.clear();
  if (HasDrafts(steps) && (greedy_only || !sample.empty())) {
    return StepWithDrafts(steps, greedy_only, out, sample);
  }
  if (greedy_only) {
    out->logits.clear();
    return backend_->ForwardArgmax(steps, &out->tokens);
  }
  if (!sample.empty()) {
    out->logits.clear();
    return backend_->ForwardSample(steps, sample, &out->tokens, &out->rng);
  }
  return backend_->Forward(steps, false, &out->logits);
}

}  // namespace df11
