// SPDX-License-Identifier: Apache-2.0
// The KV cache's sliding-window rings: a local layer keeps min(window, capacity) slots, the
// budget token (KvCacheTokens) averages the slots over the model's layers, and the bytes per
// budget token a rank is charged (KvBytesPerBudgetToken) bound its caches whatever their
// capacity; the CPU backend's caches for Gemma 3 (tests/data/hf_models/gemma3_text, windows of 8
// on layers 0-2) are that small.
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
  const KvCache cache(windows, 10, 2, 8);
  EXPECT_EQ(cache.k[0].size(), 4u * 16);
  EXPECT_EQ(cache.v[1].size(), 4u * 16);
  EXPECT_EQ(cache.k[2].size(), 10u * 16);
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

TEST(KvCache, CpuBackendCachesOfGemma3KeepTheWindow) {
  auto w = LoadModelWeights(std::string(DF11_TEST_DATA_DIR) + "/hf_models/models/gemma3_text");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  CpuBackend b(&*w, {});
  const KvCache cache = b.NewCache(62);
  const size_t row = 2 * 16;  // kv heads x head_dim
  ASSERT_EQ(cache.k.size(), 4u);
  for (size_t l = 0; l < 3; ++l) EXPECT_EQ(cache.k[l].size(), 8 * row) << "layer " << l;
  EXPECT_EQ(cache.k[3].size(), 62 * row);
  EXPECT_EQ(cache.Bytes(), static_cast<int64_t>(2 * (3 * 8 + 62) * row * 4));
}

}  // namespace
}  // namespace df11
