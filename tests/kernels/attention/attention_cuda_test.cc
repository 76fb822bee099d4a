// SPDX-License-Identifier: Apache-2.0
// The CUDA attention (AttentionCudaBatched, KvAppendCudaBatched) against AttentionRef, one
// sequence at a time through the step kernels (its cache the only table entry, its new rows the
// step's): prefill (t_new = t_total), decode (one query over a long cache), a chunk continuing a
// cache, MHA and GQA groups, head_dim 1 to 256, cache lengths on the 32-position tile edges,
// peaked scores (q scaled up, so the running max moves between tiles), sliding windows (shorter,
// longer and on the tile edges), Gemma's query_pre_attn_scalar scale and score soft cap, and a
// sliding-window layer's ring cache over steps longer and shorter than the ring; a captured CUDA
// graph replayed after its device tables changed, and a whole step of several sequences in one
// launch, with and without a window or a ring. The output is poisoned (NaN) first. Skips
// without a CUDA device.
// Tolerance |gpu - ref| <= atol + 1e-4 * |ref| with q, k, v ~ N(0, 1): outputs are convex
// combinations of v rows (|out| <~ 4). The dot products are summed in another order (~1e-6 on a
// score), the online softmax rescales instead of normalising first, and the weighted sum of up
// to 4K rows rounds differently; atol 3e-5 is ~10x the typical difference. Scaling q by 8
// multiplies score errors by 8, hence atol 2e-4 there.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "kernels/attention/attention.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::CompareClose;
using kernel_testing::CompareExact;
using kernel_testing::DeviceArray;
using kernel_testing::FreshSeed;
using kernel_testing::NormalFloats;

constexpr double kRtol = 1e-4;

// Positions past, past + 1, ..., past + t_new - 1.
std::vector<int32_t> Positions(int64_t past, int64_t t_new) {
  std::vector<int32_t> pos(static_cast<size_t>(t_new));
  for (int64_t i = 0; i < t_new; ++i) pos[i] = static_cast<int32_t>(past + i);
  return pos;
}

// The step kernels' device tables for one sequence: its caches are entry 0, and its t_new
// queries sit at positions past..past + t_new - 1 (the tables hold at least one entry, so no
// copy is empty).
struct OneSequence {
  OneSequence(const float* k_cache, const float* v_cache, int64_t past, int64_t t_new)
      : k(std::vector<float*>{const_cast<float*>(k_cache)}),
        v(std::vector<float*>{const_cast<float*>(v_cache)}),
        seq(std::vector<int32_t>(static_cast<size_t>(std::max<int64_t>(t_new, 1)), 0)),
        pos(Positions(past, std::max<int64_t>(t_new, 1))),
        past(std::vector<int32_t>(static_cast<size_t>(std::max<int64_t>(t_new, 1)),
                                  static_cast<int32_t>(past))) {}
  DeviceArray<float*> k, v;
  DeviceArray<int32_t> seq, pos, past;
};

