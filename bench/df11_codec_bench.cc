// SPDX-License-Identifier: Apache-2.0
// CPU DF11 codec benchmarks on a 64 M-weight unit drawn from N(0, 0.02) in BF16: encode and
// decode throughput (weights/s) on 1 and 2 threads beside memcpy of the same BF16 bytes (the
// roofline), with bits/weight against the field-split floor (8 + exponent entropy) as counters.
//   df11_codec_bench [--weights N] [--save-input FILE.bf16] [google benchmark flags]
//   df11_codec_bench --size-sweep [--weights N]
//   df11_codec_bench --size-of LIST
// --save-input writes the unit's raw little-endian BF16 for scripts/reference/bench_reference_encoder.py.
// --size-sweep prints, for several weight distributions, how far the encoded size is above the
// field-split floor and where the difference goes (prefix-code redundancy vs the format's fixed
// costs), instead of running the benchmarks; beside DF11, the same weights as ew4 (a matrix of
// rows of 4096): bits/weight and escape rate.
// --size-of LIST prints DF11 (one unit per matrix) against ew4 for real matrices: LIST has lines
// "name rows cols file" (file: raw little-endian BF16, relative to LIST's folder), as
// scripts/reference/make_minilm_bf16.sh writes them.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <functional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/parallel_for.h"
#include "kernels/dfloat11/df11_decode.h"
#include "kernels/dfloat11/df11_encode.h"
#include "kernels/ew4/ew4_encode.h"

namespace df11 {
namespace {

int64_t g_weights = int64_t{64} << 20;

const std::vector<uint16_t>& Weights() {
  static const std::vector<uint16_t> words = [] {
    std::vector<uint16_t> w(g_weights);
    // Fixed seed per 1 M chunk, filled in parallel: the same data on every run.
    const int64_t chunk = int64_t{1} << 20;
    ParallelFor((g_weights + chunk - 1) / chunk, DefaultThreadCount(), 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        std::mt19937_64 rng(1234 + c);
        std::normal_distribution<float> dist(0.0f, 0.02f);
        for (int64_t i = c * chunk; i < std::min(g_weights, (c + 1) * chunk); ++i) {
          w[i] = FloatToBf16(dist(rng));
        }
      }
    });
    return w;
  }();
  return words;
}

const Df11EncodedUnit& Unit() {
  static const Df11EncodedUnit unit = [] {
    Df11EncodedUnit u;
    std::string err;
    std::span<const uint16_t> one(Weights());
    if (!Df11EncodeRef(std::span<const std::span<const uint16_t>>(&one, 1), DefaultThreadCount(),
                       &u, &err)) {
      std::fprintf(stderr, "encode failed: %s\n", err.c_str());
      std::abort();
    }
    return u;
  }();
  return unit;
}

void SizeCounters(benchmark::State& state) {
  const Df11EncodedUnit& u = Unit();
  const double n = static_cast<double>(u.n_elements);
  const double stored = static_cast<double>(u.luts.size() + u.encoded_exponent.size() +
                                            u.sign_mantissa.size() + u.output_positions.size() +
                                            u.gaps.size());
  state.counters["bits_per_weight"] = 8.0 * stored / n;
  state.counters["floor_bits"] = 8.0 + HistogramEntropy(u.histogram);
  state.counters["exponent_bits"] = 8.0 * u.encoded_exponent.size() / n;
  state.counters["gap_bits"] = 8.0 * u.gaps.size() / n;
}

void BM_Memcpy(benchmark::State& state) {
  const auto& w = Weights();
  std::vector<uint16_t> dst(w.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), w.data(), w.size() * 2);
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(w.size()));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(w.size()) * 2);
}

void BM_Encode(benchmark::State& state) {
  const auto& w = Weights();
  std::span<const uint16_t> one(w);
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    Df11EncodedUnit u;
    std::string err;
    if (!Df11EncodeRef(std::span<const std::span<const uint16_t>>(&one, 1), threads, &u, &err)) {
      state.SkipWithError(err.c_str());
      return;
    }
    benchmark::DoNotOptimize(u.encoded_exponent.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(w.size()));
  SizeCounters(state);
}

