// SPDX-License-Identifier: Apache-2.0
// The DF11 decode kernel, for .cu files only: Df11DecodeKernel<kMulti, kLate> and the launcher
// that sizes its grid. CUDA blocks of 512 threads walk the format blocks of the range with a
// stride (as many CUDA blocks as fit on the device at once), so the tables are loaded into shared
// memory once per CUDA block, and each block's positions, windows and gaps are loaded while the
// previous one is decoded. Per format block, one thread per 64-bit window: its sign_mantissa
// bytes start copying into shared memory (cp.async) while pass 1 counts the codes starting in
// each window, a block scan places them, and pass 2 writes their exponents to shared memory
// (1 byte each); the block then joins the two and stores BF16 with 16-byte stores. Windows check
// their gaps against their neighbours' ends, so a corrupt unit raises the error flag instead of
// producing silent garbage.
// Df11DecodeCuda (df11_decode.cu) runs <true, true>: up to four codes per lookup in the 12-bit
// multi-code table (Df11DecodeWindowGroups), the lookups cut at the window's end once per window.
// The benchmark's variants (bench/df11_decode_variants.h) instantiate the others: <false, false>
// walks the stored tables per code, <true, false> tests every lookup against the window's end.
#pragma once

#include <cuda_pipeline.h>
#include <cuda_runtime_api.h>

#include <cub/block/block_scan.cuh>

#include <cstdint>
#include <type_traits>

#include "kernels/dfloat11/df11_decode.h"
#include "kernels/dfloat11/df11_window.h"

namespace df11 {
namespace decode_kernel {

inline constexpr int kThreads = kDf11ThreadsPerBlock;
inline constexpr size_t kMultiBytes = sizeof(uint64_t) << kDf11MultiBits;

enum Df11DecodeErrorCode : int {
  kBadCode = 1,
  kGapMismatch = 2,
  kCountMismatch = 4,
  kPastEnd = 8,
};

__device__ __forceinline__ uint32_t LoadBigEndian32(const uint8_t* p) {
  return __byte_perm(*reinterpret_cast<const uint32_t*>(p), 0, 0x0123);
}

// Two BF16 values from x = [sm0, exp0, sm1, exp1] (bytes, lowest first): each 16-bit half
// (exp << 8 | sm) becomes sign << 15 | exp << 7 | mantissa, as Df11Combine.
__device__ __forceinline__ uint32_t CombinePair(uint32_t x) {
  return ((x & 0x00800080u) << 8) | ((x >> 1) & 0x7F807F80u) | (x & 0x007F007Fu);
}

// What a thread needs to start on one format block. (Loading it one block ahead, into
// registers, was measured slower on an H100: it costs registers the decode loops need.)
struct BlockHead {
  int64_t first = 0, last = 0;  // output_positions[b], [b + 1]
  bool has_next = false;        // block b + 1 owns elements
  Df11WindowBits bits;          // this thread's window
  uint32_t gap = 0, next_gap = 0;
};

__device__ __forceinline__ BlockHead LoadHead(const Df11UnitView& u, int64_t b,
                                              int64_t n_position_blocks, int tid) {
  BlockHead h;
  const uint32_t* positions = reinterpret_cast<const uint32_t*>(u.output_positions);
  h.first = __ldg(positions + b);
  h.last = __ldg(positions + b + 1);
  h.has_next = b + 1 < n_position_blocks && __ldg(positions + b + 2) > h.last;
  const int64_t w = b * kThreads + tid;
  const uint8_t* p = u.encoded + 8 * w;
  h.bits.w[0] = LoadBigEndian32(p);
  h.bits.w[1] = LoadBigEndian32(p + 4);
  h.bits.w[2] = LoadBigEndian32(p + 8);
  h.gap = Df11GapAt(u.gaps, u.n_gap_bytes, w);
  h.next_gap = Df11GapAt(u.gaps, u.n_gap_bytes, w + 1);
  return h;
}

// kMulti: multi-code lookups (else the per-code walk). kLate: the lookups are cut at the window's
// end once, after the loop (Df11DecodeWindowGroups<true>), and only a block that ends near the
// stream's end checks its last code against it.
template <bool kMulti, bool kLate>
__global__ void __launch_bounds__(kThreads, 3)
    Df11DecodeKernel(Df11UnitView u, const uint64_t* __restrict__ multi_global, int64_t lo,
                     int64_t stop, int64_t n_position_blocks, int64_t begin, int64_t end,
                     int32_t max_block_elements, uint16_t* __restrict__ out, int* error_flag) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  extern __shared__ __align__(16) uint8_t smem[];
  const int tid = threadIdx.x;