// Attention of one sequence's t_new queries: positions before `past` in its caches (a ring of
// `ring` slots when ring > 0), its own in k_new / v_new. Waits for the stream (the tables are
// freed on return).
void AttentionCuda(const float* q, const float* k_cache, const float* v_cache, const float* k_new,
                   const float* v_new, int64_t past, int64_t t_new, int64_t n_heads,
                   int64_t n_kv_heads, int64_t head_dim, int64_t ring,
                   const AttentionParams& params, float* out, cudaStream_t stream) {
  OneSequence t(k_cache, v_cache, past, t_new);
  AttentionCudaBatched(q, k_new, v_new, t.k.get(), t.v.get(), t.seq.get(), t.pos.get(),
                       t.past.get(), t_new, n_heads, n_kv_heads, head_dim, ring, params, out,
                       stream);
  DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// Appends t_new K/V rows of one sequence at positions past...; waits for the stream.
void KvAppendCuda(const float* k_new, const float* v_new, int64_t t_new, int64_t row, int64_t past,
                  int64_t ring, float* k_cache, float* v_cache, cudaStream_t stream) {
  OneSequence t(k_cache, v_cache, past, t_new);
  KvAppendCudaBatched(k_new, v_new, t_new, row, t.seq.get(), t.pos.get(), ring, t.k.get(),
                      t.v.get(), stream);
  DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
}

struct Case {
  int64_t t_new, t_total, n_heads, n_kv_heads, head_dim;
  float q_scale;
  double atol;
  int64_t window = 0;
  float scale = 0;    // 0: head_dim^-0.5
  float softcap = 0;  // 0: none
};

AttentionParams ParamsOf(const Case& c) {
  return {c.window, c.scale > 0 ? c.scale : AttentionScale(c.head_dim), c.softcap};
}

class AttentionCudaTest : public kernel_testing::CudaKernelTest {
 protected:
  void ExpectMatchesRef(const Case& c) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("t_new " + std::to_string(c.t_new) + " t_total " + std::to_string(c.t_total) +
                 " heads " + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) +
                 " head_dim " + std::to_string(c.head_dim) + " q_scale " +
                 std::to_string(c.q_scale) + " window " + std::to_string(c.window) + " scale " +
                 std::to_string(c.scale) + " softcap " + std::to_string(c.softcap) + " seed " +
                 std::to_string(seed));
    std::mt19937_64 rng(seed);
    const int64_t row = c.n_kv_heads * c.head_dim, past = c.t_total - c.t_new;
    const std::vector<float> q = NormalFloats(c.t_new * c.n_heads * c.head_dim, c.q_scale, rng);
    const std::vector<float> k = NormalFloats(c.t_total * row, 1.0f, rng);
    const std::vector<float> v = NormalFloats(c.t_total * row, 1.0f, rng);
    std::vector<float> expected(q.size());
    const KvSource kv{k.data(), v.data(), past, 0, k.data() + past * row, v.data() + past * row};
    AttentionRef(q.data(), kv, c.t_new, c.n_heads, c.n_kv_heads, c.head_dim, ParamsOf(c),
                 expected.data(), 4);
    DeviceArray<float> d_q(q);
    DeviceArray<float> d_k(k);
    DeviceArray<float> d_v(v);
    DeviceArray<float> d_out(q.size());
    d_out.Poison();
    AttentionCuda(d_q.get(), d_k.get(), d_v.get(), d_k.get() + past * row,
                  d_v.get() + past * row, past, c.t_new, c.n_heads, c.n_kv_heads, c.head_dim, 0,
                  ParamsOf(c), d_out.get(), stream_);
    Sync();
    EXPECT_EQ(CompareClose(expected, d_out.Download(), c.atol, kRtol), "");
  }
  void CheckGraphReplay(int64_t window);
  void CheckBatched(int64_t window, int64_t ring);
};

TEST_F(AttentionCudaTest, Prefill) {
  ExpectMatchesRef({37, 37, 8, 2, 64, 1.0f, 3e-5});
  ExpectMatchesRef({16, 16, 4, 4, 256, 1.0f, 3e-5});
  ExpectMatchesRef({3, 3, 2, 1, 1, 1.0f, 3e-5});
  ExpectMatchesRef({100, 100, 4, 2, 128, 8.0f, 2e-4});
}

TEST_F(AttentionCudaTest, Decode) {
  for (int64_t t_total : {1, 31, 32, 33, 64, 65, 4097}) {
    ExpectMatchesRef({1, t_total, 4, 1, 128, 1.0f, 3e-5});
  }
  ExpectMatchesRef({1, 1000, 8, 8, 80, 8.0f, 2e-4});
}

TEST_F(AttentionCudaTest, ChunkOverExistingCache) {
  ExpectMatchesRef({5, 70, 6, 3, 80, 1.0f, 3e-5});
  ExpectMatchesRef({40, 300, 16, 2, 128, 1.0f, 3e-5});
}

