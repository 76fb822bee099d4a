// SPDX-License-Identifier: Apache-2.0
// Df11DecodeCuda: the decode kernel (df11_decode_kernel.cuh) with multi-code lookups cut late,
// and the launcher every instance of it shares: the format blocks that meet the range (binary
// searches over the host copy of the positions), the dynamic shared memory, and a grid of as
// many CUDA blocks as fit on the device at once (cached per device and kernel).
#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "kernels/common/cuda_check.h"
#include "kernels/dfloat11/df11_decode.h"
#include "kernels/dfloat11/df11_decode_kernel.cuh"

namespace df11 {
namespace decode_kernel {
namespace {

int64_t HostPosition(const Df11DeviceUnit& unit, int64_t b) {
  return Df11LoadU32Le(unit.host_output_positions + 4 * b);
}

// Dynamic shared memory of one block: the stored rows, then the exponents (8 bytes of slack
// for the alignment shift) and the staged sign_mantissa (32 bytes for the 16-byte copies).
size_t DynamicSharedBytes(int n_luts, int64_t max_block_elements) {
  return ((static_cast<size_t>(n_luts) * 256 + 15) & ~size_t{15}) +
         ((static_cast<size_t>(max_block_elements) + 8 + 15) & ~size_t{15}) +
         ((static_cast<size_t>(max_block_elements) + 32 + 15) & ~size_t{15});
}

const size_t kMaxDynamicShared = kMultiBytes + DynamicSharedBytes(kDf11MaxLutRows, kDf11BlockBits);

// Per device and kernel: SM count and resident CUDA blocks per SM at a typical shared memory
// size; computed once (with the kernel's dynamic shared memory limit raised) and cached.
struct KernelLimits {
  int sms = 0;
  int blocks_per_sm = 0;
};

const KernelLimits& LimitsFor(int device, KernelFn kernel, bool multi) {
  static std::mutex mu;
  static std::map<std::pair<int, KernelFn>, KernelLimits> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto [it, inserted] = cache.try_emplace({device, kernel});
  KernelLimits& l = it->second;
  if (inserted) {
    DF11_CUDA_CHECK(cudaDeviceGetAttribute(&l.sms, cudaDevAttrMultiProcessorCount, device));
    DF11_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(kMaxDynamicShared)));
    // Occupancy at a typical size (N(0, 0.02) weights: ~13 K elements per block); a unit
    // with fuller blocks simply runs fewer at once.
    const size_t typical = (multi ? kMultiBytes : 0) + DynamicSharedBytes(8, 14 * 1024);
    DF11_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&l.blocks_per_sm, kernel, kThreads, typical));
    l.blocks_per_sm = std::max(l.blocks_per_sm, 1);
  }
  return l;
}

}  // namespace

void Launch(KernelFn kernel, bool multi, const Df11DeviceUnit& unit, int64_t begin, int64_t end,
            uint16_t* out, int* error_flag, cudaStream_t stream, double grid_fraction) {
  DF11_CHECK_MSG(grid_fraction > 0 && grid_fraction <= 1, "grid_fraction must be in (0, 1]");
  DF11_CHECK(begin >= 0 && begin <= end && end <= unit.view.n_elements);
  DF11_CHECK_MSG(reinterpret_cast<uintptr_t>(out) % 16 == 0, "output must be 16-byte aligned");
  DF11_CHECK(reinterpret_cast<uintptr_t>(unit.view.encoded) % 16 == 0);
  DF11_CHECK(reinterpret_cast<uintptr_t>(unit.view.sign_mantissa) % 16 == 0);
  DF11_CHECK(reinterpret_cast<uintptr_t>(unit.view.luts) % 4 == 0);
  DF11_CHECK(reinterpret_cast<uintptr_t>(unit.view.output_positions) % 4 == 0);
  DF11_CHECK_MSG(!multi || unit.multi != nullptr, "the decode needs the unit's multi-code table");
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
  if (stop <= lo) return;
  const size_t shared = (multi ? kMultiBytes : 0) +
                        DynamicSharedBytes(unit.view.n_luts, unit.max_block_elements);
  DF11_CHECK_MSG(shared <= kMaxDynamicShared, "a DF11 block needs at most ~102 KB of dynamic "
                                              "shared memory");
  int device = 0;
  DF11_CUDA_CHECK(cudaGetDevice(&device));
  const KernelLimits& limits = LimitsFor(device, kernel, multi);
  const int64_t resident = std::max<int64_t>(
      1, static_cast<int64_t>(grid_fraction * limits.sms * limits.blocks_per_sm + 0.5));
  const unsigned grid = static_cast<unsigned>(std::min(stop - lo, resident));
  kernel<<<grid, kThreads, shared, stream>>>(unit.view, multi ? unit.multi : nullptr, lo, stop,
                                             blocks, begin, end, unit.max_block_elements, out,
                                             error_flag);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace decode_kernel

void Df11DecodeCuda(const Df11DeviceUnit& unit, int64_t begin, int64_t end, uint16_t* out,
                    int* error_flag, cudaStream_t stream, double grid_fraction) {
  decode_kernel::Launch(decode_kernel::Df11DecodeKernel<true, true>, /*multi=*/true, unit, begin,
                        end, out, error_flag, stream, grid_fraction);
}

}  // namespace df11
