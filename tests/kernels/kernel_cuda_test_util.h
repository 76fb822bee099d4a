// SPDX-License-Identifier: Apache-2.0
// Helpers for the forward-pass kernels' CUDA-vs-reference tests (header only, no glog, no MPI):
// a fixture that skips without a device and owns a stream, device arrays that can be poisoned
// (0xFF bytes: NaN floats, -1 ints), fresh printed seeds, and reports of the first mismatches.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/common/cuda_check.h"

namespace df11::kernel_testing {

// A seed from std::random_device, printed so a failure can be replayed.
inline uint64_t FreshSeed() {
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

// A device array of n T (RAII).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(int64_t n) : n_(n) {
    DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<int64_t>(n, 1) * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& host)
      : DeviceArray(static_cast<int64_t>(host.size())) {
    Upload(host);
  }
  ~DeviceArray() { DF11_CUDA_CHECK(cudaFree(p_)); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return p_; }
  // Both wait for the device: cudaMemcpy from pageable memory may return before its DMA lands,
  // and cudaMemset runs on the legacy stream, which the tests' non-blocking streams do not wait
  // for; a kernel launched right after could otherwise be overwritten by either.
  void Upload(const std::vector<T>& host) {
    DF11_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    DF11_CUDA_CHECK(cudaDeviceSynchronize());
  }
  // Fills every byte with 0xFF (NaN for floats), so elements a kernel leaves unwritten show.
  void Poison() {
    DF11_CUDA_CHECK(cudaMemset(p_, 0xFF, std::max<int64_t>(n_, 1) * sizeof(T)));
    DF11_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    DF11_CUDA_CHECK(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* p_ = nullptr;
  int64_t n_;
};

// Skips every test when no CUDA device is present; otherwise owns a non-blocking stream.
class CudaKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      (void)cudaGetLastError();
      GTEST_SKIP() << "no CUDA device";
    }
    DF11_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  void TearDown() override {
    if (stream_ != nullptr) DF11_CUDA_CHECK(cudaStreamDestroy(stream_));
  }
  void Sync() const { DF11_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  cudaStream_t stream_ = nullptr;
};

// A value for a mismatch report: floats with all their digits, integers as they are.
template <typename T>
std::string Show(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.9g", static_cast<double>(v));
    return text;
  } else {
    return std::to_string(v);
  }
}

// "" when actual and expected have the same bits everywhere, else the count and first mismatches.
template <typename T>
std::string CompareExact(const std::vector<T>& expected, const std::vector<T>& actual) {
  if (expected.size() != actual.size()) return "size mismatch";
  std::string report;
  int64_t bad = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::memcmp(&expected[i], &actual[i], sizeof(T)) == 0) continue;
    if (++bad <= 8) {
      report += "  [" + std::to_string(i) + "] expected " + Show(expected[i]) + " actual " +
                Show(actual[i]) + "\n";
    }
  }
  return bad == 0 ? "" : std::to_string(bad) + " mismatches, first:\n" + report;
}

// "" when |actual - expected| <= tol[i] everywhere (NaN never passes), else the first mismatches.
inline std::string CompareWithin(const std::vector<float>& expected,
                                 const std::vector<float>& actual, const std::vector<double>& tol) {
  if (expected.size() != actual.size() || expected.size() != tol.size()) return "size mismatch";
  std::string report;
  int64_t bad = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double diff = std::abs(static_cast<double>(actual[i]) - expected[i]);
    if (diff <= tol[i]) continue;  // false for NaN
    if (++bad <= 8) {
      char line[160];
      std::snprintf(line, sizeof(line), "  [%zu] expected %.9g actual %.9g (diff %.3g, tol %.3g)\n",
                    i, expected[i], actual[i], diff, tol[i]);
      report += line;
    }
  }
  return bad == 0 ? "" : std::to_string(bad) + " mismatches, first:\n" + report;
}

// CompareWithin with tol[i] = atol + rtol * |expected[i]|.
inline std::string CompareClose(const std::vector<float>& expected,
                                const std::vector<float>& actual, double atol, double rtol) {
  std::vector<double> tol(expected.size());
  for (size_t i = 0; i < expected.size(); ++i) tol[i] = atol + rtol * std::abs(expected[i]);
  return CompareWithin(expected, actual, tol);
}

// n floats from N(0, sigma).
inline std::vector<float> NormalFloats(int64_t n, float sigma, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace df11::kernel_testing