TEST_F(AttentionCudaTest, SlidingWindow) {
  for (int64_t window : {1, 5, 31, 32, 33, 64, 200}) {
    ExpectMatchesRef({100, 100, 4, 2, 64, 1.0f, 3e-5, window});  // prefill
    ExpectMatchesRef({1, 4097, 4, 1, 128, 1.0f, 3e-5, window});  // decode, long cache
    ExpectMatchesRef({40, 300, 8, 2, 128, 1.0f, 3e-5, window});  // chunk over a cache
  }
  ExpectMatchesRef({100, 100, 4, 2, 128, 8.0f, 2e-4, 40});
}

TEST_F(AttentionCudaTest, Gemma3ScaleAndSoftcap) {
  // query_pre_attn_scalar 168 on head_dim 128 (27B), and a soft cap that bends scores.
  ExpectMatchesRef({37, 37, 8, 4, 128, 1.0f, 3e-5, 0, 0.0771517f, 0.0f});
  ExpectMatchesRef({40, 300, 8, 2, 128, 4.0f, 2e-4, 33, 0.0771517f, 1.5f});
  ExpectMatchesRef({1, 4097, 4, 1, 256, 1.0f, 3e-5, 1024, 0.0625f, 50.0f});
}

// A sliding-window layer's ring (slots = the window) through prefill chunks longer than the ring
// and single tokens: after each step the ring equals the reference ring (KvAppendRef) bit for
// bit and the outputs match AttentionRef on it.
TEST_F(AttentionCudaTest, RingCacheMatchesRef) {
  const int64_t heads = 8, kv = 2, hd = 64, row = kv * hd, window = 40;
  const int64_t steps[] = {100, 1, 1, 7, 33, 1, 64, 1};
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<float> k_ring(window * row, 0.0f), v_ring(window * row, 0.0f);
  DeviceArray<float> d_k(k_ring), d_v(v_ring);
  const AttentionParams params{window, AttentionScale(hd), 0.0f};
  int64_t past = 0;
  for (int64_t n : steps) {
    const std::vector<float> q = NormalFloats(n * heads * hd, 1.0f, rng);
    const std::vector<float> k_new = NormalFloats(n * row, 1.0f, rng);
    const std::vector<float> v_new = NormalFloats(n * row, 1.0f, rng);
    std::vector<float> expected(q.size());
    const KvSource src{k_ring.data(), v_ring.data(), past, window, k_new.data(), v_new.data()};
    AttentionRef(q.data(), src, n, heads, kv, hd, params, expected.data(), 4);
    KvAppendRef(k_new.data(), v_new.data(), n, row, past, window, k_ring.data(), v_ring.data());
    DeviceArray<float> d_q(q), d_kn(k_new), d_vn(v_new), d_out(q.size());
    d_out.Poison();
    AttentionCuda(d_q.get(), d_k.get(), d_v.get(), d_kn.get(), d_vn.get(), past, n, heads, kv, hd,
                  window, params, d_out.get(), stream_);
    KvAppendCuda(d_kn.get(), d_vn.get(), n, row, past, window, d_k.get(), d_v.get(), stream_);
    EXPECT_EQ(CompareClose(expected, d_out.Download(), 3e-5, kRtol), "") << "step at " << past;
    ASSERT_EQ(CompareExact(k_ring, d_k.Download()), "") << "K ring after the step at " << past;
    ASSERT_EQ(CompareExact(v_ring, d_v.Download()), "") << "V ring after the step at " << past;
    past += n;
  }
}

TEST_F(AttentionCudaTest, NoQueriesWritesNothing) {
  DeviceArray<float> d_kv(std::vector<float>(2 * 4, 1.0f));
  DeviceArray<float> d_out(4);
  d_out.Poison();
  const std::vector<float> poisoned = d_out.Download();
  AttentionCuda(d_kv.get(), d_kv.get(), d_kv.get(), d_kv.get(), d_kv.get(), 2, 0, 1, 1, 4, 0,
                {0, AttentionScale(4), 0.0f}, d_out.get(), stream_);
  Sync();
  EXPECT_EQ(CompareExact(poisoned, d_out.Download()), "");
}

