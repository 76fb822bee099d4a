// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/step_runner.h"

namespace df11 {

Status LocalStepRunner::Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
                             std::span<const SampleSpec> sample) {
  out->tokens.clear();
  out->rng.clear();
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
