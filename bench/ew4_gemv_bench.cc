// SPDX-License-Identifier: Apache-2.0
// CPU GEMV benchmarks at the shapes of Llama 3.1 8B's layers and head (out x in: 4096 x 4096,
// 14336 x 4096, 4096 x 14336, 128256 x 4096) and batches 1, 4, 8, side by side in one run: the
// ew4 fused decode-GEMV (Ew4GemvCpu), the BF16 GEMV the CPU backend uses for BF16 weights
// (GemmBf16Cpu), and the ew4 kernel's summation order on raw BF16 (Bf16GemvOrderedCpu). Weights
// N(0, 0.02) in BF16 (~1.5e-4 escapes). Counters: weights/s and weight bytes/s read.
// streamed:0 multiplies one matrix again and again, so a matrix smaller than the last-level
// cache is read from it; streamed:1 cycles through copies of at least kStreamedBytes in all (in
// its own format), so every multiply reads its weights from memory, as a model's layers are
// read when the model is larger than the cache.
//   [DF11_CPU_LEVEL=scalar|avx2|avx512] ew4_gemv_bench [--threads N] [google benchmark flags]
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/parallel_for.h"
#include "kernels/ew4/ew4_encode.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/gemm/gemm.h"

namespace df11 {
namespace {

int g_threads = 2;
// Bytes of weight copies a streamed benchmark cycles through: above the 480 MB last-level cache
// of the machine these figures were first measured on, and most servers'.
constexpr double kStreamedBytes = 1.5 * (1 << 30);

struct Matrix {
  std::vector<uint16_t> bf16;
  Ew4Encoded ew4;
};

const Matrix& MatrixOf(int64_t n, int64_t k) {
  static std::map<std::pair<int64_t, int64_t>, Matrix> cache;
  auto it = cache.find({n, k});
  if (it != cache.end()) return it->second;
  Matrix& m = cache[{n, k}];
  m.bf16.resize(static_cast<size_t>(n * k));
  const int64_t chunk = 1 << 20;
  ParallelFor((n * k + chunk - 1) / chunk, DefaultThreadCount(), 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      std::mt19937_64 rng(77 + c);
      std::normal_distribution<float> d(0.0f, 0.02f);
      for (int64_t i = c * chunk; i < std::min(n * k, (c + 1) * chunk); ++i) {
        m.bf16[i] = FloatToBf16(d(rng));
      }
    }
  });
  if (std::string e = Ew4EncodeRef(m.bf16.data(), n, k, DefaultThreadCount(), &m.ew4); !e.empty()) {
    std::fprintf(stderr, "%s\n", e.c_str());
    std::abort();
  }
  return m;
}

std::vector<float> Activations(int64_t m, int64_t k) {
  std::vector<float> x(static_cast<size_t>(m * k));
  std::mt19937_64 rng(5);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (auto& v : x) v = d(rng);
  return x;
}

enum Kind { kEw4Fused, kBf16Gemv, kBf16SameOrder };

// Copies of the (n, k) matrix for streamed runs, in the format `kind` reads.
struct Copies {
  std::vector<std::vector<uint16_t>> bf16;
  std::vector<Ew4Encoded> ew4;
};

const Copies& CopiesOf(int64_t n, int64_t k, bool ew4) {
  static std::map<std::tuple<int64_t, int64_t, bool>, Copies> cache;
  auto it = cache.find({n, k, ew4});
  if (it != cache.end()) return it->second;
  const Matrix& w = MatrixOf(n, k);
  const double bytes = ew4 ? static_cast<double>(w.ew4.stored_bytes()) : 2.0 * n * k;
  const int count = static_cast<int>(std::ceil(kStreamedBytes / bytes));
  Copies& c = cache[{n, k, ew4}];
  for (int i = 0; i < count; ++i) {
    if (ew4) {
      c.ew4.push_back(w.ew4);
    } else {
      c.bf16.push_back(w.bf16);
    }
  }
  return c;
}

void BM_Gemv(benchmark::State& state, Kind kind) {
  const int64_t n = state.range(0), k = state.range(1), batch = state.range(2);
  const bool streamed = state.range(3) != 0;
  const Matrix& w = MatrixOf(n, k);
  // The matrices multiplied in turn: the one, or its copies.
  std::vector<Ew4View> ew4 = {w.ew4.View()};
  std::vector<const uint16_t*> bf16 = {w.bf16.data()};
  if (streamed) {
    const Copies& c = CopiesOf(n, k, kind == kEw4Fused);
    ew4.clear();
    bf16.clear();
    for (const Ew4Encoded& e : c.ew4) ew4.push_back(e.View());
    for (const auto& b : c.bf16) bf16.push_back(b.data());
  }
  const std::vector<float> x = Activations(batch, k);
  std::vector<float> y(static_cast<size_t>(batch * n));
  size_t turn = 0;
  for (auto _ : state) {
    switch (kind) {
      case kEw4Fused:
        Ew4GemvCpu(x.data(), ew4[turn++ % ew4.size()], nullptr, y.data(), batch, g_threads);
        break;
      case kBf16Gemv:
        GemmBf16Cpu(x.data(), bf16[turn++ % bf16.size()], nullptr, y.data(), batch, n, k,
                    g_threads);
        break;
      case kBf16SameOrder:
        Bf16GemvOrderedCpu(x.data(), bf16[turn++ % bf16.size()], nullptr, y.data(), batch, n, k,
                           g_threads);
        break;
    }
    benchmark::DoNotOptimize(y.data());
  }
  const double bytes = kind == kEw4Fused ? static_cast<double>(w.ew4.stored_bytes())
                                         : 2.0 * static_cast<double>(n * k);
  state.counters["weights/s"] = benchmark::Counter(static_cast<double>(n * k),
                                                   benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bits/w"] = 8.0 * bytes / static_cast<double>(n * k);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{256, 4096}, {1024, 1024}, {4096, 1024}, {1024, 4096}, {128256, 1024}, {4096, 4096}, {14336, 4096}, {4096, 14336},
                      {128256, 4096}}) {
    for (int64_t streamed : {0, 1}) {
      for (int64_t batch : {1, 4, 8}) b->Args({n, k, batch, streamed});
    }
  }
  b->ArgNames({"n", "k", "batch", "streamed"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_Gemv, ew4_fused, kEw4Fused)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_Gemv, bf16_gemm_cpu, kBf16Gemv)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_Gemv, bf16_same_order, kBf16SameOrder)->Apply(Shapes);

}  // namespace
}  // namespace df11

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      df11::g_threads = std::stoi(argv[++i]);
    } else {
      rest.push_back(argv[i]);
    }
  }
  std::printf("ew4 GEMV: %d threads, %s path (%s lowers it)\n", df11::g_threads,
              df11::CpuLevelName(df11::ActiveCpuLevel()), df11::kCpuLevelVariable);
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
