// SPDX-License-Identifier: Apache-2.0
// The CUDA tensor-core ew4 decode-GEMM (Ew4GemmTcCuda) against cuBLAS BF16 on resident raw
// weights (GemmBf16Cuda, what a BF16 model runs) and against ew4's decode to scratch + cuBLAS
// (what ew4 runs above the fused GEMV without it), at Llama 3.1 8B's layer and head shapes
// (out x in: 4096 x 4096, 14336 x 4096, 4096 x 14336, 128256 x 4096) and 16-256 tokens, on
// N(0, 0.02) BF16 weights. Each path is timed with CUDA events over a CUDA graph of `--reps`
// launches after a warm-up; the ew4 output is checked bit-identical to the same kernel on the
// raw BF16 tiles (Bf16GemmTcCuda). One JSON line per shape and batch:
//   {"bench":"ew4_gemm_tc_cuda","n":..,"k":..,"batch":..,"tc_us":..,"cublas_us":..,
//    "decode_cublas_us":..,"speedup":..(cublas_us / tc_us),"verified":true}
// With --table FILE, also the measurements as an Ew4GemmTable (ew4_gemm_select.h), which
// `df11-run --ew4-gemm-table FILE` reads to pick each ew4 GEMM's kernel. Plain CUDA: links neither Google Benchmark nor glog, so it runs on a
// bare GPU machine.
//   ew4_gemm_tc_cuda_bench [--reps N] [--shapes n:k,...] [--batches 16,32,...] [--table FILE]
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/cuda_bench_util.h"
#include "kernels/common/bf16.h"
#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_device.h"
#include "kernels/ew4/ew4_encode.h"
#include "kernels/ew4/ew4_gemm_select.h"
#include "kernels/ew4/ew4_gemm_tc.h"
#include "kernels/gemm/gemm.h"

