// SPDX-License-Identifier: Apache-2.0
// Ew4DeviceBuffer: one cudaMalloc, one copy per field.
#include "kernels/ew4/ew4_device.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "kernels/common/cuda_check.h"

namespace df11 {
namespace {

constexpr size_t kFieldAlignment = 256;

size_t Aligned(size_t n) { return (n + kFieldAlignment - 1) / kFieldAlignment * kFieldAlignment; }

}  // namespace

Ew4DeviceBuffer::Ew4DeviceBuffer(const Ew4View& host) {
  const size_t sm = static_cast<size_t>(host.rows * host.cols);
  const size_t codes = static_cast<size_t>(host.rows * Ew4RowCodeBytes(host.cols));
  const size_t offsets = 4 * static_cast<size_t>(host.rows + 1);
  const size_t columns = 4 * static_cast<size_t>(host.n_escapes);
  const size_t values = 2 * static_cast<size_t>(host.n_escapes);
  const size_t at_codes = Aligned(sm), at_offsets = at_codes + Aligned(codes);
  const size_t at_columns = at_offsets + Aligned(offsets);
  const size_t at_values = at_columns + Aligned(columns);
  bytes_ = at_values + Aligned(values);
  DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_), bytes_));
  auto copy = [this](size_t at, const void* src, size_t n) {
    if (n > 0) DF11_CUDA_CHECK(cudaMemcpy(device_ + at, src, n, cudaMemcpyHostToDevice));
  };
  copy(0, host.sign_mantissa, sm);
  copy(at_codes, host.codes, codes);
  copy(at_offsets, host.escape_offsets, offsets);
  copy(at_columns, host.escape_columns, columns);
  copy(at_values, host.escape_values, values);
  view_ = host;
  view_.sign_mantissa = device_;
  view_.codes = device_ + at_codes;
  view_.escape_offsets = reinterpret_cast<const uint32_t*>(device_ + at_offsets);
  view_.escape_columns = reinterpret_cast<const uint32_t*>(device_ + at_columns);
  view_.escape_values = reinterpret_cast<const uint16_t*>(device_ + at_values);
}

Ew4DeviceBuffer::~Ew4DeviceBuffer() { Release(); }

Ew4DeviceBuffer::Ew4DeviceBuffer(Ew4DeviceBuffer&& other) noexcept { *this = std::move(other); }

Ew4DeviceBuffer& Ew4DeviceBuffer::operator=(Ew4DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    device_ = std::exchange(other.device_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    view_ = std::exchange(other.view_, Ew4View{});
  }
  return *this;
}

void Ew4DeviceBuffer::Release() {
  if (device_ != nullptr) cudaFree(device_);
  device_ = nullptr;
  bytes_ = 0;
}

}  // namespace df11
