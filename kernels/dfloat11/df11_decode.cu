// SPDX-License-Identifier: Apache-2.0
// DF11 decode on the GPU. One CUDA block of 512 threads per format block, one thread per 64-bit
// window: pass 1 counts the codes starting in each window (tables in shared memory), a block
// scan places them, pass 2 writes their exponents to shared memory (1 byte each, so any block
// fits the default 48 KB), and the block then streams sign_mantissa in and BF16 out with 8-byte
// loads and 16-byte stores. Windows check their gaps against their neighbours' ends, so a corrupt
// unit raises the error flag instead of producing silent garbage.
#include <cub/block/block_scan.cuh>

#include <algorithm>

#include "kernels/common/cuda_check.h"
#include "kernels/dfloat11/df11_decode.h"
#include "kernels/dfloat11/df11_window.h"

namespace df11 {
namespace {

constexpr int kThreads = kDf11ThreadsPerBlock;

enum Df11DecodeErrorCode : int {
  kBadCode = 1,
  kGapMismatch = 2,
  kCountMismatch = 4,
  kPastEnd = 8,
};

__device__ __forceinline__ uint32_t LoadBigEndian32(const uint8_t* p) {
  return __byte_perm(*reinterpret_cast<const uint32_t*>(p), 0, 0x0123);
}

__global__ void __launch_bounds__(kThreads)
    Df11DecodeKernel(Df11UnitView u, int64_t first_block, int64_t n_position_blocks,
                     int64_t begin, int64_t end, uint16_t* __restrict__ out, int* error_flag) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  extern __shared__ __align__(16) uint8_t smem[];
  const int tid = threadIdx.x;
  const int64_t b = first_block + blockIdx.x;
  const int64_t first = Df11OutputPosition(u, b);
  const int64_t last = Df11OutputPosition(u, b + 1);
  const int64_t count = last - first;
  if (count == 0 || last <= begin || first >= end) return;  // uniform across the block
  const bool has_next =
      b + 1 < n_position_blocks && Df11OutputPosition(u, b + 2) > Df11OutputPosition(u, b + 1);
  const int64_t stream_bits = 8 * u.n_bytes - b * kDf11BlockBits;

  const int lut_bytes = u.n_luts * 256;
  uint8_t* luts = smem;
  uint8_t* exps = smem + ((lut_bytes + 15) & ~15);
  for (int i = tid; i < lut_bytes / 4; i += kThreads) {
    reinterpret_cast<uint32_t*>(luts)[i] = reinterpret_cast<const uint32_t*>(u.luts)[i];
  }
  __syncthreads();
  const uint8_t* lengths = luts + lut_bytes - 256;

  const int64_t w = b * kThreads + tid;
  const uint8_t* p = u.encoded + 8 * w;
  Df11WindowBits bits;
  bits.w[0] = LoadBigEndian32(p);
  bits.w[1] = LoadBigEndian32(p + 4);
  bits.w[2] = LoadBigEndian32(p + 8);
  const uint32_t gap = Df11GapAt(u.gaps, u.n_gap_bytes, w);

  // Pass 1: count.
  const Df11WindowResult r =
      Df11DecodeWindow(bits, gap, luts, lengths, [](int32_t, uint32_t, uint32_t) {});
  int offset, total;
  BlockScan(scan_storage).ExclusiveSum(r.count, offset, total);
  int error = 0;
  if (!r.ok && offset + r.count < count) error |= kBadCode;
  if (offset + r.count < count || (tid == kThreads - 1 && has_next)) {
    if (static_cast<uint32_t>(r.end - 64) != Df11GapAt(u.gaps, u.n_gap_bytes, w + 1)) {
      error |= kGapMismatch;
    }
  }
  if (tid == 0 && (total < count || (has_next && total != count))) error |= kCountMismatch;

  // Pass 2: exponents into shared memory at their places in the block.
  if (offset < count) {
    Df11DecodeWindow(bits, gap, luts, lengths, [&](int32_t i, uint32_t symbol, uint32_t code_end) {
      const int64_t k = offset + i;
      if (k < count) exps[k] = static_cast<uint8_t>(symbol);
      if (k == count - 1 && static_cast<int64_t>(tid) * 64 + code_end > stream_bits) {
        error |= kPastEnd;
      }
    });
  }
  if (error != 0 && error_flag != nullptr) atomicOr(error_flag, error);
  __syncthreads();

