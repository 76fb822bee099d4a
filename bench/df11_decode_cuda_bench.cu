// SPDX-License-Identifier: Apache-2.0
// Df11DecodeCuda throughput against the device's own copy bandwidth, beside the kernel's other
// ways of decoding windows (bench/df11_decode_variants.h: cut per lookup, per-code table walk). First times a 1 GiB
// device-to-device cudaMemcpyAsync (bytes read + written per second: the roofline), then for
// each size a unit of N(0, 0.02) BF16 weights (generated and encoded on the host on all
// threads) is decoded `runs` times after `warmup` runs; reports the median as GB/s of BF16
// output, bytes moved (compressed fields read + BF16 written) per second and that as % of the
// copy bandwidth, one human line and one JSON line per size. The last decode's output must equal
// the input and the error flag must stay 0, else the exit code is 1. A spin kernel runs before
// each timed call so that host launch overhead is not timed (it is reported apart).
//   df11_decode_cuda_bench [--sizes 64,256,1024] [--runs 20] [--warmup 3] [--threads N]
// Sizes are in Mi weights (2^20). Links only df11_dfloat11 and the CUDA runtime.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bench/df11_decode_variants.h"
#include "kernels/common/bf16.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/parallel_for.h"
#include "kernels/dfloat11/df11_device_unit.h"
#include "kernels/dfloat11/df11_encode.h"

namespace df11 {
namespace {

struct Options {
  std::vector<int64_t> sizes_mi = {64, 256, 1024};  // unit sizes, in 2^20 weights
  int runs = 20;                                    // timed decodes per size (median reported)
  int warmup = 3;                                   // untimed decodes first
  int threads = DefaultThreadCount();               // host threads for generate + encode
};

constexpr double kSigma = 0.02;
constexpr int64_t kCopyBytes = int64_t{1} << 30;
constexpr int64_t kChunk = int64_t{1} << 20;  // generation chunk (its own RNG seed)

void Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--sizes 64,256,1024 (Mi weights)] [--runs N] [--warmup N] "
               "[--threads N]\n",
               argv0);
}

bool ParseOptions(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || i + 1 >= argc) return false;
    const std::string value = argv[++i];
    char* end = nullptr;
    if (flag == "--sizes") {
      o->sizes_mi.clear();
      for (const char* p = value.c_str(); *p != '\0';) {
        const long long v = std::strtoll(p, &end, 10);
        if (end == p || v <= 0 || v > 2047 || (*end != ',' && *end != '\0')) return false;
        o->sizes_mi.push_back(v);
        p = *end == ',' ? end + 1 : end;
      }
      if (o->sizes_mi.empty()) return false;
      continue;
    }
    const long v = std::strtol(value.c_str(), &end, 10);
    if (*end != '\0' || v < 0 || v > 100000) return false;
    if (flag == "--runs" && v > 0) {
      o->runs = static_cast<int>(v);
    } else if (flag == "--warmup") {
      o->warmup = static_cast<int>(v);
    } else if (flag == "--threads" && v > 0) {
      o->threads = static_cast<int>(v);
    } else {
      return false;
    }
  }
  return true;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// n BF16 weights from N(0, sigma) (Box-Muller on splitmix64), one seed per 2^20-weight chunk so
// the data does not depend on the thread count. Left uninitialised before: first touch is here.
std::unique_ptr<uint16_t[]> NormalBf16Parallel(int64_t n, uint64_t seed, int threads) {
  std::unique_ptr<uint16_t[]> w(new uint16_t[n]);
  ParallelFor(n, threads, kChunk, [&](int64_t begin, int64_t end) {
    uint64_t state = seed ^ (static_cast<uint64_t>(begin / kChunk) * 0xD1B54A32D192ED03ull);
    for (int64_t i = begin; i < end; i += 2) {
      const uint64_t r = SplitMix64(&state);
      // u1 in (0, 1], u2 in [0, 1), 24 bits each.
      const float u1 = static_cast<float>((r >> 40) + 1) * 0x1p-24f;
      const float u2 = static_cast<float>((r >> 8) & 0xFFFFFF) * 0x1p-24f;
      const float radius = static_cast<float>(kSigma) * std::sqrt(-2.0f * std::log(u1));
      const float angle = 6.28318530718f * u2;
      w[i] = FloatToBf16(radius * std::cos(angle));
      if (i + 1 < end) w[i + 1] = FloatToBf16(radius * std::sin(angle));
    }
  });
  return w;
}