// The graph-replayable pair: K/V append and attention captured in a CUDA graph with their
// tables at fixed device addresses, replayed after the positions there changed (the cache grew,
// as between a backend's steps); must place rows exactly and equal a direct launch bit for bit.
TEST_F(AttentionCudaTest, GraphReplaysWithPositionsChangedOnDevice) {
  for (int64_t window : {0, 20}) CheckGraphReplay(window);
}

void AttentionCudaTest::CheckGraphReplay(int64_t window) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("window " + std::to_string(window) + " seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t past = 45, t_new = 3, heads = 4, kv = 2, hd = 64, row = kv * hd, cap = 64;
  const AttentionParams params{window, AttentionScale(hd), 0.0f};
  const std::vector<float> q = NormalFloats(t_new * heads * hd, 1.0f, rng);
  std::vector<float> k = NormalFloats(cap * row, 1.0f, rng), v = NormalFloats(cap * row, 1.0f, rng);
  const std::vector<float> k_new = NormalFloats(t_new * row, 1.0f, rng);
  const std::vector<float> v_new = NormalFloats(t_new * row, 1.0f, rng);
  DeviceArray<float> d_q(q), d_k(k), d_v(v), d_kn(k_new), d_vn(v_new);
  DeviceArray<float> d_a(q.size()), d_b(q.size());
  d_a.Poison();
  d_b.Poison();
  // The expected output first, on the caches before the append.
  AttentionCuda(d_q.get(), d_k.get(), d_v.get(), d_kn.get(), d_vn.get(), past, t_new, heads, kv,
                hd, 0, params, d_a.get(), stream_);
  OneSequence tables(d_k.get(), d_v.get(), /*past=*/7, t_new);  // captured at another length
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  DF11_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  AttentionCudaBatched(d_q.get(), d_kn.get(), d_vn.get(), tables.k.get(), tables.v.get(),
                       tables.seq.get(), tables.pos.get(), tables.past.get(), t_new, heads, kv, hd,
                       0, params, d_b.get(), stream_);
  KvAppendCudaBatched(d_kn.get(), d_vn.get(), t_new, row, tables.seq.get(), tables.pos.get(), 0,
                      tables.k.get(), tables.v.get(), stream_);
  DF11_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  DF11_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  DF11_CUDA_CHECK(cudaGraphDestroy(graph));
  tables.pos.Upload(Positions(past, t_new));
  tables.past.Upload(std::vector<int32_t>(t_new, static_cast<int32_t>(past)));
  DF11_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  Sync();
  DF11_CUDA_CHECK(cudaGraphExecDestroy(exec));
  std::copy(k_new.begin(), k_new.end(), k.begin() + past * row);
  std::copy(v_new.begin(), v_new.end(), v.begin() + past * row);
  EXPECT_EQ(CompareExact(k, d_k.Download()), "");
  EXPECT_EQ(CompareExact(v, d_v.Download()), "");
  EXPECT_EQ(CompareExact(d_a.Download(), d_b.Download()), "");
}

// One launch for a whole step (AttentionCudaBatched / KvAppendCudaBatched, cache pointers,
// positions and cache lengths from device tables) against one launch per sequence on copies of
// the same caches: sequences of different lengths and capacities, prompt chunks (one longer than
// the ring) among single decode tokens, and a sequence listed with its tokens out of table order.
// Caches and outputs equal bit for bit.
TEST_F(AttentionCudaTest, BatchedStepMatchesPerSequence) {
  for (int64_t window : {0, 33}) CheckBatched(window, 0);
  CheckBatched(4, 4);  // a sliding-window layer's ring
}

