// SPDX-License-Identifier: Apache-2.0
// Tensor- and pipeline-parallel slices over plain sizes: stage splits, per-rank
// head/intermediate/vocab ranges for real model shapes (every index held by exactly one rank, kv
// heads replicated when fewer than tp), the errors for layouts that do not fit, and the row/column
// slicing helpers.
#include "parallel/sharding.h"

#include <gtest/gtest.h>

#include <random>

namespace df11 {
namespace {

TpDims Config(int64_t heads, int64_t kv, int64_t intermediate, int64_t vocab) {
  return {heads, kv, intermediate, vocab};
}

TpDims Llama8B() { return Config(32, 8, 14336, 128256); }
TpDims Llama405B() { return Config(128, 8, 53248, 128256); }

// Counts how many ranks hold each index of [0, n) given each rank's range.
std::vector<int> Coverage(int64_t n, const std::vector<Range>& ranges) {
  std::vector<int> count(n, 0);
  for (const Range& r : ranges) {
    EXPECT_LE(0, r.begin);
    EXPECT_LT(r.begin, r.end);
    EXPECT_LE(r.end, n);
    for (int64_t i = r.begin; i < r.end && i < n; ++i) ++count[i];
  }
  return count;
}

void ExpectExactCover(int64_t n, const std::vector<Range>& ranges, const char* what) {
  std::vector<int> count = Coverage(n, ranges);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(count[i], 1) << what << " index " << i;
  }
}

TEST(StageLayersTest, BalancedGivesEarlierStagesTheExtraLayer) {
  auto s = StageLayers(10, 4, {});
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(*s, (std::vector<Range>{{0, 3}, {3, 6}, {6, 8}, {8, 10}}));
  auto one = StageLayers(126, 1, {});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, (std::vector<Range>{{0, 126}}));
  auto even = StageLayers(126, 2, {});
  ASSERT_TRUE(even.ok());
  EXPECT_EQ(*even, (std::vector<Range>{{0, 63}, {63, 126}}));
}

TEST(StageLayersTest, ExplicitCounts) {
  auto s = StageLayers(32, 3, {10, 12, 10});
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(*s, (std::vector<Range>{{0, 10}, {10, 22}, {22, 32}}));
}

TEST(StageLayersTest, Errors) {
  auto bad_sum = StageLayers(32, 2, {10, 12});
  ASSERT_FALSE(bad_sum.ok());
  EXPECT_NE(bad_sum.error().find("sum to 22"), std::string::npos) << bad_sum.error();
  EXPECT_NE(bad_sum.error().find("32 layers"), std::string::npos);
  EXPECT_FALSE(StageLayers(32, 2, {32}).ok());       // wrong number of counts
  EXPECT_FALSE(StageLayers(32, 2, {0, 32}).ok());    // empty stage
  EXPECT_FALSE(StageLayers(32, 2, {-1, 33}).ok());   // negative
  auto too_few = StageLayers(3, 4, {});
  ASSERT_FALSE(too_few.ok());
  EXPECT_NE(too_few.error().find("3 layers"), std::string::npos);
  EXPECT_FALSE(StageLayers(8, 0, {}).ok());
}

// Checks the union of all ranks' slices for `c` at `tp`, and returns them.
std::vector<TpSlices> CheckedSlices(const TpDims& c, int tp) {
  std::vector<TpSlices> all;
  std::vector<Range> q, kv, inter, vocab;
  for (int r = 0; r < tp; ++r) {
    auto s = TensorParallelSlices(c, tp, r);
    EXPECT_TRUE(s.ok()) << "tp " << tp << " rank " << r << ": " << s.error();
    if (!s.ok()) return {};
    all.push_back(*s);
    q.push_back(s->q_heads);
    kv.push_back(s->kv_heads);
    inter.push_back(s->intermediate);
    vocab.push_back(s->vocab);
    // Every query head of the rank uses one of the rank's kv heads.
    const int64_t group = c.num_attention_heads / c.num_key_value_heads;
    for (int64_t h = s->q_heads.begin; h < s->q_heads.end; ++h) {
      EXPECT_GE(h / group, s->kv_heads.begin);
      EXPECT_LT(h / group, s->kv_heads.end);
    }
  }
  ExpectExactCover(c.num_attention_heads, q, "q head");
  ExpectExactCover(c.intermediate_size, inter, "intermediate row");
  ExpectExactCover(c.vocab_size, vocab, "vocab row");
  if (tp <= c.num_key_value_heads) {
    ExpectExactCover(c.num_key_value_heads, kv, "kv head");
  } else {
    // Replicated: each kv head on tp / kv_heads ranks.
    for (int n : Coverage(c.num_key_value_heads, kv)) EXPECT_EQ(n, tp / c.num_key_value_heads);
  }
  return all;
}

