// SPDX-License-Identifier: Apache-2.0
// EmbeddingGatherRef: exact BF16 → FP32 rows, zero rows for ids outside the shard, and shards
// that sum to the unsharded lookup (what the vocab-parallel all-reduce relies on).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/embedding/embedding.h"
#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

constexpr int64_t kVocab = 50;
constexpr int64_t kHidden = 33;

std::vector<uint16_t> RandomTable(std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint16_t> table(kVocab * kHidden);
  for (auto& v : table) v = FloatToBf16(dist(rng));
  return table;
}

std::vector<float> Gather(const uint16_t* table, int64_t vocab, const std::vector<int32_t>& ids,
                          int64_t row_begin, float scale = 1.0f) {
  std::vector<float> out(ids.size() * kHidden, std::numeric_limits<float>::quiet_NaN());
  EmbeddingGatherRef(table, vocab, kHidden, ids.data(), static_cast<int64_t>(ids.size()),
                     row_begin, scale, out.data());
  return out;
}

TEST(EmbeddingGather, ExactRowsAndZeroRowsOutsideTheTable) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto table = RandomTable(rng);
  std::vector<int32_t> ids = {0, kVocab - 1, -1, kVocab, std::numeric_limits<int32_t>::min(),
                              std::numeric_limits<int32_t>::max()};
  for (int i = 0; i < 100; ++i) ids.push_back(static_cast<int32_t>(rng() % (kVocab + 10)) - 5);
  auto out = Gather(table.data(), kVocab, ids, 0);
  int shown = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool inside = ids[i] >= 0 && ids[i] < kVocab;
    for (int64_t j = 0; j < kHidden; ++j) {
      const float expected = inside ? Bf16ToFloat(table[ids[i] * kHidden + j]) : 0.0f;
      const float actual = out[i * kHidden + j];
      if (std::memcmp(&expected, &actual, sizeof(float)) != 0 && shown++ < 8) {
        ADD_FAILURE() << "token " << i << " (id " << ids[i] << ") element " << j << ": expected "
                      << expected << " actual " << actual;
      }
    }
  }
}

TEST(EmbeddingGather, VocabShardsSumToTheFullLookup) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto table = RandomTable(rng);
  std::vector<int32_t> ids(64);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % kVocab);
  auto full = Gather(table.data(), kVocab, ids, 0);
  const int64_t split = 20;  // shard 0: rows [0, 20), shard 1: rows [20, 50)
  auto low = Gather(table.data(), split, ids, 0);
  auto high = Gather(table.data() + split * kHidden, kVocab - split, ids, split);
  for (size_t i = 0; i < full.size(); ++i) {
    ASSERT_EQ(low[i] + high[i], full[i]) << "element " << i << " (id " << ids[i / kHidden] << ")";
    ASSERT_TRUE(low[i] == 0.0f || high[i] == 0.0f) << "element " << i;
  }
}

// Gemma's embedding multiplier: each element is float(row) * scale, one FP32 product (62 is
// sqrt(3840) rounded to BF16), and zero rows stay zero.
TEST(EmbeddingGather, ScaledRowsAreOneFloatProduct) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto table = RandomTable(rng);
  const std::vector<int32_t> ids = {3, kVocab + 1, 0, 17};
  const float scale = 62.0f;
  auto out = Gather(table.data(), kVocab, ids, 0, scale);
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool inside = ids[i] >= 0 && ids[i] < kVocab;
    for (int64_t j = 0; j < kHidden; ++j) {
      const float expected = inside ? Bf16ToFloat(table[ids[i] * kHidden + j]) * scale : 0.0f;
      ASSERT_EQ(out[i * kHidden + j], expected) << "token " << i << " element " << j;
    }
  }
}

}  // namespace
}  // namespace df11