namespace df11 {
namespace {

using bench::DeviceAlloc;
using bench::TimeGraph;
using bench::Upload;

int Run(int reps, const std::vector<std::pair<int64_t, int64_t>>& shapes,
        const std::vector<int64_t>& batches, const std::string& table_path) {
  cudaStream_t stream;
  DF11_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasHandle_t cublas;
  DF11_CUBLAS_CHECK(cublasCreate(&cublas));
  DF11_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  void* cublas_ws = nullptr;
  DF11_CUDA_CHECK(cudaMalloc(&cublas_ws, 32 << 20));
  DF11_CUBLAS_CHECK(cublasSetWorkspace(cublas, cublas_ws, 32 << 20));
  Ew4GemmTable table;
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
    w = {};
    const int64_t max_m = kEw4TcMaxBatch;
    std::vector<float> xh(static_cast<size_t>(max_m * k));
    for (auto& v : xh) v = d(rng) * 50;
    float* x = Upload(xh);
    float* y = DeviceAlloc<float>(max_m * n);
    float* want = DeviceAlloc<float>(max_m * n);
    float* ws = DeviceAlloc<float>(Ew4GemmTcWorkspaceFloats(max_m, n, k));
    uint16_t* x_bf16 = DeviceAlloc<uint16_t>(max_m * k);
    uint16_t* scratch = DeviceAlloc<uint16_t>(n * k);
    for (int64_t m : batches) {
      Bf16GemmTcCuda(x, raw, nullptr, want, m, n, k, x_bf16, ws, stream);
      Ew4GemmTcCuda(x, ew4.view(), nullptr, y, m, x_bf16, ws, stream);
      std::vector<float> a(static_cast<size_t>(m * n)), b(a.size());
      DF11_CUDA_CHECK(cudaMemcpyAsync(a.data(), want, 4 * m * n, cudaMemcpyDeviceToHost, stream));
      DF11_CUDA_CHECK(cudaMemcpyAsync(b.data(), y, 4 * m * n, cudaMemcpyDeviceToHost, stream));
      DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
      const bool verified = std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
      bad += verified ? 0 : 1;
      const double tc_us = TimeGraph(stream, reps, [&] {
        Ew4GemmTcCuda(x, ew4.view(), nullptr, y, m, x_bf16, ws, stream);
      });
      const double cublas_us = TimeGraph(stream, reps, [&] {
        GemmBf16Cuda(x, raw, nullptr, y, m, n, k, x_bf16, cublas, stream);
      });
      const double decode_us = TimeGraph(stream, reps, [&] {
        Ew4DecodeRowsCuda(ew4.view(), 0, n, scratch, stream);
        GemmBf16Cuda(x, scratch, nullptr, y, m, n, k, x_bf16, cublas, stream);
      });
      std::printf("{\"bench\":\"ew4_gemm_tc_cuda\",\"n\":%lld,\"k\":%lld,\"batch\":%lld,"
                  "\"tc_us\":%.2f,\"cublas_us\":%.2f,\"decode_cublas_us\":%.2f,"
                  "\"speedup\":%.3f,\"escape_rate\":%.6f,\"verified\":%s}\n",
                  static_cast<long long>(n), static_cast<long long>(k),
                  static_cast<long long>(m), tc_us, cublas_us, decode_us, cublas_us / tc_us,
                  e.escape_rate(), verified ? "true" : "false");
      std::fflush(stdout);
      table.Add({n, k, m, Ew4GemmPath::kTensorCore, tc_us});
      table.Add({n, k, m, Ew4GemmPath::kCublasBf16, cublas_us});
      table.Add({n, k, m, Ew4GemmPath::kDecodeCublas, decode_us});
    }
    for (void* p : {static_cast<void*>(raw), static_cast<void*>(x), static_cast<void*>(y),
                    static_cast<void*>(want), static_cast<void*>(ws),
                    static_cast<void*>(x_bf16), static_cast<void*>(scratch)}) {
      DF11_CUDA_CHECK(cudaFree(p));
    }
  }
  DF11_CUBLAS_CHECK(cublasDestroy(cublas));
  DF11_CUDA_CHECK(cudaFree(cublas_ws));
  DF11_CUDA_CHECK(cudaStreamDestroy(stream));
  if (!table_path.empty()) {
    std::ofstream out(table_path);
    out << table.Format();
    if (!out) {
      std::fprintf(stderr, "--table: cannot write %s\n", table_path.c_str());
      return 1;
    }
  }
  return bad == 0 ? 0 : 1;
}

// Comma-separated integers; false on anything else.
bool Ints(const std::string& s, char sep, std::vector<int64_t>* out) {
  out->clear();
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) {
    char* end = nullptr;
    const long long v = std::strtoll(part.c_str(), &end, 10);
    if (part.empty() || *end != '\0') return false;
    out->push_back(v);
  }
  return !out->empty();
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) {
  int reps = 20;
  std::vector<std::pair<int64_t, int64_t>> shapes = {
      {4096, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};
  std::vector<int64_t> batches = {16, 32, 64, 128, 256};
  std::string table;
  const char* usage =
      "usage: ew4_gemm_tc_cuda_bench [--reps N] [--shapes n:k,...] [--batches 16,32,...] "
      "[--table FILE]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
      if (reps < 1) {
        std::fprintf(stderr, "--reps: expected an integer >= 1, got %s\n", argv[i]);
        return 2;
      }
    } else if (a == "--batches" && i + 1 < argc) {
      if (!df11::Ints(argv[++i], ',', &batches)) {
        std::fprintf(stderr, "--batches: expected integers like 16,64, got %s\n", argv[i]);
        return 2;
      }
    } else if (a == "--table" && i + 1 < argc) {
      table = argv[++i];
    } else if (a == "--shapes" && i + 1 < argc) {
      shapes.clear();
      std::stringstream in(argv[++i]);
      for (std::string part; std::getline(in, part, ',');) {
        std::vector<int64_t> nk;
        if (!df11::Ints(part, ':', &nk) || nk.size() != 2 || nk[0] < 1 || nk[1] < 1) {
          std::fprintf(stderr, "--shapes: expected n:k[,n:k...] with n, k >= 1, got %s\n",
                       part.c_str());
          return 2;
        }
        shapes.push_back({nk[0], nk[1]});
      }
    } else {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
  }
  for (int64_t m : batches) {
    if (m < 1 || m > df11::kEw4TcMaxBatch) {
      std::fprintf(stderr, "--batches: each in 1..%lld, got %lld\n",
                   static_cast<long long>(df11::kEw4TcMaxBatch), static_cast<long long>(m));
      return 2;
    }
  }
  return df11::Run(reps, shapes, batches, table);
}