  // Combine with sign_mantissa and store [a, z) of the unit at out[a - begin ...].
  const int64_t a = max(begin, first), z = min(end, last);
  const uint8_t* __restrict__ sm = u.sign_mantissa;
  int64_t vec_begin = z, vec_end = z;
  if ((begin & 7) == 0) {
    vec_begin = min(z, (a + 7) & ~int64_t{7});
    vec_end = vec_begin + ((z - vec_begin) & ~int64_t{7});
  }
  for (int64_t i = a + tid; i < vec_begin; i += kThreads) {
    out[i - begin] = Df11Combine(exps[i - first], sm[i]);
  }
  for (int64_t g = vec_begin + 8 * tid; g < vec_end; g += 8 * kThreads) {
    const uint2 s = *reinterpret_cast<const uint2*>(sm + g);
    const uint8_t* e = exps + (g - first);
    uint4 o;
    o.x = Df11Combine(e[0], s.x & 0xFF) | (uint32_t{Df11Combine(e[1], (s.x >> 8) & 0xFF)} << 16);
    o.y = Df11Combine(e[2], (s.x >> 16) & 0xFF) | (uint32_t{Df11Combine(e[3], s.x >> 24)} << 16);
    o.z = Df11Combine(e[4], s.y & 0xFF) | (uint32_t{Df11Combine(e[5], (s.y >> 8) & 0xFF)} << 16);
    o.w = Df11Combine(e[6], (s.y >> 16) & 0xFF) | (uint32_t{Df11Combine(e[7], s.y >> 24)} << 16);
    *reinterpret_cast<uint4*>(out + (g - begin)) = o;
  }
  for (int64_t i = vec_end + tid; i < z; i += kThreads) {
    out[i - begin] = Df11Combine(exps[i - first], sm[i]);
  }
}

int64_t HostPosition(const Df11DeviceUnit& unit, int64_t b) {
  return Df11LoadU32Le(unit.host_output_positions + 4 * b);
}

}  // namespace

size_t Df11DecodeSharedBytes(const Df11DeviceUnit& unit) {
  return ((static_cast<size_t>(unit.view.n_luts) * 256 + 15) & ~size_t{15}) +
         ((static_cast<size_t>(unit.max_block_elements) + 15) & ~size_t{15});
}

void Df11DecodeCuda(const Df11DeviceUnit& unit, int64_t begin, int64_t end, uint16_t* out,
                    int* error_flag, cudaStream_t stream) {
  DF11_CHECK(begin >= 0 && begin <= end && end <= unit.view.n_elements);
  DF11_CHECK_MSG(reinterpret_cast<uintptr_t>(out) % 16 == 0, "output must be 16-byte aligned");
  DF11_CHECK(reinterpret_cast<uintptr_t>(unit.view.encoded) % 16 == 0);
  DF11_CHECK(reinterpret_cast<uintptr_t>(unit.view.sign_mantissa) % 16 == 0);
  DF11_CHECK(reinterpret_cast<uintptr_t>(unit.view.luts) % 4 == 0);
  if (begin == end) return;
  const int64_t blocks = unit.n_position_blocks;
  // Blocks whose elements meet [begin, end): binary searches over the host copy of positions.
  int64_t lo = 0, hi = blocks;  // last block with position <= begin
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (HostPosition(unit, mid) <= begin) lo = mid; else hi = mid;
  }
  int64_t stop = lo;  // first block starting at or after end
  while (stop < blocks && HostPosition(unit, stop) < end) ++stop;
  const int64_t grid = stop - lo;
  if (grid <= 0) return;
  const size_t shared = Df11DecodeSharedBytes(unit);
  DF11_CHECK_MSG(shared <= 48 * 1024, "a DF11 block needs at most 37 KB of shared memory");
  Df11DecodeKernel<<<static_cast<unsigned>(grid), kThreads, shared, stream>>>(
      unit.view, lo, blocks, begin, end, out, error_flag);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
