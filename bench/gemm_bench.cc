// SPDX-License-Identifier: Apache-2.0
// CPU BF16 GEMV/GEMM (GemmBf16Cpu) on the shapes that matter: the 8B-class matrices at batch 1
// (4096x4096, 14336x4096, 4096x14336, 128256x4096) and the 0.38 B benchmark model's matrices
// (hidden 1024, MLP 4096, Llama 3.1 vocabulary) at batch 1, 8 and a 128-token prompt, on 1 and 2
// threads. Counters: weights/s (BF16 weights read per second) and GFLOP/s. The kernels are
// those of ActiveCpuLevel(): set DF11_CPU_LEVEL=scalar|avx2|avx512|avx512bf16 to compare levels.
//   gemm_bench [--benchmark_filter=REGEX] [google benchmark flags]
// Benchmarks are named gemm/M/N/K/THREADS.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <random>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/cpu_features.h"
#include "kernels/common/parallel_for.h"
#include "kernels/gemm/gemm.h"

namespace df11 {
namespace {

void BM_Gemm(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  std::vector<uint16_t> w(static_cast<size_t>(n * k));
  std::vector<float> x(static_cast<size_t>(m * k)), y(static_cast<size_t>(m * n));
  // Filled in parallel from per-chunk seeds: the same data on every run.
  const int64_t chunk = int64_t{1} << 20;
  ParallelFor(static_cast<int64_t>(w.size()), DefaultThreadCount(), chunk,
              [&](int64_t b, int64_t e) {
                std::mt19937 rng(static_cast<uint32_t>(b / chunk));
                std::normal_distribution<float> dist(0.0f, 0.02f);
                for (int64_t i = b; i < e; ++i) w[i] = FloatToBf16(dist(rng));
              });
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> ux(-1.0f, 1.0f);
  for (float& v : x) v = ux(rng);
  for (auto _ : state) {
    GemmBf16Cpu(x.data(), w.data(), nullptr, y.data(), m, n, k, threads);
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["weights/s"] =
      benchmark::Counter(iters * static_cast<double>(n * k), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(iters * 2e-9 * static_cast<double>(m * n * k),
                                                 benchmark::Counter::kIsRate);
  state.SetLabel(CpuLevelName(ActiveCpuLevel()));
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {14336, 4096}, {4096, 14336},
                        {128256, 4096}}) {
      b->Args({1, n, k, threads});
    }
    for (int64_t m : {1, 8, 128}) {
      for (auto [n, k] : {std::pair<int64_t, int64_t>{1024, 1024}, {256, 1024}, {4096, 1024},
                          {1024, 4096}, {128256, 1024}}) {
        b->Args({m, n, k, threads});
      }
    }
  }
}

BENCHMARK(BM_Gemm)->Name("gemm")->Apply(Shapes)->ArgNames({"m", "n", "k", "threads"})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace df11

BENCHMARK_MAIN();
