// SPDX-License-Identifier: Apache-2.0
// The KV budget of backends that reserve caches (KvCacheTokens: the slots a sliding-window layer
// would keep, averaged over the model's layers). The CPU backend's paged caches for Gemma 3
// (tests/data/hf_models/gemma3_text, windows of 8 on layers 0-2) are blocks of every position,
// one table for all layers (a window layer reads only its window), and its KV budget counts
// every layer. The groups a budget splits into (the engine's and the CUDA backend's, one
// function) fit the rank's layers.
#include "runtime/model/kv_cache.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/model/cpu_backend.h"
#include "runtime/model/model_weights.h"

namespace df11 {
namespace {

TEST(KvCache, BudgetTokensAverageTheWindowSlots) {
  const std::vector<int64_t> windows = {4, 4, 0};
  EXPECT_EQ(KvSlots(4, 10), 4);
  EXPECT_EQ(KvSlots(4, 3), 3);
  EXPECT_EQ(KvSlots(0, 10), 10);
  EXPECT_EQ(KvSlotsOfLayers(windows, 10), 18);
  EXPECT_EQ(KvCacheTokens(windows, 10), 6);  // 18 slots / 3 layers
  EXPECT_EQ(KvCacheTokens(windows, 3), 3);   // shorter than the window: every position
  EXPECT_EQ(KvCacheTokens(std::vector<int64_t>{0, 0}, 10), 10);
  EXPECT_EQ(KvCacheTokens({}, 10), 10);
}

TEST(KvCache, CpuBackendCachesOfGemma3AreBlocksOfEveryLayer) {
  auto w = LoadModelWeights(std::string(DF11_TEST_DATA_DIR) + "/hf_models/models/gemma3_text");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  CpuBackendOptions o;
  const int64_t per_token = 2 * 4 * (2 * 16) * 2;  // K and V, 4 layers, kv heads x head_dim, BF16
  o.kv_memory_bytes = 100 * per_token;
  CpuBackend b(&*w, o);
  const KvCache cache = b.NewCache(62);
  EXPECT_EQ(cache.block_tokens, 16);
  EXPECT_EQ(cache.blocks.size(), 4u);  // 62 positions
  EXPECT_EQ(b.KvTokenBudget(), 100);
}

// Gemma 3 27B's layers (every 6th of 62 global, the others with a window of 1024).
std::vector<int64_t> Gemma27bWindows() {
  std::vector<int64_t> w;
  for (int l = 0; l < 62; ++l) w.push_back((l + 1) % 6 == 0 ? 0 : 1024);
  return w;
}

// The budget a rank plans (KvBudgetBlocksIn) is the largest whose groups (KvGroupsOfBudget, the
// engine's split) its layers keep in its memory: a whole model on one GPU, and pipeline stages
// of other mixes of layers, a stage's missing group taking nothing. Smaller budgets (a
// --kv-tokens below the plan, the smallest rank's plan) give groups within the plan's, and the
// groups hold more sequences of 32768 than the pool without the saving.
TEST(KvCache, BudgetGroupsFitTheRanksLayers) {
  const std::vector<int64_t> model = Gemma27bWindows();
  const int64_t bt = 16, context = 32768;
  const std::vector<std::vector<int64_t>> ranks = {model,
                                                   {model.begin(), model.begin() + 31},
                                                   {model.begin() + 31, model.end()},
                                                   {0, 0, 0},
                                                   {1024, 1024}};
  for (const std::vector<int64_t>& local : ranks) {
    SCOPED_TRACE(std::to_string(local.size()) + " layers");
    const int64_t layer_blocks = 4577 * 62;  // ~74 k tokens of every layer
    const int64_t budget = KvBudgetBlocksIn(model, local, layer_blocks, bt, context);
    ASSERT_GT(budget, 0);
    const KvGroupBlocks groups = KvGroupsOfBudget(model, budget * bt, bt, context);
    EXPECT_EQ(groups.full, SplitKvBlocks(model, budget, bt, context).full);
    EXPECT_LE(KvLayerBlocksOf(groups, local), layer_blocks);
    EXPECT_GT(KvLayerBlocksOf(KvGroupsOfBudget(model, (budget + 1) * bt, bt, context), local),
              layer_blocks);
    for (int64_t b = 1; b < budget; b += 97) {
      const KvGroupBlocks smaller = KvGroupsOfBudget(model, b * bt, bt, context);
      ASSERT_LE(smaller.full, groups.full) << b;
      ASSERT_LE(smaller.sliding, groups.sliding) << b;
    }
  }
  EXPECT_EQ(KvLayerBlocksOf({100, 7}, std::vector<int64_t>{0, 0, 0}), 300);
  EXPECT_EQ(KvLayerBlocksOf({100, 7}, std::vector<int64_t>{1024, 1024}), 14);
  const int64_t budget = KvBudgetBlocksIn(model, model, 4577 * 62, bt, context);
  EXPECT_GE(budget, 4577);
  const KvGroupBlocks groups = KvGroupsOfBudget(model, budget * bt, bt, context);
  EXPECT_GT(KvSequencesOf(groups, 1024, bt, context), 3 * (4577 / 2048));
  // Without sliding-window layers: the blocks of every local layer, one group.
  const std::vector<int64_t> plain = {0, 0};
  EXPECT_EQ(KvBudgetBlocksIn(plain, plain, 101, bt, context), 50);
  EXPECT_EQ(KvGroupsOfBudget(plain, 50 * bt, bt, context).full, 50);
  EXPECT_EQ(KvGroupsOfBudget(plain, 50 * bt, bt, context).sliding, 0);
  EXPECT_EQ(KvSequencesOf({4096, 0}, 0, bt, context), 2);
}

}  // namespace
}  // namespace df11
