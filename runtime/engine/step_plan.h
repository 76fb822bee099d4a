// SPDX-License-Identifier: Apache-2.0
// What one forward step takes (one pass over the weights; with DF11 every pass decodes every
// layer): a token for every decoding sequence, then prompts in admission order, each cut into a
// chunk where it would take the step past max_step_tokens (chunked prefill: the rest follows in
// later steps), then, in the room left, decoding sequences' drafted tokens (speculative
// decoding: a sequence's drafts are cut to the room, never ahead of a prompt). A step always
// takes something when a sequence runs: a prompt chunk of at least one token when nothing
// decodes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/engine/sequence.h"

namespace df11 {

// One sequence's share of a step.
struct StepShare {
  RunningSequence* sequence;
  size_t tokens;  // fed this step: 1 + drafts when decoding, else a prompt chunk
  size_t drafts = 0;  // drafted tokens among them (the last ones)
};

// The shares of the next step over `running` (admission order); max_step_tokens 0: no limit.
std::vector<StepShare> PlanStep(std::span<RunningSequence> running, int64_t max_step_tokens);

// Prompt tokens in `plan` (0: a decode step).
int64_t PromptTokens(std::span<const StepShare> plan);

}  // namespace df11
