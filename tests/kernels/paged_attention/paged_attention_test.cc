// SPDX-License-Identifier: Apache-2.0
// PagedAttentionRef / PagedKvAppendRef: a cache appended in chunks through a shuffled block table
// gives the same bits as AttentionRef over a contiguous cache of the same BF16-rounded rows (with
// and without a sliding window and Gemma's soft-capping, MHA and GQA, block sizes 1 to 16, positions ending inside and on
// block edges); appended rows are the round-to-nearest-even BF16 of the input and land in the
// table's blocks only; with a window, blocks wholly before it are never read (poisoned: same
// output).
#include "kernels/paged_attention/paged_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/common/bf16.h"
#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

struct Case {
  int64_t t_total, t_new, n_heads, n_kv_heads, head_dim, block_tokens, window;
  float softcap = 0;  // > 0: Gemma's score soft-capping
};

AttentionParams ParamsOf(const Case& c) {
  return {c.window, AttentionScale(c.head_dim), c.softcap};
}

std::vector<float> Normal(int64_t n, std::mt19937_64* rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(*rng);
  return x;
}

// Runs `c` both ways; returns (paged, contiguous) outputs. The paged cache is filled in chunks
// (the prefix as earlier steps would have, then the step's own rows) into blocks given in a
// shuffled order, the pool poisoned (NaN) first and holding spare blocks.
std::pair<std::vector<float>, std::vector<float>> RunBoth(const Case& c, uint64_t seed,
                                                          bool poison_outside_window = false) {
  std::mt19937_64 rng(seed);
  const int64_t row = c.n_kv_heads * c.head_dim;
  const std::vector<float> q = Normal(c.t_new * c.n_heads * c.head_dim, &rng);
  const std::vector<float> k = Normal(c.t_total * row, &rng), v = Normal(c.t_total * row, &rng);
  const int64_t needed = (c.t_total + c.block_tokens - 1) / c.block_tokens, blocks = needed + 3;
  std::vector<int32_t> ids(static_cast<size_t>(blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const std::vector<int32_t> table(ids.begin(), ids.begin() + needed);
  std::vector<uint16_t> k_pool(static_cast<size_t>(blocks * c.block_tokens * row), 0x7FC1);
  std::vector<uint16_t> v_pool = k_pool;
  for (int64_t past = 0; past < c.t_total;) {
    const int64_t chunk =
        past < c.t_total - c.t_new ? std::min<int64_t>(7, c.t_total - c.t_new - past) : c.t_new;
    PagedKvAppendRef(k.data() + past * row, v.data() + past * row, chunk, row, past, table.data(),
                     c.block_tokens, k_pool.data(), v_pool.data());
    past += chunk;
  }
  if (poison_outside_window) {
    // Blocks wholly before the first query's window.
    const int64_t first = std::max<int64_t>(0, c.t_total - c.t_new + 1 - c.window);
    for (int64_t b = 0; b < first / c.block_tokens; ++b) {
      const size_t at = static_cast<size_t>(table[b] * c.block_tokens * row);
      std::fill_n(k_pool.begin() + at, c.block_tokens * row, 0x7FC1);
      std::fill_n(v_pool.begin() + at, c.block_tokens * row, 0x7FC1);
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> paged(q.size(), nan), contiguous(q.size(), nan);
  PagedAttentionRef(q.data(), k_pool.data(), v_pool.data(), table.data(), c.block_tokens, c.t_new,
                    c.t_total, c.n_heads, c.n_kv_heads, c.head_dim, ParamsOf(c), paged.data(), 3);
  std::vector<float> kr(k.size()), vr(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    kr[i] = Bf16ToFloat(FloatToBf16(k[i]));
    vr[i] = Bf16ToFloat(FloatToBf16(v[i]));
  }
  const int64_t past = c.t_total - c.t_new;
  const KvSource kv{kr.data(), vr.data(), past, kr.data() + past * row, vr.data() + past * row};
  AttentionRef(q.data(), kv, c.t_new, c.n_heads, c.n_kv_heads, c.head_dim, ParamsOf(c),
               contiguous.data(), 2);
  return {paged, contiguous};
}

std::string FirstBitMismatches(const std::vector<float>& expected,
                               const std::vector<float>& actual) {
  std::string report;
  int bad = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::memcmp(&expected[i], &actual[i], sizeof(float)) == 0) continue;
    if (++bad <= 8) {
      report += "  [" + std::to_string(i) + "] expected " + std::to_string(expected[i]) +
                " actual " + std::to_string(actual[i]) + "\n";
    }
  }
  return report;
}

TEST(PagedAttention, EqualsContiguousBf16CacheBitForBit) {
  const uint64_t seed = FreshSeed();
  const Case cases[] = {
      {1, 1, 2, 2, 4, 1, 0},      {37, 37, 4, 2, 8, 16, 0},  {48, 1, 4, 1, 16, 16, 0},
      {49, 1, 8, 2, 8, 16, 0},    {40, 5, 6, 3, 5, 3, 0},    {64, 16, 4, 4, 8, 4, 0},
      {50, 3, 4, 2, 8, 16, 10},   {33, 33, 2, 1, 4, 8, 16},  {90, 1, 4, 2, 8, 4, 32},
      {17, 2, 4, 2, 8, 16, 100},  {60, 4, 4, 2, 8, 16, 0, 2.0f}, {60, 4, 4, 2, 8, 16, 12, 2.0f},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "t_total " << c.t_total << " t_new " << c.t_new
                                    << " block_tokens " << c.block_tokens << " window "
                                    << c.window);
    const auto [paged, contiguous] = RunBoth(c, seed + static_cast<uint64_t>(c.t_total));
    EXPECT_EQ(FirstBitMismatches(contiguous, paged), "");
  }
}

TEST(PagedAttention, AWindowNeverReadsTheBlocksBeforeIt) {
  const uint64_t seed = FreshSeed();
  const Case c{100, 2, 4, 2, 8, 8, 20};
  const auto [intact, _] = RunBoth(c, seed);
  const auto [poisoned, contiguous] = RunBoth(c, seed, /*poison_outside_window=*/true);
  EXPECT_EQ(FirstBitMismatches(intact, poisoned), "");
  EXPECT_EQ(FirstBitMismatches(contiguous, poisoned), "");
}

TEST(PagedAttention, AppendRoundsToBf16IntoTheTablesBlocksOnly) {
  const int64_t row = 3, block_tokens = 2;
  const std::vector<int32_t> table = {2, 0};  // positions 0-1 in block 2, 2-3 in block 0
  const std::vector<float> k = {1.0f, 1.00390625f, 1.01171875f, -2.5f, 3e-3f, 7.0f};
  const std::vector<float> v = {0.5f, -1.0f, 1e20f, 4.0f, 5.0f, 6.0f};
  std::vector<uint16_t> k_pool(3 * block_tokens * row, 0xAAAA), v_pool = k_pool;
  // Two rows at positions 1 and 2: the end of block 2 and the start of block 0.
  PagedKvAppendRef(k.data(), v.data(), 2, row, 1, table.data(), block_tokens, k_pool.data(),
                   v_pool.data());
  for (int64_t c = 0; c < row; ++c) {
    EXPECT_EQ(k_pool[(2 * block_tokens + 1) * row + c], FloatToBf16(k[c]));
    EXPECT_EQ(v_pool[(0 * block_tokens + 0) * row + c], FloatToBf16(v[row + c]));
  }
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: nearest even is 1.
  EXPECT_EQ(k_pool[(2 * block_tokens + 1) * row + 1], 0x3F80);
  // 1 + 3 * 2^-8 is a tie between 1 + 2^-7 and 1 + 2^-6: nearest even is 1 + 2^-6.
  EXPECT_EQ(k_pool[(2 * block_tokens + 1) * row + 2], 0x3F82);
  int64_t untouched = 0;
  for (uint16_t x : k_pool) untouched += x == 0xAAAA;
  EXPECT_EQ(untouched, static_cast<int64_t>(k_pool.size()) - 2 * row);
}

}  // namespace
}  // namespace df11