  // Shared memory: [multi (kMulti)] [stored rows] [exponents of one block] [its sign_mantissa].
  // (The table as a static __shared__ array was measured slower on an H100.)
  uint64_t* multi = reinterpret_cast<uint64_t*>(smem);
  const size_t multi_bytes = kMulti ? kMultiBytes : 0;
  if constexpr (kMulti) {
    for (int i = tid; i < (1 << kDf11MultiBits); i += kThreads) multi[i] = multi_global[i];
  }
  const int lut_bytes = u.n_luts * 256;
  uint8_t* luts = smem + multi_bytes;
  uint8_t* exps = luts + ((lut_bytes + 15) & ~15);
  uint8_t* staged_sm = exps + ((max_block_elements + 8 + 15) & ~15);
  for (int i = tid; i < lut_bytes / 4; i += kThreads) {
    reinterpret_cast<uint32_t*>(luts)[i] = reinterpret_cast<const uint32_t*>(u.luts)[i];
  }
  __syncthreads();
  const uint8_t* lengths = luts + lut_bytes - 256;

  int error = 0;
  for (int64_t b = lo + blockIdx.x; b < stop; b += gridDim.x) {
    const BlockHead h = LoadHead(u, b, n_position_blocks, tid);
    const int64_t first = h.first, last = h.last, count = last - first;
    if (count == 0 || last <= begin || first >= end) continue;  // uniform across the block
    const int64_t stream_bits = 8 * u.n_bytes - b * kDf11BlockBits;
    const int64_t a = max(begin, first), z = min(end, last);

    // Stage the sign_mantissa bytes of [a, z) in shared memory (16-byte copies from a & ~15)
    // while the windows decode; staged_sm[i - a16] holds element i.
    const int64_t a16 = a & ~int64_t{15};
    for (int64_t i = a16 + 16 * tid; i < z; i += 16 * kThreads) {
      __pipeline_memcpy_async(staged_sm + (i - a16), u.sign_mantissa + i, 16);
    }
    __pipeline_commit();

    // Element k of the block goes to ex[k]: shifted so that absolute multiples of 8 fall on
    // 8-byte boundaries, which the vector loop below loads whole.
    uint8_t* ex = exps + (first & 7);

    // Pass 1: count.
    Df11WindowResult r;
    if constexpr (kMulti) {
      r = Df11DecodeWindowGroups<kLate>(h.bits, h.gap, multi, luts, lengths,
                                        [](int32_t, uint32_t, uint32_t, uint32_t) {});
    } else {
      r = Df11DecodeWindow(h.bits, h.gap, luts, lengths, [](int32_t, uint32_t, uint32_t) {});
    }
    int offset, total;
    BlockScan(scan_storage).ExclusiveSum(r.count, offset, total);
    if (!r.ok && offset + r.count < count) error |= kBadCode;
    if (offset + r.count < count || (tid == kThreads - 1 && h.has_next)) {
      if (static_cast<uint32_t>(r.end - 64) != h.next_gap) error |= kGapMismatch;
    }
    if (tid == 0 && (total < count || (h.has_next && total != count))) error |= kCountMismatch;

    // Pass 2: exponents into shared memory at their places in the block (32-bit arithmetic: a
    // block holds at most 32768 elements).
    const int cnt = static_cast<int>(count);
    if (offset < cnt) {
      if constexpr (kMulti) {
        uint8_t* const dst = ex + offset;
        const int keep = min(r.count, cnt - offset);  // this window's codes inside the block
        // check_end (std::true_type or false_type): whether the block's last code is checked
        // against the stream's end.
        auto emit = [&](auto check_end) {
          return [&, check_end](int32_t i, uint32_t symbols, uint32_t n, uint32_t start) {
            if (i + 4 <= keep) {  // all four bytes: any past n are rewritten by the next group
              dst[i] = static_cast<uint8_t>(symbols);
              dst[i + 1] = static_cast<uint8_t>(symbols >> 8);
              dst[i + 2] = static_cast<uint8_t>(symbols >> 16);
              dst[i + 3] = static_cast<uint8_t>(symbols >> 24);
            } else {  // the window's (or the block's) last codes: not a byte beyond them
#pragma unroll
              for (int j = 0; j < 4; ++j) {
                if (i + j < keep) dst[i + j] = static_cast<uint8_t>(symbols >> (8 * j));
              }
            }
            if constexpr (decltype(check_end)::value) {
              const uint32_t last = static_cast<uint32_t>(cnt - 1 - offset - i);
              if (last < n) [[unlikely]] {  // this group holds the block's last code
                uint32_t code_end = start;
                for (uint32_t j = 0; j <= last; ++j) code_end += lengths[(symbols >> (8 * j)) & 0xFFu];
                if (static_cast<int64_t>(tid) * 64 + code_end > stream_bits) error |= kPastEnd;
              }
            }
          };
        };
        if constexpr (kLate) {
          // Codes end at most 32 bits into the next block: only a block that ends within 64
          // bits of the stream's end can have one past it (uniform across the block).
          if (stream_bits < kDf11BlockBits + 64) {
            Df11DecodeWindowGroups<true>(h.bits, h.gap, multi, luts, lengths,
                                         emit(std::true_type{}));
          } else {
            Df11DecodeWindowGroups<true>(h.bits, h.gap, multi, luts, lengths,
                                         emit(std::false_type{}));
          }
        } else {
          Df11DecodeWindowGroups<false>(h.bits, h.gap, multi, luts, lengths,
                                        emit(std::true_type{}));
        }
      } else {
        Df11DecodeWindow(h.bits, h.gap, luts, lengths,
                         [&](int32_t i, uint32_t symbol, uint32_t code_end) {
                           const int k = offset + i;
                           if (k < cnt) ex[k] = static_cast<uint8_t>(symbol);
                           if (k == cnt - 1 &&
                               static_cast<int64_t>(tid) * 64 + code_end > stream_bits) {
                             error |= kPastEnd;
                           }
                         });
      }
    }
    __pipeline_wait_prior(0);
    __syncthreads();

    // Combine with sign_mantissa and store [a, z) of the unit at out[a - begin ...].
    const uint8_t* sm = staged_sm - a16;  // sm[i]: element i's sign_mantissa byte, i in [a, z)
    int64_t vec_begin = z, vec_end = z;
    if ((begin & 7) == 0) {
      vec_begin = min(z, (a + 7) & ~int64_t{7});
      vec_end = vec_begin + ((z - vec_begin) & ~int64_t{7});
    }
    for (int64_t i = a + tid; i < vec_begin; i += kThreads) {
      out[i - begin] = Df11Combine(ex[i - first], sm[i]);
    }
    for (int64_t g = vec_begin + 8 * tid; g < vec_end; g += 8 * kThreads) {
      const uint2 s = *reinterpret_cast<const uint2*>(sm + g);
      const uint2 e = *reinterpret_cast<const uint2*>(ex + (g - first));
      uint4 o;
      o.x = CombinePair(__byte_perm(s.x, e.x, 0x5140));
      o.y = CombinePair(__byte_perm(s.x, e.x, 0x7362));
      o.z = CombinePair(__byte_perm(s.y, e.y, 0x5140));
      o.w = CombinePair(__byte_perm(s.y, e.y, 0x7362));
      *reinterpret_cast<uint4*>(out + (g - begin)) = o;
    }
    for (int64_t i = vec_end + tid; i < z; i += kThreads) {
      out[i - begin] = Df11Combine(ex[i - first], sm[i]);
    }
    __syncthreads();  // exps, staged_sm and the scan storage are reused by the next format block
  }
  if (error != 0 && error_flag != nullptr) atomicOr(error_flag, error);
}

// The signature of every Df11DecodeKernel instance.
using KernelFn = void (*)(Df11UnitView, const uint64_t*, int64_t, int64_t, int64_t, int64_t,
                          int64_t, int32_t, uint16_t*, int*);

// Launches `kernel` (an instance of Df11DecodeKernel; `multi`: it reads the multi-code table, so
// the unit must have one) over elements [begin, end) of `unit` on `stream`, with the contract of
// Df11DecodeCuda (df11_decode.h) and grid_fraction in (0, 1].
void Launch(KernelFn kernel, bool multi, const Df11DeviceUnit& unit, int64_t begin, int64_t end,
            uint16_t* out, int* error_flag, cudaStream_t stream, double grid_fraction);

}  // namespace decode_kernel
}  // namespace df11