// Keeps the GPU busy (~1 ms) while the host enqueues the timed work, so the timings exclude host
// launch overhead (Df11DecodeCuda searches output_positions on the host before launching).
__global__ void Spin(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

struct Timing {
  double median_ms = 0;   // device time between events around the work
  double enqueue_us = 0;  // median host time to enqueue it
};

// Times `enqueue` on `stream` `runs` times after `warmup` untimed calls.
template <typename Enqueue>
Timing TimeRuns(int warmup, int runs, cudaStream_t stream, Enqueue&& enqueue) {
  cudaEvent_t start, stop;
  DF11_CUDA_CHECK(cudaEventCreate(&start));
  DF11_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) enqueue();
  std::vector<float> ms(runs);
  std::vector<double> us(runs);
  for (int i = 0; i < runs; ++i) {
    Spin<<<1, 1, 0, stream>>>(2'000'000);
    DF11_CUDA_CHECK(cudaGetLastError());
    DF11_CUDA_CHECK(cudaEventRecord(start, stream));
    const auto t = std::chrono::steady_clock::now();
    enqueue();
    us[i] = 1e6 * Seconds(t);
    DF11_CUDA_CHECK(cudaEventRecord(stop, stream));
    DF11_CUDA_CHECK(cudaEventSynchronize(stop));
    DF11_CUDA_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  DF11_CUDA_CHECK(cudaEventDestroy(start));
  DF11_CUDA_CHECK(cudaEventDestroy(stop));
  std::nth_element(ms.begin(), ms.begin() + runs / 2, ms.end());
  std::nth_element(us.begin(), us.begin() + runs / 2, us.end());
  return {ms[runs / 2], us[runs / 2]};
}

// Device-to-device copy bandwidth in GB/s, counting bytes read and written.
double CopyBandwidth(const Options& o, cudaStream_t stream) {
  void *src = nullptr, *dst = nullptr;
  DF11_CUDA_CHECK(cudaMalloc(&src, kCopyBytes));
  DF11_CUDA_CHECK(cudaMalloc(&dst, kCopyBytes));
  DF11_CUDA_CHECK(cudaMemset(src, 0x5A, kCopyBytes));
  const double ms = TimeRuns(o.warmup, o.runs, stream, [&] {
    DF11_CUDA_CHECK(cudaMemcpyAsync(dst, src, kCopyBytes, cudaMemcpyDeviceToDevice, stream));
  }).median_ms;
  DF11_CUDA_CHECK(cudaFree(src));
  DF11_CUDA_CHECK(cudaFree(dst));
  const double gbps = 2.0 * kCopyBytes / (ms * 1e-3) / 1e9;
  std::printf("d2d copy: %lld bytes, median %.3f ms, %.1f GB/s (read + written)\n",
              static_cast<long long>(kCopyBytes), ms, gbps);
  std::printf("{\"bench\":\"d2d_copy\",\"bytes\":%lld,\"median_ms\":%.4f,\"gbps\":%.2f}\n",
              static_cast<long long>(kCopyBytes), ms, gbps);
  std::fflush(stdout);
  return gbps;
}

// Generates, encodes, decodes and checks one unit of `weights`; returns false on a mismatch.
bool BenchSize(const Options& o, int64_t weights, double copy_gbps, cudaStream_t stream) {
  const int64_t mi = weights >> 20;
  auto t = std::chrono::steady_clock::now();
  const std::unique_ptr<uint16_t[]> words = NormalBf16Parallel(weights, 0xDF11 + mi, o.threads);
  const double generate_s = Seconds(t);
  t = std::chrono::steady_clock::now();
  Df11EncodedUnit unit;
  std::string err;
  const std::span<const uint16_t> one(words.get(), weights);
  if (!Df11EncodeRef(std::span<const std::span<const uint16_t>>(&one, 1), o.threads, &unit, &err)) {
    std::fprintf(stderr, "%lld Mi weights: encode failed: %s\n", static_cast<long long>(mi),
                 err.c_str());
    return false;
  }
  const double encode_s = Seconds(t);
  const int64_t compressed = static_cast<int64_t>(
      unit.luts.size() + unit.encoded_exponent.size() + unit.sign_mantissa.size() +
      unit.output_positions.size() + unit.gaps.size());
  const int64_t bf16_bytes = 2 * weights;
  std::printf("%lld Mi weights: generate %.2f s, encode %.2f s (%.0f M weights/s, %d threads), "
              "%.3f bits/weight\n",
              static_cast<long long>(mi), generate_s, encode_s, weights / encode_s / 1e6,
              o.threads, 8.0 * compressed / weights);
  std::fflush(stdout);

  Df11DeviceBuffer device(unit.View());
  bool all_verified = true;
  for (const Df11DecodeVariant variant : {Df11DecodeVariant::kMulti, Df11DecodeVariant::kMultiCutEach,
                                         Df11DecodeVariant::kWalk}) {
    uint16_t* out = nullptr;
    int* flag = nullptr;
    DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&out), bf16_bytes));
    DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&flag), sizeof(int)));
    DF11_CUDA_CHECK(cudaMemset(out, 0xFF, bf16_bytes));  // poison: unwritten elements show
    DF11_CUDA_CHECK(cudaMemset(flag, 0, sizeof(int)));
    DF11_CUDA_CHECK(cudaDeviceSynchronize());  // legacy-stream memsets land before the decodes
    const Timing timing = TimeRuns(o.warmup, o.runs, stream, [&] {
      Df11DecodeVariantCuda(device.unit(), 0, weights, out, flag, stream, variant);
    });
    const double ms = timing.median_ms;
    DF11_CUDA_CHECK(cudaStreamSynchronize(stream));

    int flag_value = 0;
    DF11_CUDA_CHECK(cudaMemcpy(&flag_value, flag, sizeof(int), cudaMemcpyDeviceToHost));
    std::unique_ptr<uint16_t[]> decoded(new uint16_t[weights]);
    DF11_CUDA_CHECK(cudaMemcpy(decoded.get(), out, bf16_bytes, cudaMemcpyDeviceToHost));
    DF11_CUDA_CHECK(cudaFree(out));
    DF11_CUDA_CHECK(cudaFree(flag));
    int64_t first_bad = -1;
    if (std::memcmp(decoded.get(), words.get(), bf16_bytes) != 0) {
      const uint16_t* w = words.get();
      first_bad = std::mismatch(w, w + weights, decoded.get()).first - w;
    }
    const bool verified = flag_value == 0 && first_bad < 0;
    all_verified = all_verified && verified;

    const double out_gbps = bf16_bytes / (ms * 1e-3) / 1e9;
    const double moved_gbps = (bf16_bytes + compressed) / (ms * 1e-3) / 1e9;
    const double pct = 100.0 * moved_gbps / copy_gbps;
    const char* name = variant == Df11DecodeVariant::kMulti          ? "multi-code lookups"
                       : variant == Df11DecodeVariant::kMultiCutEach ? "multi-code, cut per lookup"
                                                                      : "per-code walk";
    std::printf("%lld Mi weights, %s: decode median %.3f ms | %.1f GB/s BF16 out | %.1f GB/s "
                "moved | %.1f %% of copy | host enqueue %.0f us | %s\n",
                static_cast<long long>(mi), name, ms, out_gbps, moved_gbps, pct,
                timing.enqueue_us, verified ? "verified" : "MISMATCH");
    if (flag_value != 0) std::printf("  error flag %d\n", flag_value);
    if (first_bad >= 0) {
      std::printf("  first mismatch at %lld: expected 0x%04x got 0x%04x\n",
                  static_cast<long long>(first_bad), words[first_bad], decoded[first_bad]);
    }
    // The default kernel reports as "df11_decode_cuda", the others under their own names.
    std::printf("{\"bench\":\"%s\",\"weights\":%lld,\"bf16_bytes\":%lld,"
                "\"compressed_bytes\":%lld,\"bits_per_weight\":%.4f,\"median_ms\":%.4f,"
                "\"out_gbps\":%.2f,\"moved_gbps\":%.2f,\"copy_gbps\":%.2f,\"pct_of_copy\":%.2f,"
                "\"enqueue_us\":%.1f,\"encode_s\":%.2f,\"verified\":%s}\n",
                variant == Df11DecodeVariant::kMulti          ? "df11_decode_cuda"
                : variant == Df11DecodeVariant::kMultiCutEach ? "df11_decode_cuda_cut_each"
                                                               : "df11_decode_cuda_walk",
                static_cast<long long>(weights), static_cast<long long>(bf16_bytes),
                static_cast<long long>(compressed), 8.0 * compressed / weights, ms, out_gbps,
                moved_gbps, copy_gbps, pct, timing.enqueue_us, encode_s,
                verified ? "true" : "false");
    std::fflush(stdout);
  }
  return all_verified;
}

int Main(int argc, char** argv) {
  Options o;
  if (!ParseOptions(argc, argv, &o)) {
    Usage(argv[0]);
    return 2;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop;
  DF11_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / double(1 << 30));
  cudaStream_t stream;
  DF11_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double copy_gbps = CopyBandwidth(o, stream);
  bool ok = true;
  for (int64_t mi : o.sizes_mi) ok = BenchSize(o, mi << 20, copy_gbps, stream) && ok;
  DF11_CUDA_CHECK(cudaStreamDestroy(stream));
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) { return df11::Main(argc, argv); }
