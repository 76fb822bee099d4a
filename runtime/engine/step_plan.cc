// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/step_plan.h"

#include <algorithm>
#include <limits>

namespace df11 {

std::vector<StepShare> PlanStep(std::span<RunningSequence> running, int64_t max_step_tokens) {
  int64_t room = max_step_tokens > 0 ? max_step_tokens : std::numeric_limits<int64_t>::max();
  std::vector<StepShare> plan;
  for (RunningSequence& s : running) {
    if (s.decoding()) {
      plan.push_back({&s, 1});
      --room;
    }
  }
  for (RunningSequence& s : running) {
    if (s.decoding()) continue;
    if (room <= 0 && !plan.empty()) break;
    const int64_t chunk = std::min(s.unfed(), std::max<int64_t>(room, 1));
    plan.push_back({&s, static_cast<size_t>(chunk)});
    room -= chunk;
  }
  for (StepShare& share : plan) {
    if (!share.sequence->decoding() || room <= 0) continue;
    const int64_t drafts =
        std::min(static_cast<int64_t>(share.sequence->drafts().size()), room);
    share.drafts = static_cast<size_t>(drafts);
    share.tokens += share.drafts;
    room -= drafts;
  }
  return plan;
}

int64_t PromptTokens(std::span<const StepShare> plan) {
  int64_t n = 0;
  for (const StepShare& share : plan) {
    if (!share.sequence->decoding()) n += static_cast<int64_t>(share.tokens);
  }
  return n;
}

}  // namespace df11
