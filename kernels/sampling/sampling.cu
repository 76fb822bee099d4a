// SPDX-License-Identifier: Apache-2.0
// ArgmaxCuda: one block of kThreads. Each thread scans a strided slice keeping its first maximum,
// then warp shuffles and one shared-memory pass combine (value, index) pairs, preferring the
// larger value and, on equal values, the lower index. NaNs are skipped; when every logit is NaN
// no candidate survives and the result is 0, as ArgmaxRef.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/sampling/sampling.h"

namespace df11 {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

struct Candidate {
  float value;
  int32_t index;  // -1: none yet
};

__device__ __forceinline__ Candidate Better(Candidate a, Candidate b) {
  if (b.index < 0) return a;
  if (a.index < 0) return b;
  if (b.value > a.value || (b.value == a.value && b.index < a.index)) return b;
  return a;
}

__device__ __forceinline__ Candidate WarpBest(Candidate c) {
  for (int offset = 16; offset > 0; offset /= 2) {
    Candidate other;
    other.value = __shfl_xor_sync(0xFFFFFFFFu, c.value, offset);
    other.index = __shfl_xor_sync(0xFFFFFFFFu, c.index, offset);
    c = Better(c, other);
  }
  return c;
}

__global__ void __launch_bounds__(kThreads)
    ArgmaxKernel(const float* __restrict__ logits, int64_t n, int32_t* __restrict__ index) {
  __shared__ Candidate warp_best[kWarps];
  Candidate best{0.0f, -1};
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {  // i rises: the first maximum stays
    const float v = logits[i];
    if (isnan(v)) continue;
    if (best.index < 0 || v > best.value) best = {v, static_cast<int32_t>(i)};
  }
  best = WarpBest(best);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  if (warp == 0) {
    best = WarpBest(lane < kWarps ? warp_best[lane] : Candidate{0.0f, -1});
    if (lane == 0) *index = best.index < 0 ? 0 : best.index;
  }
}

// ---- SampleCuda: one block of kThreads per row ----
//
// Workspace per row (V = vocab): mass (V doubles: exp(score - max) of kept ids, else 0),
// scores (V floats, penalised and divided by the temperature), kept (V ints; first the
// "penalty applied" marks). The filters follow SampleRef: top-k keeps scores >= the k-th largest
// (found by a radix select over order-preserving keys); top-p drops the longest run from the
// bottom of the (score descending, id ascending) order whose cumulative mass stays <= (1 - top_p)
// of the total, found by a binary search over keys plus the ties at the boundary key, and never
// the top id; min-p drops mass < min_p. Every sum is a block reduction in a fixed order, so a
// row's token depends on its inputs only.

using BlockSumD = cub::BlockReduce<double, kThreads>;
using BlockSumI = cub::BlockReduce<int, kThreads>;
using BlockBest = cub::BlockReduce<Candidate, kThreads>;
using BlockScanD = cub::BlockScan<double, kThreads>;
using BlockScanI = cub::BlockScan<int, kThreads>;

struct MaxOp {
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
};

struct BetterOp {
  __device__ Candidate operator()(const Candidate& a, const Candidate& b) const {
    return Better(a, b);
  }
};

// Larger float -> larger key; -0 and +0 share a key (they compare equal). Not for NaN.
__device__ __forceinline__ uint32_t OrderKey(float f) {
  uint32_t b = __float_as_uint(f);
  if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__host__ __device__ inline size_t RowBytes(int64_t vocab) { return 16 * static_cast<size_t>(vocab); }

__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* __restrict__ logits, int vocab, const SampleCudaRow* __restrict__ info,
                 const int32_t* __restrict__ history, uint8_t* __restrict__ workspace,
                 int32_t* __restrict__ tokens, int32_t* __restrict__ drew) {
  __shared__ union {
    typename BlockSumD::TempStorage sum_d;
    typename BlockSumI::TempStorage sum_i;
    typename BlockBest::TempStorage best;
    typename BlockScanD::TempStorage scan_d;
    typename BlockScanI::TempStorage scan_i;
  } tmp;
  __shared__ double shared_d;
  __shared__ int shared_i;
  __shared__ Candidate shared_best;
  __shared__ int hist[256];
  __shared__ uint32_t select_prefix, select_mask;
  __shared__ int select_remaining;
  __shared__ int winner;

  const int tid = threadIdx.x;
  const int V = vocab;
  const int64_t row = blockIdx.x;
  const SampleCudaRow r = info[row];
  const SamplingParams p = r.params;
  const float* __restrict__ in = logits + row * V;
  uint8_t* base = workspace + static_cast<size_t>(row) * RowBytes(V);
  double* mass = reinterpret_cast<double*>(base);
  float* score = reinterpret_cast<float*>(base + 8 * static_cast<size_t>(V));
  int* kept = reinterpret_cast<int*>(base + 12 * static_cast<size_t>(V));

  // Block-wide helpers (every thread calls them; results broadcast through shared memory).
  auto sum_d = [&](double v) {
    const double t = BlockSumD(tmp.sum_d).Sum(v);
    if (tid == 0) shared_d = t;
    __syncthreads();
    const double out = shared_d;
    __syncthreads();
    return out;
  };
  auto sum_i = [&](int v) {
    const int t = BlockSumI(tmp.sum_i).Sum(v);
    if (tid == 0) shared_i = t;
    __syncthreads();
    const int out = shared_i;
    __syncthreads();
    return out;
  };
  auto argmax = [&]() {  // over score[], NaNs skipped, lowest id on ties; 0 when all NaN
    Candidate c{0.0f, -1};
    for (int i = tid; i < V; i += kThreads) {
      const float v = score[i];
      if (!isnan(v) && (c.index < 0 || v > c.value)) c = {v, i};
    }
    const Candidate b = BlockBest(tmp.best).Reduce(c, BetterOp());
    if (tid == 0) shared_best = b;
    __syncthreads();
    const int out = shared_best.index < 0 ? 0 : shared_best.index;
    __syncthreads();
    return out;
  };

  // Scores, with the repetition penalty once per distinct id (kept[] marks applied ids).
  for (int i = tid; i < V; i += kThreads) {
    score[i] = in[i];
    kept[i] = 0;
  }
  __syncthreads();
  if (p.repetition_penalty != 1.0f) {
    for (int64_t j = r.history_begin + tid; j < r.history_end; j += kThreads) {
      const int32_t id = history[j];
      if (id < 0 || id >= V || atomicExch(&kept[id], 1) != 0) continue;
      const float v = score[id];
      score[id] = v < 0 ? v * p.repetition_penalty : v / p.repetition_penalty;
    }
    __syncthreads();
  }
  if (p.temperature == 0.0f) {
    const int best = argmax();
    if (tid == 0) {
      tokens[row] = best;
      drew[row] = 0;
    }
    return;
  }
  for (int i = tid; i < V; i += kThreads) score[i] /= p.temperature;
  __syncthreads();
  const int best = argmax();
  const float max_score = score[best];
  if (!isfinite(max_score)) {  // a degenerate distribution: no draw, as SampleRef
    if (tid == 0) {
      tokens[row] = best;
      drew[row] = 0;
    }
    return;
  }

  // Top-k: the k-th largest key among the non-NaN scores, 8 bits at a time.
  int valid = 0;
  for (int i = tid; i < V; i += kThreads) valid += !isnan(score[i]);
  valid = sum_i(valid);
  const bool use_k = p.top_k > 0 && p.top_k < valid;
  if (tid == 0) {
    select_prefix = 0;
    select_mask = 0;
    select_remaining = p.top_k;
  }
  __syncthreads();
  for (int shift = 24; use_k && shift >= 0; shift -= 8) {
    for (int d = tid; d < 256; d += kThreads) hist[d] = 0;
    __syncthreads();
    const uint32_t prefix = select_prefix, mask = select_mask;
    for (int i = tid; i < V; i += kThreads) {
      const float v = score[i];
      if (isnan(v)) continue;
      const uint32_t key = OrderKey(v);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xFF], 1);
    }
    __syncthreads();
    if (tid == 0) {
      int above = 0;
      for (int d = 255; d >= 0; --d) {
        if (above + hist[d] >= select_remaining) {
          select_remaining -= above;
          select_prefix |= static_cast<uint32_t>(d) << shift;
          select_mask |= 0xFFu << shift;
          break;
        }
        above += hist[d];
      }
    }
    __syncthreads();
  }
  const uint32_t kth_key = use_k ? select_prefix : 0;
  for (int i = tid; i < V; i += kThreads) {
    const float v = score[i];
    const bool k = !isnan(v) && (!use_k || OrderKey(v) >= kth_key);
    kept[i] = k;
    mass[i] = k ? exp(static_cast<double>(v) - static_cast<double>(max_score)) : 0.0;
  }
  __syncthreads();

  // Top-p.
  if (p.top_p < 1.0f) {
    double local = 0.0;
    for (int i = tid; i < V; i += kThreads) local += mass[i];
    const double total = sum_d(local);
    const double threshold = (1.0 - static_cast<double>(p.top_p)) * total;
    // The largest key K whose strictly smaller kept keys weigh <= threshold: they all drop.
    uint64_t lo = 0, hi = uint64_t{1} << 32;
    double below = 0.0;  // their mass
    while (hi - lo > 1) {
      const uint64_t mid = (lo + hi) / 2;
      double part = 0.0;
      for (int i = tid; i < V; i += kThreads) {
        if (kept[i] && OrderKey(score[i]) < mid) part += mass[i];
      }
      const double m = sum_d(part);
      if (m <= threshold) {
        lo = mid;
        below = m;
      } else {
        hi = mid;
      }
    }
    const uint32_t boundary = static_cast<uint32_t>(lo);
    // Ties at the boundary drop from the highest id down while the running sum stays <=
    // threshold; the top id never drops.
    int ties = 0, above = 0;
    double tie_mass = 0.0;
    for (int i = tid; i < V; i += kThreads) {
      if (!kept[i]) continue;
      const uint32_t key = OrderKey(score[i]);
      if (key == boundary) {
        ++ties;
        tie_mass = mass[i];  // equal scores, equal mass
      }
      above += key > boundary;
    }
    const bool has_tie = ties > 0;
    ties = sum_i(ties);
    above = sum_i(above);
    if (has_tie) shared_d = tie_mass;  // every writer writes the same value
    __syncthreads();
    if (tid == 0) {
      int dropped = 0;
      if (ties > 0) {
        const double m = shared_d;
        double cumulative = below;
        while (dropped < ties) {
          cumulative += m;
          if (cumulative > threshold) break;
          ++dropped;
        }
        if (above == 0 && dropped == ties) dropped = ties - 1;  // keep the top id
      }
      shared_i = ties - dropped;  // ties kept: the lowest ids
    }
    __syncthreads();
    const int ties_kept = shared_i;
    __syncthreads();
    // Rank ties by id: each thread owns a contiguous chunk.
    const int chunk = (V + kThreads - 1) / kThreads;
    const int c0 = min(V, tid * chunk), c1 = min(V, c0 + chunk);
    int mine = 0;
    for (int i = c0; i < c1; ++i) mine += kept[i] && OrderKey(score[i]) == boundary;
    int rank = 0;
    BlockScanI(tmp.scan_i).ExclusiveSum(mine, rank);
    __syncthreads();
    for (int i = c0; i < c1; ++i) {
      if (!kept[i]) continue;
      const uint32_t key = OrderKey(score[i]);
      bool drop = key < boundary;
      if (key == boundary) drop = rank++ >= ties_kept;
      if (drop && i != best) {
        kept[i] = 0;
        mass[i] = 0.0;
      }
    }
    __syncthreads();
  }

  // Min-p: drop ids below min_p times the top probability; the top id stays.
  if (p.min_p > 0.0f) {
    for (int i = tid; i < V; i += kThreads) {
      if (kept[i] && i != best && mass[i] < static_cast<double>(p.min_p)) {
        kept[i] = 0;
        mass[i] = 0.0;
      }
    }
    __syncthreads();
  }

  // The draw: the first id (in id order) whose running mass exceeds uniform * total.
  const int chunk = (V + kThreads - 1) / kThreads;
  const int c0 = min(V, tid * chunk), c1 = min(V, c0 + chunk);
  double mine = 0.0;
  int last_kept = -1;
  for (int i = c0; i < c1; ++i) {
    mine += mass[i];
    if (kept[i]) last_kept = i;
  }
  double prefix = 0.0, total = 0.0;
  BlockScanD(tmp.scan_d).ExclusiveSum(mine, prefix, total);
  if (tid == 0) winner = INT32_MAX;
  __syncthreads();
  const double target = r.uniform * total;
  if (mine > 0.0 && prefix <= target) {
    double cumulative = prefix;
    for (int i = c0; i < c1; ++i) {
      if (!kept[i]) continue;
      cumulative += mass[i];
      if (cumulative > target) {
        atomicMin(&winner, i);
        break;
      }
    }
  }
  __syncthreads();
  // Rounding can leave the target at or past the total: the last kept id, as SampleRef.
  const int last = BlockSumI(tmp.sum_i).Reduce(last_kept, MaxOp());
  if (tid == 0) {
    tokens[row] = winner != INT32_MAX ? winner : (last >= 0 ? last : best);
    drew[row] = 1;
  }
}

}  // namespace

