// SPDX-License-Identifier: Apache-2.0
// EmbeddingGatherCuda against EmbeddingGatherRef, bit-exact: random BF16 bit patterns (NaN, inf
// and subnormals included), ids inside and outside a vocab shard, row widths around the block
// size. The output is poisoned (NaN) first. Skips without a CUDA device; links no glog or MPI.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/embedding/embedding.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::CompareExact;
using kernel_testing::DeviceArray;
using kernel_testing::FreshSeed;

class EmbeddingCudaTest : public kernel_testing::CudaKernelTest {};

TEST_F(EmbeddingCudaTest, MatchesRefBitExact) {
  struct Shape {
    int64_t vocab, hidden, n, row_begin;
  };
  for (const Shape& s : {Shape{1, 1, 1, 0}, Shape{50, 33, 7, 0}, Shape{300, 257, 64, 1000},
                         Shape{1000, 4096, 300, 5000}}) {
    // Gemma's embedding multiplier (sqrt(5376) rounded to BF16) on every other shape.
    const float scale = s.hidden % 2 == 1 ? 73.5f : 1.0f;
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("vocab " + std::to_string(s.vocab) + " hidden " + std::to_string(s.hidden) +
                 " n " + std::to_string(s.n) + " row_begin " + std::to_string(s.row_begin) +
                 " seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    std::vector<uint16_t> table(s.vocab * s.hidden);
    for (uint16_t& v : table) v = static_cast<uint16_t>(rng());
    // About a tenth of the ids fall outside the shard on either side (zero rows).
    std::uniform_int_distribution<int64_t> id_dist(s.row_begin - s.vocab / 20 - 2,
                                                   s.row_begin + s.vocab + s.vocab / 20 + 1);
    std::vector<int32_t> ids(s.n);
    for (int32_t& id : ids) id = static_cast<int32_t>(id_dist(rng));

    std::vector<float> expected(s.n * s.hidden);
    EmbeddingGatherRef(table.data(), s.vocab, s.hidden, ids.data(), s.n, s.row_begin, scale,
                       expected.data());
    DeviceArray<uint16_t> d_table(table);
    DeviceArray<int32_t> d_ids(ids);
    DeviceArray<float> d_out(s.n * s.hidden);
    d_out.Poison();
    EmbeddingGatherCuda(d_table.get(), s.vocab, s.hidden, d_ids.get(), s.n, s.row_begin, scale,
                        d_out.get(), stream_);
    Sync();
    EXPECT_EQ(CompareExact(expected, d_out.Download()), "");
  }
}

TEST_F(EmbeddingCudaTest, NoTokensWritesNothing) {
  DeviceArray<uint16_t> d_table(std::vector<uint16_t>(4 * 8, 0x3F80));
  DeviceArray<int32_t> d_ids(std::vector<int32_t>{1});
  DeviceArray<float> d_out(8);
  d_out.Poison();
  const std::vector<float> poisoned = d_out.Download();
  EmbeddingGatherCuda(d_table.get(), 4, 8, d_ids.get(), 0, 0, 1.0f, d_out.get(), stream_);
  Sync();
  EXPECT_EQ(CompareExact(poisoned, d_out.Download()), "");
}

}  // namespace
}  // namespace df11
