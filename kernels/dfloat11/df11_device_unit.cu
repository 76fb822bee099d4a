// SPDX-License-Identifier: Apache-2.0
// Df11DeviceBuffer: one cudaMalloc, zeroed, then one copy per field. The zero padding matters:
// the kernel's last windows read 12 bytes from each window start (up to 16 bytes past the last
// whole block), and a corrupt unit's last window reads the gap field after the end of `gaps`.
#include "kernels/dfloat11/df11_device_unit.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "kernels/common/cuda_check.h"

namespace df11 {
namespace {

constexpr size_t kFieldAlignment = 256;
constexpr size_t kTailPadding = 16;

size_t AlignUp(size_t n) { return (n + kFieldAlignment - 1) & ~(kFieldAlignment - 1); }

}  // namespace

Df11DeviceBuffer::Df11DeviceBuffer(const Df11UnitView& unit) {
  const std::string invalid = Df11ValidateUnit(unit);
  DF11_CHECK_MSG(invalid.empty(), "Df11DeviceBuffer needs a valid unit: " + invalid);

  const size_t luts_bytes = static_cast<size_t>(unit.n_luts) * 256;
  const size_t encoded_padded =
      static_cast<size_t>(Df11BlockCount(unit.n_bytes)) * kDf11BlockBytes + kTailPadding;
  const size_t positions_bytes = 4 * static_cast<size_t>(unit.n_output_positions);
  const size_t gaps_padded = static_cast<size_t>(unit.n_gap_bytes) + kTailPadding;
  const size_t luts_at = 0;
  const size_t encoded_at = luts_at + AlignUp(luts_bytes);
  const size_t sign_mantissa_at = encoded_at + AlignUp(encoded_padded);
  const size_t positions_at = sign_mantissa_at + AlignUp(static_cast<size_t>(unit.n_elements));
  const size_t gaps_at = positions_at + AlignUp(positions_bytes);
  const size_t multi_at = gaps_at + AlignUp(gaps_padded);
  // The kernel's multi-code table, derived from the stored tables (not part of the format).
  auto tables = std::make_unique<Df11CpuTables>();
  BuildDf11CpuTables(unit, tables.get());
  const size_t multi_bytes = sizeof(tables->multi);
  bytes_ = multi_at + AlignUp(multi_bytes);

  DF11_CUDA_CHECK(cudaMalloc(&device_, bytes_));
  DF11_CUDA_CHECK(cudaMemset(device_, 0, bytes_));
  auto copy = [&](size_t at, const uint8_t* src, size_t n) {
    if (n > 0) DF11_CUDA_CHECK(cudaMemcpy(device_ + at, src, n, cudaMemcpyHostToDevice));
  };
  copy(luts_at, unit.luts, luts_bytes);
  copy(encoded_at, unit.encoded, static_cast<size_t>(unit.n_bytes));
  copy(sign_mantissa_at, unit.sign_mantissa, static_cast<size_t>(unit.n_elements));
  copy(positions_at, unit.output_positions, positions_bytes);
  copy(gaps_at, unit.gaps, static_cast<size_t>(unit.n_gap_bytes));
  copy(multi_at, reinterpret_cast<const uint8_t*>(tables->multi.data()), multi_bytes);
  // cudaMemcpy from pageable memory may return before its DMA lands, and decodes run on other
  // (often non-blocking) streams: the unit is resident only once the device has it all.
  DF11_CUDA_CHECK(cudaDeviceSynchronize());

  host_positions_.assign(unit.output_positions, unit.output_positions + positions_bytes);
  unit_.view = unit;
  unit_.view.luts = device_ + luts_at;
  unit_.view.encoded = device_ + encoded_at;
  unit_.view.sign_mantissa = device_ + sign_mantissa_at;
  unit_.view.output_positions = device_ + positions_at;
  unit_.view.gaps = device_ + gaps_at;
  unit_.host_output_positions = host_positions_.data();
  unit_.multi = reinterpret_cast<const uint64_t*>(device_ + multi_at);
  unit_.n_position_blocks = Df11PositionBlocks(unit);
  int64_t max_elements = 0;
  for (int64_t b = 0; b < unit_.n_position_blocks; ++b) {
    max_elements =
        std::max(max_elements, Df11OutputPosition(unit, b + 1) - Df11OutputPosition(unit, b));
  }
  unit_.max_block_elements = static_cast<int32_t>(max_elements);
}

Df11DeviceBuffer::~Df11DeviceBuffer() { Release(); }

Df11DeviceBuffer::Df11DeviceBuffer(Df11DeviceBuffer&& other) noexcept { *this = std::move(other); }

Df11DeviceBuffer& Df11DeviceBuffer::operator=(Df11DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    device_ = std::exchange(other.device_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    host_positions_ = std::move(other.host_positions_);  // the heap block, and its address, move
    unit_ = std::exchange(other.unit_, Df11DeviceUnit{});
  }
  return *this;
}

void Df11DeviceBuffer::Release() {
  // Freeing synchronises with the device; a failure here means the context is already broken.
  if (device_ != nullptr) DF11_CUDA_CHECK(cudaFree(device_));
  device_ = nullptr;
  bytes_ = 0;
}

}  // namespace df11