void AttentionCudaTest::CheckBatched(int64_t window, int64_t ring) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("window " + std::to_string(window) + " ring " + std::to_string(ring) + " seed " +
               std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t heads = 8, kv = 2, hd = 64, row = kv * hd;
  const AttentionParams params{window, AttentionScale(hd), 0.0f};
  struct Seq {
    int64_t past, t_new, capacity;
  };
  // Table order differs from the token order: tokens of table entry 2 come first.
  const std::vector<Seq> seqs = {{45, 1, 64}, {0, 5, 8}, {130, 1, 200}, {31, 2, 40}, {3, 9, 20}};
  const std::vector<int> token_order = {2, 0, 1, 3, 4};
  int64_t tokens = 0;
  for (const Seq& s : seqs) tokens += s.t_new;
  const std::vector<float> q = NormalFloats(tokens * heads * hd, 1.0f, rng);
  const std::vector<float> k_new = NormalFloats(tokens * row, 1.0f, rng);
  const std::vector<float> v_new = NormalFloats(tokens * row, 1.0f, rng);
  std::vector<std::unique_ptr<DeviceArray<float>>> k1, v1, k2, v2;  // per-sequence, batched
  std::vector<float*> k_ptrs(seqs.size()), v_ptrs(seqs.size());
  std::vector<int32_t> seq_of, pos_of;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t slots = ring > 0 ? std::min(ring, seqs[i].capacity) : seqs[i].capacity;
    const std::vector<float> k = NormalFloats(slots * row, 1.0f, rng);
    const std::vector<float> v = NormalFloats(slots * row, 1.0f, rng);
    k1.push_back(std::make_unique<DeviceArray<float>>(k));
    v1.push_back(std::make_unique<DeviceArray<float>>(v));
    k2.push_back(std::make_unique<DeviceArray<float>>(k));
    v2.push_back(std::make_unique<DeviceArray<float>>(v));
    k_ptrs[i] = k2.back()->get();
    v_ptrs[i] = v2.back()->get();
  }
  DeviceArray<float> d_q(q), d_kn(k_new), d_vn(v_new), d_a(q.size()), d_b(q.size());
  d_a.Poison();
  d_b.Poison();
  int64_t t0 = 0;
  std::vector<int32_t> past_of;
  for (int i : token_order) {
    const Seq& s = seqs[i];
    AttentionCuda(d_q.get() + t0 * heads * hd, k1[i]->get(), v1[i]->get(), d_kn.get() + t0 * row,
                  d_vn.get() + t0 * row, s.past, s.t_new, heads, kv, hd, ring, params,
                  d_a.get() + t0 * heads * hd, stream_);
    KvAppendCuda(d_kn.get() + t0 * row, d_vn.get() + t0 * row, s.t_new, row, s.past, ring,
                 k1[i]->get(), v1[i]->get(), stream_);
    for (int64_t j = 0; j < s.t_new; ++j) {
      seq_of.push_back(i);
      pos_of.push_back(static_cast<int32_t>(s.past + j));
      past_of.push_back(static_cast<int32_t>(s.past));
    }
    t0 += s.t_new;
  }
  DeviceArray<float*> d_k_tab(k_ptrs), d_v_tab(v_ptrs);
  DeviceArray<int32_t> d_seq(seq_of), d_pos(pos_of), d_past(past_of);
  AttentionCudaBatched(d_q.get(), d_kn.get(), d_vn.get(), d_k_tab.get(), d_v_tab.get(),
                       d_seq.get(), d_pos.get(), d_past.get(), tokens, heads, kv, hd, ring, params,
                       d_b.get(), stream_);
  KvAppendCudaBatched(d_kn.get(), d_vn.get(), tokens, row, d_seq.get(), d_pos.get(), ring,
                      d_k_tab.get(), d_v_tab.get(), stream_);
  Sync();
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(CompareExact(k1[i]->Download(), k2[i]->Download()), "") << "K cache " << i;
    EXPECT_EQ(CompareExact(v1[i]->Download(), v2[i]->Download()), "") << "V cache " << i;
  }
  EXPECT_EQ(CompareExact(d_a.Download(), d_b.Download()), "");
}

}  // namespace
}  // namespace df11