void BM_Decode(benchmark::State& state) {
  const Df11EncodedUnit& u = Unit();
  const Df11UnitView v = u.View();
  Df11CpuTables tables;
  BuildDf11CpuTables(v, &tables);
  std::vector<uint16_t> out(u.n_elements);
  const int threads = static_cast<int>(state.range(0));
  const int64_t blocks = Df11PositionBlocks(v);
  for (auto _ : state) {
    ParallelFor(blocks, threads, 64, [&](int64_t b0, int64_t b1) {
      const int64_t lo = Df11OutputPosition(v, b0), hi = Df11OutputPosition(v, b1);
      std::string err = Df11DecodeRangeRef(v, tables, lo, hi, out.data() + lo);
      if (!err.empty()) std::abort();
    });
    benchmark::DoNotOptimize(out.data());
  }
  if (out != Weights()) state.SkipWithError("decode mismatch");
  state.SetItemsProcessed(state.iterations() * u.n_elements);
  state.SetBytesProcessed(state.iterations() * u.n_elements * 2);
  SizeCounters(state);
}

// Bits per symbol of an unrestricted Huffman code for the histogram (the optimum of any prefix
// code; the encoder's length-limited code should equal it on these distributions).
double HuffmanBitsPerSymbol(const ExponentHistogram& h) {
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<>> q;
  uint64_t total = 0;
  for (uint64_t c : h) {
    if (c != 0) q.push(c), total += c;
  }
  if (q.size() < 2) return q.empty() ? 0.0 : 1.0;
  uint64_t bits = 0;  // sum over merges of the merged weight = sum of count * depth
  while (q.size() > 1) {
    const uint64_t a = q.top();
    q.pop();
    const uint64_t b = q.top();
    q.pop();
    bits += a + b;
    q.push(a + b);
  }
  return static_cast<double>(bits) / static_cast<double>(total);
}

// DF11 bits/weight of `w` encoded as one unit (0 and a message on stderr when it cannot be).
double Df11Bits(const std::vector<uint16_t>& w, Df11EncodedUnit* u) {
  std::string err;
  std::span<const uint16_t> one(w);
  if (!Df11EncodeRef(std::span<const std::span<const uint16_t>>(&one, 1), DefaultThreadCount(), u,
                     &err)) {
    std::fprintf(stderr, "encode failed: %s\n", err.c_str());
    return 0;
  }
  return 8.0 *
         static_cast<double>(u->luts.size() + u->encoded_exponent.size() +
                             u->sign_mantissa.size() + u->output_positions.size() +
                             u->gaps.size()) /
         static_cast<double>(u->n_elements);
}

// `w` as an ew4 (rows, cols) matrix.
Ew4Encoded Ew4Of(const std::vector<uint16_t>& w, int64_t rows, int64_t cols) {
  Ew4Encoded e;
  if (std::string err = Ew4EncodeRef(w.data(), rows, cols, DefaultThreadCount(), &e); !err.empty()) {
    std::fprintf(stderr, "ew4 encode failed: %s\n", err.c_str());
  }
  return e;
}

double Ew4Bits(const Ew4Encoded& e) {
  return 8.0 * static_cast<double>(e.stored_bytes()) / static_cast<double>(e.rows * e.cols);
}

int SizeOf(const std::string& list) {
  std::ifstream in(list);
  if (!in) {
    std::fprintf(stderr, "--size-of %s: cannot open the list\n", list.c_str());
    return 2;
  }
  const std::string dir = list.find('/') == std::string::npos ? "." : list.substr(0, list.rfind('/'));
  std::printf("| matrix | shape | DF11 bits/w | ew4 bits/w | ew4 escape rate | ew4 kept (<= %.1f %%) |\n",
              100 * kEw4MaxEscapeRate);
  std::printf("|---|---|---|---|---|---|\n");
  double df11_bytes = 0, ew4_bytes = 0, served_bytes = 0, weights = 0, escapes = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name, file;
    int64_t rows = 0, cols = 0;
    if (!(fields >> name >> rows >> cols >> file) || rows <= 0 || cols <= 0) {
      std::fprintf(stderr, "%s: expected \"name rows cols file\", got \"%s\"\n", list.c_str(),
                   line.c_str());
      return 2;
    }
    std::vector<uint16_t> w(static_cast<size_t>(rows * cols));
    std::ifstream f(dir + "/" + file, std::ios::binary);
    if (!f.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(2 * w.size()))) {
      std::fprintf(stderr, "%s: %s: expected %lld BF16 weights\n", list.c_str(), file.c_str(),
                   static_cast<long long>(w.size()));
      return 2;
    }
    Df11EncodedUnit u;
    const double df11 = Df11Bits(w, &u);
    const Ew4Encoded e = Ew4Of(w, rows, cols);
    const double n = static_cast<double>(w.size());
    std::printf("| %s | %lld x %lld | %.3f | %.3f | %.4f %% | %s |\n", name.c_str(),
                static_cast<long long>(rows), static_cast<long long>(cols), df11, Ew4Bits(e),
                100 * e.escape_rate(), e.TooManyEscapes().empty() ? "ew4" : "no (DF11)");
    weights += n;
    df11_bytes += df11 * n / 8;
    ew4_bytes += static_cast<double>(e.stored_bytes());
    served_bytes += e.TooManyEscapes().empty() ? static_cast<double>(e.stored_bytes()) : df11 * n / 8;
    escapes += static_cast<double>(e.n_escapes());
  }
  std::printf("| **all (%.1f M weights)** | | **%.3f** | **%.3f** | **%.4f %%** | %.3f served |\n",
              weights / 1e6, 8 * df11_bytes / weights, 8 * ew4_bytes / weights,
              100 * escapes / weights, 8 * served_bytes / weights);
  return 0;
}

