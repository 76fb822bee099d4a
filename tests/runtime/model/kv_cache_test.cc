// SPDX-License-Identifier: Apache-2.0
// The KV cache's sliding-window rings (device caches): a local layer keeps min(window, capacity)
// slots, the budget token (KvCacheTokens) averages the slots over the model's layers, and the
// bytes per budget token a rank is charged (KvBytesPerBudgetToken) bound its caches whatever
// their capacity. The CPU backend's paged caches for Gemma 3 (tests/data/hf_models/gemma3_text,
// windows of 8 on layers 0-2) are blocks of every position, one table for all layers (a window
// layer reads only its window), and its KV budget counts every layer.
#include "runtime/model/kv_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "runtime/model/cpu_backend.h"
#include "runtime/model/model_weights.h"

namespace df11 {
namespace {

TEST(KvCache, SlidingWindowLayersKeepTheirWindow) {
  const std::vector<int64_t> windows = {4, 4, 0};
  EXPECT_EQ(KvSlots(4, 10), 4);
  EXPECT_EQ(KvSlots(4, 3), 3);
  EXPECT_EQ(KvSlots(0, 10), 10);
  EXPECT_EQ(KvSlotsOfLayers(windows, 10), 18);
  EXPECT_EQ(KvCacheTokens(windows, 10), 6);  // 18 slots / 3 layers
  EXPECT_EQ(KvCacheTokens(windows, 3), 3);   // shorter than the window: every position
  EXPECT_EQ(KvCacheTokens(std::vector<int64_t>{0, 0}, 10), 10);
  EXPECT_EQ(KvCacheTokens({}, 10), 10);
  KvCache cache;  // a device cache's sizes
  cache.window = windows;
  cache.capacity = 10;
  cache.row = 2 * 8;
  EXPECT_EQ(cache.Slots(0), 4);
  EXPECT_EQ(cache.Slots(2), 10);
  EXPECT_EQ(cache.Bytes(), 2 * 18 * 16 * 4);
}

// A rank's caches never take more than its bytes per budget token times the tokens they are
// charged, and for some capacity exactly that: the budget is tight and safe.
TEST(KvCache, BytesPerBudgetTokenBoundEveryRank) {
  const std::vector<int64_t> model = {8, 8, 0, 8, 0, 16};
  const double row = 64;
  const std::vector<std::vector<int64_t>> ranks = {
      model, {8, 8, 0}, {8, 0, 16}, {0}, {8}, {8, 16}};
  for (const auto& rank : ranks) {
    const double per_token = KvBytesPerBudgetToken(rank, model, row);
    // The most a rank's bytes per (unrounded) model-wide token come to over the capacities.
    double tightest = 0;
    for (int64_t capacity = 1; capacity <= 2000; ++capacity) {
      const double bytes = row * static_cast<double>(KvSlotsOfLayers(rank, capacity));
      const double charged = per_token * static_cast<double>(KvCacheTokens(model, capacity));
      ASSERT_LE(bytes, charged * (1 + 1e-12)) << "capacity " << capacity;
      const double tokens = static_cast<double>(KvSlotsOfLayers(model, capacity)) /
                            static_cast<double>(model.size());
      tightest = std::max(tightest, bytes / tokens);
    }
    EXPECT_GT(tightest, per_token * 0.98);
  }
  // Every layer, or no window at all: exactly the rank's layers times the row.
  EXPECT_DOUBLE_EQ(KvBytesPerBudgetToken(model, model, row), row * 6);
  const std::vector<int64_t> full = {0, 0, 0};
  EXPECT_DOUBLE_EQ(KvBytesPerBudgetToken(std::vector<int64_t>{0, 0}, full, row), row * 2);
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