void ArgmaxCuda(const float* logits, int64_t n, int32_t* index, cudaStream_t stream) {
  DF11_CHECK(n >= 1 && n <= INT32_MAX);
  DF11_CHECK(logits != nullptr && index != nullptr);
  ArgmaxKernel<<<1, kThreads, 0, stream>>>(logits, n, index);
  DF11_CUDA_CHECK_LAUNCH();
}

size_t SampleCudaWorkspaceBytes(int64_t rows, int64_t vocab) {
  DF11_CHECK(rows >= 0 && vocab >= 1);
  return static_cast<size_t>(rows) * RowBytes(vocab);
}

void SampleCuda(const float* logits, int64_t rows, int64_t vocab, const SampleCudaRow* info,
                const int32_t* history, void* workspace, int32_t* tokens, int32_t* drew,
                cudaStream_t stream) {
  DF11_CHECK(rows >= 0 && vocab >= 1 && vocab <= INT32_MAX / 16);
  if (rows == 0) return;
  DF11_CHECK(logits != nullptr && info != nullptr && workspace != nullptr && tokens != nullptr &&
             drew != nullptr);
  DF11_CHECK_MSG(reinterpret_cast<uintptr_t>(workspace) % 8 == 0, "workspace must be 8-byte aligned");
  DF11_CHECK(rows <= INT32_MAX);
  SampleKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, static_cast<int>(vocab), info, history, static_cast<uint8_t*>(workspace), tokens,
      drew);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