int SizeSweep() {
  struct Dist {
    std::string name;
    std::function<float(std::mt19937_64&)> draw;
  };
  std::vector<Dist> dists;
  for (float sigma : {0.002f, 0.005f, 0.01f, 0.014f, 0.02f, 0.028f, 0.04f, 0.1f}) {
    char name[64];
    std::snprintf(name, sizeof(name), "N(0, %g)", sigma);
    dists.push_back({name, [sigma](std::mt19937_64& rng) {
                       return std::normal_distribution<float>(0.0f, sigma)(rng);
                     }});
  }
  for (float b : {0.005f, 0.014f}) {
    char name[64];
    std::snprintf(name, sizeof(name), "Laplace(0, %g)", b);
    dists.push_back({name, [b](std::mt19937_64& rng) {
                       const float e = std::exponential_distribution<float>(1.0f / b)(rng);
                       return (rng() & 1) ? e : -e;
                     }});
  }
  for (float nu : {3.0f, 5.0f}) {
    char name[64];
    std::snprintf(name, sizeof(name), "0.01 * Student-t(%g)", nu);
    dists.push_back({name, [nu](std::mt19937_64& rng) {
                       return 0.01f * std::student_t_distribution<float>(nu)(rng);
                     }});
  }
  std::printf("%zu M weights per distribution; bits/weight\n", static_cast<size_t>(g_weights >> 20));
  std::printf("| weights | total | floor | above floor | codes above entropy | Huffman optimum above entropy | gaps | positions + tables | ew4 | ew4 escape rate |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Dist& d : dists) {
    std::vector<uint16_t> w(g_weights);
    std::mt19937_64 rng(99);
    for (auto& x : w) x = FloatToBf16(d.draw(rng));
    Df11EncodedUnit u;
    std::string err;
    std::span<const uint16_t> one(w);
    if (!Df11EncodeRef(std::span<const std::span<const uint16_t>>(&one, 1), DefaultThreadCount(),
                       &u, &err)) {
      std::fprintf(stderr, "%s: encode failed: %s\n", d.name.c_str(), err.c_str());
      return 1;
    }
    const double n = static_cast<double>(u.n_elements);
    const double total = 8.0 *
                         static_cast<double>(u.luts.size() + u.encoded_exponent.size() +
                                             u.sign_mantissa.size() + u.output_positions.size() +
                                             u.gaps.size()) / n;
    const double entropy = HistogramEntropy(u.histogram);
    const double code = 8.0 * static_cast<double>(u.encoded_exponent.size()) / n;
    const double gaps = 8.0 * static_cast<double>(u.gaps.size()) / n;
    const double rest =
        8.0 * static_cast<double>(u.luts.size() + u.output_positions.size()) / n;
    const Ew4Encoded e = Ew4Of(w, g_weights / 4096, 4096);
    std::printf("| %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f %% |\n",
                d.name.c_str(), total, 8.0 + entropy, total - 8.0 - entropy, code - entropy,
                HuffmanBitsPerSymbol(u.histogram) - entropy, gaps, rest, Ew4Bits(e),
                100 * e.escape_rate());
  }
  return 0;
}

BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Encode)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Decode)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace df11

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  std::string save;
  bool sweep = false;
  std::string size_of;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--weights" && i + 1 < argc) {
      df11::g_weights = std::stoll(argv[++i]);
    } else if (a == "--size-of" && i + 1 < argc) {
      size_of = argv[++i];
    } else if (a == "--size-sweep") {
      sweep = true;
    } else if (a == "--save-input" && i + 1 < argc) {
      save = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (sweep) return df11::SizeSweep();
  if (!size_of.empty()) return df11::SizeOf(size_of);
  if (!save.empty()) {
    const auto& w = df11::Weights();
    FILE* f = std::fopen(save.c_str(), "wb");
    if (f == nullptr || std::fwrite(w.data(), 2, w.size(), f) != w.size()) return 1;
    std::fclose(f);
    std::printf("wrote %zu weights to %s\n", w.size(), save.c_str());
    return 0;
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
