// SPDX-License-Identifier: Apache-2.0
// The KV budget of backends that reserve caches (KvCacheTokens: the slots a sliding-window layer
// would keep, averaged over the model's layers). The CPU backend's paged caches for Gemma 3
// (tests/data/hf_models/gemma3_text, windows of 8 on layers 0-2) are blocks of every position,
// one table for all layers (a window layer reads only its window), and its KV budget counts
// every layer.
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

}  // namespace
}  // namespace df11
