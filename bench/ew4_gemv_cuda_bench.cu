// SPDX-License-Identifier: Apache-2.0
// The CUDA ew4 fused decode-GEMV against cuBLAS BF16 (GemmBf16Cuda, what the CUDA backend uses
// for BF16 weights) at the shapes of Llama 3.1 8B's layers and head (out x in: 4096 x 4096,
// 14336 x 4096, 4096 x 14336, 128256 x 4096) and batches 1, 4, 8, on N(0, 0.02) BF16 weights
// (~1.5e-4 escapes). Each kernel is timed with CUDA events over a CUDA graph of `--reps`
// launches (the way the backend runs decode steps), after a warm-up; the ew4 output is checked
// bit-identical to the same kernel on the raw BF16 weights (Bf16GemvOrderedCuda). One JSON line
// per shape and batch:
//   {"bench":"ew4_gemv_cuda","n":..,"k":..,"batch":..,"ew4_us":..,"cublas_us":..,
//    "speedup":..,"ew4_gbps":..,"verified":true}
// Plain CUDA; links neither Google Benchmark nor glog, so it runs on a bare GPU machine.
//   ew4_gemv_cuda_bench [--reps N] [--shapes n:k,n:k,...] [--batches 1,4,8]
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/cuda_bench_util.h"
#include "kernels/common/bf16.h"
#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/ew4/ew4_device.h"
#include "kernels/ew4/ew4_encode.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/gemm/gemm.h"

namespace df11 {
namespace {

using bench::TimeGraph;
using bench::Upload;

int Run(int reps, const std::vector<std::pair<int64_t, int64_t>>& shapes,
        const std::vector<int64_t>& batches) {
  cudaStream_t stream;
  DF11_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasHandle_t cublas;
  DF11_CUBLAS_CHECK(cublasCreate(&cublas));
  DF11_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  void* cublas_ws = nullptr;
  DF11_CUDA_CHECK(cudaMalloc(&cublas_ws, 32 << 20));
  DF11_CUBLAS_CHECK(cublasSetWorkspace(cublas, cublas_ws, 32 << 20));
  int bad = 0;
  for (auto [n, k] : shapes) {
    std::vector<uint16_t> w(static_cast<size_t>(n * k));
    std::mt19937_64 rng(n * 31 + k);
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (auto& v : w) v = FloatToBf16(d(rng));
    Ew4Encoded e;
    if (std::string err = Ew4EncodeRef(w.data(), n, k, 16, &e); !err.empty()) {
      std::fprintf(stderr, "%lld x %lld: %s\n", static_cast<long long>(n),
                   static_cast<long long>(k), err.c_str());
      return 1;
    }
    Ew4DeviceBuffer ew4(e.View());
    uint16_t* raw = Upload(w);
    std::vector<float> xh(static_cast<size_t>(kEw4GemvMaxBatch * k));
    for (auto& v : xh) v = d(rng) * 50;
    float* x = Upload(xh);
    float *y = nullptr, *want = nullptr, *ws = nullptr;
    uint16_t* x_bf16 = nullptr;
    DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&y), 4 * kEw4GemvMaxBatch * n));
    DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&want), 4 * kEw4GemvMaxBatch * n));
    DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ws),
                               4 * Ew4GemvWorkspaceFloats(kEw4GemvMaxBatch, n, k)));
    DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&x_bf16), 2 * kEw4GemvMaxBatch * k));
    for (int64_t m : batches) {
      Bf16GemvOrderedCuda(x, raw, nullptr, want, m, n, k, ws, stream);
      Ew4GemvCuda(x, ew4.view(), nullptr, y, m, ws, stream);
      std::vector<float> a(static_cast<size_t>(m * n)), b(a.size());
      DF11_CUDA_CHECK(cudaMemcpyAsync(a.data(), want, 4 * m * n, cudaMemcpyDeviceToHost, stream));
      DF11_CUDA_CHECK(cudaMemcpyAsync(b.data(), y, 4 * m * n, cudaMemcpyDeviceToHost, stream));
      DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
      const bool verified = std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
      bad += verified ? 0 : 1;
      const double ew4_us = TimeGraph(stream, reps, [&] {
        Ew4GemvCuda(x, ew4.view(), nullptr, y, m, ws, stream);
      });
      const double cublas_us = TimeGraph(stream, reps, [&] {
        GemmBf16Cuda(x, raw, nullptr, y, m, n, k, x_bf16, cublas, stream);
      });
      std::printf("{\"bench\":\"ew4_gemv_cuda\",\"n\":%lld,\"k\":%lld,\"batch\":%lld,"
                  "\"ew4_us\":%.2f,\"cublas_us\":%.2f,\"speedup\":%.3f,\"ew4_gbps\":%.1f,"
                  "\"escape_rate\":%.6f,\"verified\":%s}\n",
                  static_cast<long long>(n), static_cast<long long>(k),
                  static_cast<long long>(m), ew4_us, cublas_us, cublas_us / ew4_us,
                  static_cast<double>(e.stored_bytes()) / (ew4_us * 1e3), e.escape_rate(),
                  verified ? "true" : "false");
      std::fflush(stdout);
    }
    for (void* p : {static_cast<void*>(raw), static_cast<void*>(x), static_cast<void*>(y),
                    static_cast<void*>(want), static_cast<void*>(ws), static_cast<void*>(x_bf16)}) {
      DF11_CUDA_CHECK(cudaFree(p));
    }
  }
  DF11_CUBLAS_CHECK(cublasDestroy(cublas));
  DF11_CUDA_CHECK(cudaFree(cublas_ws));
  DF11_CUDA_CHECK(cudaStreamDestroy(stream));
  return bad == 0 ? 0 : 1;
}

std::vector<int64_t> Ints(const std::string& s, char sep) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) out.push_back(std::atoll(part.c_str()));
  return out;
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) {
  int reps = 50;
  std::vector<std::pair<int64_t, int64_t>> shapes = {
      {4096, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};
  std::vector<int64_t> batches = {1, 4, 8};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--batches" && i + 1 < argc) {
      batches = df11::Ints(argv[++i], ',');
    } else if (a == "--shapes" && i + 1 < argc) {
      shapes.clear();
      std::stringstream in(argv[++i]);
      for (std::string part; std::getline(in, part, ',');) {
        const auto nk = df11::Ints(part, ':');
        if (nk.size() != 2) {
          std::fprintf(stderr, "--shapes: expected n:k[,n:k...], got %s\n", part.c_str());
          return 2;
        }
        shapes.push_back({nk[0], nk[1]});
      }
    } else {
      std::fprintf(stderr, "usage: ew4_gemv_cuda_bench [--reps N] [--shapes n:k,...] [--batches 1,4,8]\n");
      return 2;
    }
  }
  for (int64_t m : batches) {
    if (m < 1 || m > df11::kEw4GemvMaxBatch) {
      std::fprintf(stderr, "--batches: each in 1..%lld\n", static_cast<long long>(df11::kEw4GemvMaxBatch));
      return 2;
    }
  }
  return df11::Run(reps, shapes, batches);
}