TEST(TensorParallelSlicesTest, Llama8BAtTp2To16) {
  const TpDims c = Llama8B();
  for (int tp : {1, 2, 4, 8, 16}) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    std::vector<TpSlices> s = CheckedSlices(c, tp);
    ASSERT_EQ(static_cast<int>(s.size()), tp);
    EXPECT_EQ(s[0].q_heads.size(), 32 / tp);
    EXPECT_EQ(s[0].intermediate.size(), 14336 / tp);
    EXPECT_EQ(s[0].kv_replicated, tp > 8);
    EXPECT_EQ(s[0].kv_heads.size(), tp > 8 ? 1 : 8 / tp);
  }
  std::vector<TpSlices> s16 = CheckedSlices(c, 16);
  ASSERT_EQ(s16.size(), 16u);
  EXPECT_EQ(s16[5].q_heads, (Range{10, 12}));
  EXPECT_EQ(s16[5].kv_heads, (Range{2, 3}));  // q heads 10, 11 use kv head 10 / 4 = 2
  EXPECT_EQ(s16[15].vocab, (Range{15 * 8016, 128256}));
  std::vector<TpSlices> s4 = CheckedSlices(c, 4);
  ASSERT_EQ(s4.size(), 4u);
  EXPECT_EQ(s4[3].kv_heads, (Range{6, 8}));
  EXPECT_EQ(s4[3].vocab, (Range{3 * 32064, 128256}));
}

TEST(TensorParallelSlicesTest, Llama405BAtTp8) {
  std::vector<TpSlices> s = CheckedSlices(Llama405B(), 8);
  ASSERT_EQ(s.size(), 8u);
  EXPECT_EQ(s[7].q_heads, (Range{112, 128}));
  EXPECT_EQ(s[7].kv_heads, (Range{7, 8}));
  EXPECT_FALSE(s[7].kv_replicated);
  EXPECT_EQ(s[7].intermediate, (Range{7 * 6656, 53248}));
}

TEST(TensorParallelSlicesTest, UnevenVocabLastRangeShorter) {
  std::vector<TpSlices> s = CheckedSlices(Config(8, 8, 64, 1001), 4);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].vocab, (Range{0, 251}));
  EXPECT_EQ(s[3].vocab, (Range{753, 1001}));
}

TEST(TensorParallelSlicesTest, Errors) {
  auto heads = TensorParallelSlices(Config(12, 4, 64, 100), 8, 0);
  ASSERT_FALSE(heads.ok());
  EXPECT_NE(heads.error().find("num_attention_heads 12"), std::string::npos) << heads.error();
  EXPECT_NE(heads.error().find("tp 8"), std::string::npos);

  auto kv = TensorParallelSlices(Config(24, 6, 64, 100), 4, 0);  // 6 kv heads >= 4, 6 % 4 != 0
  ASSERT_FALSE(kv.ok());
  EXPECT_NE(kv.error().find("num_key_value_heads 6"), std::string::npos);

  auto repl = TensorParallelSlices(Config(24, 3, 64, 100), 8, 0);  // 3 kv < 8, 8 % 3 != 0
  ASSERT_FALSE(repl.ok());
  EXPECT_NE(repl.error().find("num_key_value_heads 3"), std::string::npos);

  auto inter = TensorParallelSlices(Config(8, 8, 100, 100), 8, 0);
  ASSERT_FALSE(inter.ok());
  EXPECT_NE(inter.error().find("intermediate_size 100"), std::string::npos);

  // 10 rows in 8 ranges of 2: ranks 5..7 would be empty.
  auto vocab = TensorParallelSlices(Config(8, 8, 64, 10), 8, 0);
  ASSERT_FALSE(vocab.ok());
  EXPECT_NE(vocab.error().find("vocab_size 10"), std::string::npos);

  EXPECT_FALSE(TensorParallelSlices(Llama8B(), 0, 0).ok());
  EXPECT_FALSE(TensorParallelSlices(Llama8B(), 4, 4).ok());
  EXPECT_FALSE(TensorParallelSlices(Llama8B(), 4, -1).ok());
}

TEST(SliceTest, RowsAndColumnsReassembleTheMatrix) {
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 12, cols = 20;
  std::vector<uint16_t> m(rows * cols);
  for (uint16_t& x : m) x = static_cast<uint16_t>(rng());
  // Rows in 3 pieces, columns in 4 pieces; every element lands back where it came from.
  std::vector<uint16_t> rebuilt(m.size(), 0xFFFF);
  for (int p = 0; p < 3; ++p) {
    Range r{p * 4, (p + 1) * 4};
    std::vector<uint16_t> part(r.size() * cols, 0xDEAD);
    SliceRows(m.data(), rows, cols, r, part.data());
    for (int64_t i = 0; i < r.size(); ++i) {
      for (int64_t j = 0; j < cols; ++j) rebuilt[(r.begin + i) * cols + j] = part[i * cols + j];
    }
  }
  EXPECT_EQ(rebuilt, m);
  std::fill(rebuilt.begin(), rebuilt.end(), 0xFFFF);
  for (int p = 0; p < 4; ++p) {
    Range c{p * 5, (p + 1) * 5};
    std::vector<uint16_t> part(rows * c.size(), 0xDEAD);
    SliceColumns(m.data(), rows, cols, c, part.data());
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < c.size(); ++j) {
        rebuilt[i * cols + c.begin + j] = part[i * c.size() + j];
      }
    }
  }
  EXPECT_EQ(rebuilt, m);
}

}  // namespace
}  // namespace df11
