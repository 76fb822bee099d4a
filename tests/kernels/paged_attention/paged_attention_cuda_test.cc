// SPDX-License-Identifier: Apache-2.0
// The CUDA paged attention against PagedAttentionRef: a step of several sequences (a prompt, a
// chunk over an existing cache, single decode tokens; block sizes 1, 16 and 7; with and without
// a window, the window with Gemma's soft-capping; blocks wholly before the window released, -1
// in the tables) appended by PagedKvAppendCudaBatched into shuffled blocks and attended in one
// launch, the pools equal bit for bit to PagedKvAppendRef's and the outputs within tolerance; a
// captured graph replayed after the tables and positions changed on the device; block copies exact.
// Outputs are poisoned (NaN) first. Skips without a CUDA device.
// Tolerance |gpu - ref| <= 3e-5 + 1e-4 * |ref|, as kernels/attention's CUDA test (the same
// online softmax over the same BF16 values: only the summation order differs).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/paged_attention/paged_attention.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::CompareClose;
using kernel_testing::CompareExact;
using kernel_testing::DeviceArray;
using kernel_testing::FreshSeed;
using kernel_testing::NormalFloats;

class PagedAttentionCudaTest : public kernel_testing::CudaKernelTest {};

struct Seq {
  int64_t past, t_new;
};

// A step over `seqs`: host pools holding every sequence's past rows (appended by the reference),
// tables of shuffled blocks, the step's queries and rows; then the GPU appends the step's rows,
// attends, and both are compared with the reference.
void CheckStep(cudaStream_t stream, const std::vector<Seq>& seqs, int64_t block_tokens,
               int64_t window, bool through_graph) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("block_tokens " + std::to_string(block_tokens) + " window " +
               std::to_string(window) + " seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t heads = 8, kv = 2, hd = 64, row = kv * hd;
  const AttentionParams params{window, AttentionScale(hd), window > 0 ? 2.0f : 0.0f};
  int64_t stride = 1, tokens = 0, blocks = 2;
  for (const Seq& s : seqs) {
    const int64_t n = (s.past + s.t_new + block_tokens - 1) / block_tokens;
    stride = std::max(stride, n);
    blocks += n;
    tokens += s.t_new;
  }
  std::vector<int32_t> ids(static_cast<size_t>(blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> tables(seqs.size() * static_cast<size_t>(stride), -1), seq, pos;
  std::vector<uint16_t> k_pool(static_cast<size_t>(blocks * block_tokens * row), 0);
  std::vector<uint16_t> v_pool = k_pool;
  const std::vector<float> q = NormalFloats(tokens * heads * hd, 1.0f, rng);
  const std::vector<float> k_new = NormalFloats(tokens * row, 1.0f, rng);
  const std::vector<float> v_new = NormalFloats(tokens * row, 1.0f, rng);
  size_t next = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t n = (seqs[i].past + seqs[i].t_new + block_tokens - 1) / block_tokens;
    for (int64_t b = 0; b < n; ++b) tables[i * stride + b] = ids[next++];
    const std::vector<float> k = NormalFloats(seqs[i].past * row, 1.0f, rng);
    const std::vector<float> v = NormalFloats(seqs[i].past * row, 1.0f, rng);
    PagedKvAppendRef(k.data(), v.data(), seqs[i].past, row, 0, &tables[i * stride], block_tokens,
                     k_pool.data(), v_pool.data());
    for (int64_t j = 0; j < seqs[i].t_new; ++j) {
      seq.push_back(static_cast<int32_t>(i));
      pos.push_back(static_cast<int32_t>(seqs[i].past + j));
    }
  }
  if (window > 0) {
    // Blocks wholly before a sequence's first visible position are released (-1, as a block
    // manager's sliding-window group leaves them): the kernels must never read them.
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int64_t first =
          FirstVisiblePosition(seqs[i].past + seqs[i].t_new, seqs[i].t_new, window);
      for (int64_t b = 0; b < first / block_tokens; ++b) tables[i * stride + b] = -1;
    }
  }
  DeviceArray<float> d_q(q), d_kn(k_new), d_vn(v_new), d_out(q.size());
  DeviceArray<uint16_t> d_k(k_pool), d_v(v_pool);
  DeviceArray<int32_t> d_tables(tables), d_seq(seq), d_pos(pos);
  d_out.Poison();
  auto enqueue = [&] {
    PagedKvAppendCudaBatched(d_kn.get(), d_vn.get(), tokens, row, d_tables.get(), stride,
                             block_tokens, d_seq.get(), d_pos.get(), d_k.get(), d_v.get(), stream);
    PagedAttentionCudaBatched(d_q.get(), d_k.get(), d_v.get(), d_tables.get(), stride,
                              block_tokens, d_seq.get(), d_pos.get(), tokens, heads, kv, hd,
                              params, d_out.get(), stream);
  };
  if (through_graph) {
    // Captured with other positions and a reversed table, replayed after the real ones arrive.
    std::vector<int32_t> other_pos(pos.size(), 0), other_tables(tables.rbegin(), tables.rend());
    d_pos.Upload(other_pos);
    d_tables.Upload(other_tables);
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    DF11_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    enqueue();
    DF11_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    DF11_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    DF11_CUDA_CHECK(cudaGraphDestroy(graph));
    d_pos.Upload(pos);
    d_tables.Upload(tables);
    DF11_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
    DF11_CUDA_CHECK(cudaGraphExecDestroy(exec));
  } else {
    enqueue();
    DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  std::vector<float> expected(q.size());
  int64_t t = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    PagedKvAppendRef(k_new.data() + t * row, v_new.data() + t * row, seqs[i].t_new, row,
                     seqs[i].past, &tables[i * stride], block_tokens, k_pool.data(),
                     v_pool.data());
    PagedAttentionRef(q.data() + t * heads * hd, k_pool.data(), v_pool.data(),
                      &tables[i * stride], block_tokens, seqs[i].t_new,
                      seqs[i].past + seqs[i].t_new, heads, kv, hd, params,
                      expected.data() + t * heads * hd, 4);
    t += seqs[i].t_new;
  }
  EXPECT_EQ(CompareExact(k_pool, d_k.Download()), "");
  EXPECT_EQ(CompareExact(v_pool, d_v.Download()), "");
  EXPECT_EQ(CompareClose(expected, d_out.Download(), 3e-5, 1e-4), "");
}

