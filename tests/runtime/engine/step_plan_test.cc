// SPDX-License-Identifier: Apache-2.0
// What a step takes: every decoding sequence's token first, then prompts in admission order cut
// where they would pass max_step_tokens (a later prompt waits whole), then drafted tokens in the
// room left; with no limit every prompt goes whole; a step always takes at least one prompt
// token. The KV budget: requests wait for
// room, a request that alone needs more than the budget is refused naming both figures, and the
// peak reservation is kept.
#include <gtest/gtest.h>

#include "runtime/engine/kv_budget.h"
#include "runtime/engine/step_plan.h"

namespace df11 {
namespace {

RunningSequence Prompt(size_t index, int length) {
  GenerationRequest r;
  for (int i = 0; i < length; ++i) r.prompt.push_back(10 + i);
  return RunningSequence(index, r, 4, KvCache(), nullptr);
}

RunningSequence Decoding(size_t index) {
  RunningSequence s = Prompt(index, 1);
  s.TakeToken(7, {}, {});
  return s;
}

std::vector<std::pair<size_t, size_t>> Shares(std::vector<RunningSequence>& running,
                                              int64_t max_step_tokens) {
  std::vector<std::pair<size_t, size_t>> out;
  for (const StepShare& s : PlanStep(running, max_step_tokens)) {
    out.push_back({s.sequence->index(), s.tokens});
  }
  return out;
}

using Plan = std::vector<std::pair<size_t, size_t>>;

TEST(StepPlan, DecodingTokensFirstThenPromptChunksWithinTheBudget) {
  std::vector<RunningSequence> running;
  running.push_back(Prompt(0, 5));
  running.push_back(Decoding(1));
  running.push_back(Prompt(2, 3));
  running.push_back(Decoding(3));
  EXPECT_EQ(Shares(running, 0), (Plan{{1, 1}, {3, 1}, {0, 5}, {2, 3}}));
  EXPECT_EQ(Shares(running, 6), (Plan{{1, 1}, {3, 1}, {0, 4}}));
  EXPECT_EQ(Shares(running, 8), (Plan{{1, 1}, {3, 1}, {0, 5}, {2, 1}}));
  EXPECT_EQ(Shares(running, 2), (Plan{{1, 1}, {3, 1}}));
  const std::vector<StepShare> plan = PlanStep(running, 8);
  EXPECT_EQ(PromptTokens(plan), 6);
}

TEST(StepPlan, DraftsTakeOnlyTheRoomPromptsLeave) {
  std::vector<RunningSequence> running;
  running.push_back(Decoding(0));
  running.push_back(Prompt(1, 3));
  running.push_back(Decoding(2));
  const std::vector<int32_t> three = {4, 5, 6}, two = {8, 9};
  running[0].SetDrafts(three);
  running[2].SetDrafts(two);
  EXPECT_EQ(Shares(running, 0), (Plan{{0, 4}, {2, 3}, {1, 3}}));
  // 2 decoding tokens + the 3-token prompt leave 3 of 8: the first sequence's drafts take them.
  EXPECT_EQ(Shares(running, 8), (Plan{{0, 4}, {2, 1}, {1, 3}}));
  EXPECT_EQ(Shares(running, 5), (Plan{{0, 1}, {2, 1}, {1, 3}}));
  const std::vector<StepShare> plan = PlanStep(running, 9);
  EXPECT_EQ(plan[0].drafts, 3u);
  EXPECT_EQ(plan[1].drafts, 1u);
  EXPECT_EQ(plan[2].drafts, 0u);
  EXPECT_EQ(PromptTokens(plan), 3);  // drafts are not prompt tokens
  // The drafts a share feeds are marked as such in its step.
  const SequenceStep step = running[2].Feed(plan[1].tokens);
  EXPECT_EQ(step.drafts, 1);
  EXPECT_EQ(std::vector<int32_t>(step.tokens.begin(), step.tokens.end()),
            (std::vector<int32_t>{7, 8}));
  EXPECT_TRUE(running[2].CompletesWith(plan[1].tokens));
  // Taking the step's token drops the drafts.
  running[2].TakeToken(11, {}, {});
  EXPECT_TRUE(running[2].drafts().empty());
  EXPECT_EQ(running[2].unfed(), 1);
}

TEST(StepPlan, APromptAloneMovesByAtLeastOneToken) {
  std::vector<RunningSequence> running;
  running.push_back(Prompt(0, 5));
  running[0].Fed(3);
  EXPECT_EQ(Shares(running, 1), (Plan{{0, 1}}));
  EXPECT_EQ(Shares(running, 4), (Plan{{0, 2}}));
  std::vector<RunningSequence> decoding;
  decoding.push_back(Decoding(0));
  EXPECT_EQ(PromptTokens(PlanStep(decoding, 0)), 0);  // a decode step
}

TEST(KvBudget, HoldsBackWhatDoesNotFitNowAndRefusesWhatNeverFits) {
  KvBudget budget(30);
  EXPECT_EQ(budget.Refusal(3, 27, 30), "");
  EXPECT_EQ(budget.Refusal(3, 40, 43),
            "needs 43 KV cache tokens (prompt 3 + max_tokens 40), more than the KV budget of 30 "
            "tokens");
  budget.Reserve(14);
  EXPECT_TRUE(budget.HasRoom(16));
  budget.Reserve(14);
  EXPECT_FALSE(budget.HasRoom(14));
  budget.Release(14);
  EXPECT_TRUE(budget.HasRoom(14));
  EXPECT_EQ(budget.reserved(), 14);
  EXPECT_EQ(budget.peak(), 28);
  KvBudget unlimited(0);
  EXPECT_EQ(unlimited.Refusal(1, int64_t{1} << 40, (int64_t{1} << 40) + 1), "");
  // Sliding-window layers keep only their window: 140 positions that cost 25 budget tokens fit,
  // and a refusal says why its figure is below prompt + max_tokens.
  EXPECT_EQ(budget.Refusal(100, 40, 25), "");
  EXPECT_EQ(budget.Refusal(100, 100, 40),
            "needs 40 KV cache tokens (prompt 100 + max_tokens 100, sliding-window layers keeping "
            "only their window), more than the KV budget of 30 tokens");
  EXPECT_TRUE(unlimited.HasRoom(int64_t{1} << 40));
}

}  // namespace
}  // namespace df11