const std::vector<Seq> kStep = {{0, 37}, {45, 5}, {100, 1}, {16, 1}, {1, 1}};

TEST_F(PagedAttentionCudaTest, StepOfSeveralSequencesMatchesTheReference) {
  for (int64_t block_tokens : {1, 16, 7}) {
    for (int64_t window : {0, 20}) CheckStep(stream_, kStep, block_tokens, window, false);
  }
}

TEST_F(PagedAttentionCudaTest, GraphReplaysWithTablesAndPositionsChangedOnDevice) {
  CheckStep(stream_, kStep, 16, 0, true);
}

TEST_F(PagedAttentionCudaTest, BlockCopiesAreExact) {
  std::mt19937_64 rng(FreshSeed());
  const int64_t blocks = 6, elems = 16 * 128;
  std::vector<uint16_t> k(static_cast<size_t>(blocks * elems)), v(k.size());
  for (auto& x : k) x = static_cast<uint16_t>(rng());
  for (auto& x : v) x = static_cast<uint16_t>(rng());
  DeviceArray<uint16_t> d_k(k), d_v(v);
  const std::vector<int32_t> from = {4, 0}, to = {1, 5};
  DeviceArray<int32_t> d_from(from), d_to(to);
  PagedKvCopyBlocksCuda(d_from.get(), d_to.get(), 2, elems, d_k.get(), d_v.get(), stream_);
  Sync();
  for (size_t c = 0; c < from.size(); ++c) {
    std::copy_n(k.begin() + from[c] * elems, elems, k.begin() + to[c] * elems);
    std::copy_n(v.begin() + from[c] * elems, elems, v.begin() + to[c] * elems);
  }
  EXPECT_EQ(CompareExact(k, d_k.Download()), "");
  EXPECT_EQ(CompareExact(v, d_v.Download()), "");
}

}  // namespace
}  // namespace df11
