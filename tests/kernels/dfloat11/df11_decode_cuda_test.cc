// SPDX-License-Identifier: Apache-2.0
// Df11DecodeCuda against the CPU decoders, bit-exact: random and skewed units of many sizes
// (block edges, 0 and 1 elements, a single value), element sub-ranges, corrupt units (the error
// flag rises, nothing crashes, the flag agrees with the CPU mirror of the kernel), and decoding
// inside a CUDA graph; every range is also decoded the kernel's other ways (the benchmark's
// variants), which must agree. Outputs are poisoned first and a poisoned guard follows each range.
// Skips when no CUDA device is present. Links no glog and no MPI (runs on bare GPU machines).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <utility>

#include "bench/df11_decode_variants.h"
#include "kernels/common/cuda_check.h"
#include "kernels/dfloat11/df11_device_unit.h"
#include "tests/kernels/dfloat11/df11_test_util.h"

namespace df11 {
namespace {

using testing::FreshSeed;
using testing::NormalBf16;

constexpr uint16_t kPoison = 0xDEAD;
constexpr int64_t kGuard = 64;  // poisoned elements after each decoded range

// A device array of T (RAII).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(int64_t n) : n_(n) {
    DF11_CUDA_CHECK(
        cudaMalloc(reinterpret_cast<void**>(&p_), std::max<int64_t>(n, 1) * sizeof(T)));
  }
  ~DeviceArray() { DF11_CUDA_CHECK(cudaFree(p_)); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  // Waits for the device: cudaMemcpy from pageable memory may return before its DMA lands, and
  // the kernels run on a non-blocking stream that does not wait for it (a decode could otherwise
  // be overwritten by the tail of the poison it was meant to replace).
  void Upload(const std::vector<T>& host) {
    DF11_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
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

// "" when actual[0, n) equals expected[base, base + n), else the first mismatches.
std::string Mismatches(const std::vector<uint16_t>& expected, int64_t base,
                       const std::vector<uint16_t>& actual, int64_t n) {
  std::string text;
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (actual[i] == expected[base + i]) continue;
    if (++wrong <= 5) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "[%lld] expected 0x%04x got 0x%04x; ",
                    static_cast<long long>(base + i), expected[base + i], actual[i]);
      text += buf;
    }
  }
  return wrong == 0 ? "" : std::to_string(wrong) + " mismatches: " + text;
}

struct DeviceResult {
  std::vector<uint16_t> out;  // (end - begin)
  int flag = 0;
  bool guard_intact = true;  // nothing written past end - begin
};

// Decodes [begin, end) of a device unit into a poisoned buffer on `stream` with one variant.
DeviceResult DecodeOnDevice(const Df11DeviceUnit& unit, int64_t begin, int64_t end,
                            cudaStream_t stream, Df11DecodeVariant variant) {
  const int64_t n = end - begin;
  DeviceArray<uint16_t> out(n + kGuard);
  DeviceArray<int> flag(1);
  out.Upload(std::vector<uint16_t>(n + kGuard, kPoison));
  DF11_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0, sizeof(int), stream));
  Df11DecodeVariantCuda(unit, begin, end, out.get(), flag.get(), stream, variant);
  DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
  DeviceResult r;
  r.out = out.Download();
  r.guard_intact =
      std::all_of(r.out.begin() + n, r.out.end(), [](uint16_t v) { return v == kPoison; });
  r.out.resize(n);
  r.flag = flag.Download()[0];
  return r;
}

// All variants (multi-code lookups cut late or per lookup, and the per-code walk) must raise the
// same flag bits, valid unit or not, and write the same elements when no flag is raised (a
// flagged decode's output is unspecified); returns the default (multi) variant's result.
DeviceResult DecodeOnDevice(const Df11DeviceUnit& unit, int64_t begin, int64_t end,
                            cudaStream_t stream) {
  EXPECT_NE(unit.multi, nullptr);
  DeviceResult multi = DecodeOnDevice(unit, begin, end, stream, Df11DecodeVariant::kMulti);
  for (const auto& [variant, name] :
       {std::pair{Df11DecodeVariant::kWalk, "walk"},
        std::pair{Df11DecodeVariant::kMultiCutEach, "cut per lookup"}}) {
    const DeviceResult other = DecodeOnDevice(unit, begin, end, stream, variant);
    EXPECT_EQ(multi.flag, other.flag) << "multi vs " << name << " error flags";
    if (multi.flag == 0 && other.flag == 0) {
      EXPECT_TRUE(multi.out == other.out) << "multi vs " << name << " outputs differ";
    }
    multi.guard_intact = multi.guard_intact && other.guard_intact;
  }
  return multi;
}

// Encodes `words` as one unit (the encoder's round trip through the CPU decoder must hold).
Df11EncodedUnit Encode(const std::vector<uint16_t>& words) {
  Df11EncodedUnit unit;
  const std::string err = testing::RoundTrip(words, 2, &unit);
  EXPECT_EQ(err, "") << "CPU round trip";
  return unit;
}

// Two equally likely exponents give 1-bit codes, so n elements make exactly n stream bits.
std::vector<uint16_t> OneBitPerElement(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> words(n);
  for (int64_t i = 0; i < n; ++i) words[i] = Df11Combine(126 + (i & 1), rng() & 0xFF);
  return words;
}

// Fibonacci exponent counts (the deepest Huffman tree for its size): 28 exponents with codes up
// to 27 bits and several sub-tables. Shuffled, or with the rarest exponents clustered.
std::vector<uint16_t> SkewedBf16(uint64_t seed, bool clustered) {
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> words;
  uint64_t f0 = 1, f1 = 1;
  for (uint32_t e = 100; e < 128; ++e) {
    for (uint64_t k = 0; k < f0; ++k) words.push_back(Df11Combine(e, rng() & 0xFF));
    const uint64_t next = f0 + f1;
    f0 = f1;
    f1 = next;
  }
  std::reverse(words.begin(), words.end());  // most frequent first
  const auto rare_end = words.end() - (clustered ? 100 : 0);
  std::shuffle(words.begin(), rare_end, rng);
  return words;
}

class Df11DecodeCudaTest : public ::testing::Test {
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

  // Full decode on the device equals `words` and the CPU decoder; no flag, nothing past the end.
  void ExpectDecodesExactly(const std::vector<uint16_t>& words) {
    const Df11EncodedUnit unit = Encode(words);
    std::vector<uint16_t> cpu;
    ASSERT_EQ(testing::DecodeAll(unit.View(), &cpu), "");
    Df11DeviceBuffer device(unit.View());
    const DeviceResult r = DecodeOnDevice(device.unit(), 0, unit.n_elements, stream_);
    EXPECT_EQ(r.flag, 0);
    EXPECT_TRUE(r.guard_intact);
    EXPECT_EQ(Mismatches(cpu, 0, r.out, unit.n_elements), "");
    EXPECT_EQ(Mismatches(words, 0, r.out, unit.n_elements), "");
  }

  // Decodes a (corrupt) unit in full; returns the error flag.
  int DecodeFlag(const Df11EncodedUnit& unit) {
    const std::string invalid = Df11ValidateUnit(unit.View());
    EXPECT_EQ(invalid, "") << "the corruption must pass validation to reach the kernel";
    if (!invalid.empty()) return -1;
    Df11DeviceBuffer device(unit.View());
    return DecodeOnDevice(device.unit(), 0, unit.n_elements, stream_).flag;
  }

  cudaStream_t stream_ = nullptr;
};

TEST_F(Df11DecodeCudaTest, NormalUnitsOfSeveralSizes) {
  for (int64_t n : {1000, 4096, 65'537, 1'000'003, 3'000'017}) {
    for (double sigma : {0.02, 0.0005, 1.0}) {
      const uint64_t seed = FreshSeed();
      SCOPED_TRACE("n " + std::to_string(n) + " sigma " + std::to_string(sigma) + " seed " +
                   std::to_string(seed));
      ExpectDecodesExactly(NormalBf16(n, sigma, seed));
    }
  }
}

TEST_F(Df11DecodeCudaTest, StreamsAroundBlockEdges) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (int64_t bytes : {4095, 4096, 4097, 8191, 8192, 8193}) {
    for (int64_t extra_bits : {-1, 0, 1}) {
      const int64_t n = 8 * bytes + extra_bits;
      SCOPED_TRACE("elements " + std::to_string(n));
      const auto words = OneBitPerElement(n, seed + n);
      ASSERT_EQ(static_cast<int64_t>(Encode(words).encoded_exponent.size()), (n + 7) / 8);
      ExpectDecodesExactly(words);
    }
  }
}

TEST_F(Df11DecodeCudaTest, TinyUnits) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  ExpectDecodesExactly(NormalBf16(1, 0.02, seed));
  ExpectDecodesExactly(NormalBf16(7, 0.02, seed));
  ExpectDecodesExactly(NormalBf16(9, 0.02, seed));
  // No elements: uploads, and decoding the empty range writes nothing.
  const Df11EncodedUnit empty = Encode({});
  Df11DeviceBuffer device(empty.View());
  const DeviceResult r = DecodeOnDevice(device.unit(), 0, 0, stream_);
  EXPECT_EQ(r.flag, 0);
  EXPECT_TRUE(r.guard_intact);
}

TEST_F(Df11DecodeCudaTest, SkewedUnitsWithLongCodesAndSubTables) {
  for (bool clustered : {false, true}) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("clustered " + std::to_string(clustered) + " seed " + std::to_string(seed));
    const auto words = SkewedBf16(seed, clustered);
    const Df11EncodedUnit unit = Encode(words);
    EXPECT_GE(unit.code.max_length, 25);
    EXPECT_GE(unit.n_luts, 5) << "row 0, at least 3 sub-tables, the lengths row";
    ExpectDecodesExactly(words);
  }
}

TEST_F(Df11DecodeCudaTest, SingleValueFillsBlocksToTheSharedMemoryLimit) {
  // 1-bit codes: 32768 elements per block, the largest block the format allows.
  const std::vector<uint16_t> words(5 * 32768 + 123, 0x3C23);
  const Df11EncodedUnit unit = Encode(words);
  Df11DeviceBuffer device(unit.View());
  EXPECT_EQ(device.unit().max_block_elements, 32768);
  ExpectDecodesExactly(words);
}

TEST_F(Df11DecodeCudaTest, BufferAlignsFieldsAndSurvivesAMove) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const auto words = NormalBf16(100'000, 0.02, seed);
  const Df11EncodedUnit unit = Encode(words);
  Df11DeviceBuffer first(unit.View());
  Df11DeviceBuffer device = std::move(first);
  EXPECT_EQ(first.device_bytes(), 0u);
  const Df11UnitView& v = device.unit().view;
  for (const uint8_t* p : {v.luts, v.encoded, v.sign_mantissa, v.output_positions, v.gaps}) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
  }
  EXPECT_GE(device.device_bytes(),
            static_cast<size_t>(Df11BlockCount(v.n_bytes) * 4096 + 16 + v.n_elements));
  EXPECT_EQ(device.unit().n_position_blocks, v.n_output_positions - 1);
  const DeviceResult r = DecodeOnDevice(device.unit(), 0, unit.n_elements, stream_);
  EXPECT_EQ(r.flag, 0);
  EXPECT_EQ(Mismatches(words, 0, r.out, unit.n_elements), "");
}

TEST_F(Df11DecodeCudaTest, ElementSubRanges) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const auto words = NormalBf16(1'000'003, 0.02, seed);
  const Df11EncodedUnit unit = Encode(words);
  const Df11UnitView view = unit.View();
  Df11CpuTables tables;
  BuildDf11CpuTables(view, &tables);
  Df11DeviceBuffer device(view);
  const int64_t n = unit.n_elements;
  ASSERT_GE(device.unit().n_position_blocks, 5);
  const int64_t p2 = Df11OutputPosition(view, 2), p3 = Df11OutputPosition(view, 3),
                p4 = Df11OutputPosition(view, 4);
  std::vector<std::pair<int64_t, int64_t>> ranges = {
      {333, 10'000},      // begin not a multiple of 8
      {8000, 50'008},     // begin and end multiples of 8
      {8000, 50'013},     // begin a multiple of 8, end not
      {12'345, 12'346},   // one element
      {0, 1},             {n - 1, n},
      {p3, p4},           // one whole block
      {p2 - 5, p2 + 5},   // across a block edge
      {p2 - 1, p4 + 1},   // a block and its neighbours' edges
      {0, n},
  };
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 30; ++i) {
    int64_t a = rng() % (n + 1), b = rng() % (n + 1);
    ranges.emplace_back(std::min(a, b), std::max(a, b));
  }
  for (auto [begin, end] : ranges) {
    SCOPED_TRACE("range " + std::to_string(begin) + ".." + std::to_string(end));
    std::vector<uint16_t> cpu(end - begin, kPoison);
    ASSERT_EQ(Df11DecodeRangeRef(view, tables, begin, end, cpu.data()), "");
    const DeviceResult r = DecodeOnDevice(device.unit(), begin, end, stream_);
    EXPECT_EQ(r.flag, 0);
    EXPECT_TRUE(r.guard_intact);
    EXPECT_EQ(Mismatches(cpu, 0, r.out, end - begin), "");
    EXPECT_EQ(Mismatches(words, begin, r.out, end - begin), "");
  }
}

class Df11DecodeCudaCorrupt : public Df11DecodeCudaTest {
 protected:
  void SetUp() override {
    Df11DecodeCudaTest::SetUp();
    if (IsSkipped()) return;
    seed_ = FreshSeed();
    words_ = NormalBf16(60'000, 0.02, seed_);
    unit_ = Encode(words_);
    ASSERT_GE(unit_.n_luts, 3) << "needs a sub-table";
    ASSERT_GE(unit_.output_positions.size(), 16u) << "needs 3 blocks";
  }
  // Flips the lowest bit of window w's 5-bit gap field.
  static void FlipGap(Df11EncodedUnit* unit, int64_t w) {
    const int64_t bit = w * kDf11GapBits + kDf11GapBits - 1;
    unit->gaps[bit >> 3] ^= static_cast<uint8_t>(0x80 >> (bit & 7));
  }
  uint64_t seed_ = 0;
  std::vector<uint16_t> words_;
  Df11EncodedUnit unit_;
};

TEST_F(Df11DecodeCudaCorrupt, GapRaisesTheFlag) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  for (int64_t w : {1, 100, 511, 512, 513, 1000}) {
    SCOPED_TRACE("window " + std::to_string(w));
    Df11EncodedUnit copy = unit_;
    FlipGap(&copy, w);
    EXPECT_NE(DecodeFlag(copy) & 2, 0) << "gap mismatch bit";
  }
}

TEST_F(Df11DecodeCudaCorrupt, PositionsRaiseTheFlag) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  for (int entry : {1, 2}) {
    for (int delta : {-1, 1}) {
      SCOPED_TRACE("entry " + std::to_string(entry) + " delta " + std::to_string(delta));
      Df11EncodedUnit copy = unit_;
      uint8_t* p = copy.output_positions.data() + 4 * entry;
      const uint32_t v = Df11LoadU32Le(p) + delta;
      for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
      EXPECT_NE(DecodeFlag(copy) & 4, 0) << "count mismatch bit";
    }
  }
}

TEST_F(Df11DecodeCudaCorrupt, TablesRaiseTheFlag) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  const int lengths_row = (unit_.n_luts - 1) * 256;
  int unused = 0;  // an exponent outside the code (length 0)
  while (unit_.luts[lengths_row + unused] != 0) ++unused;
  {
    SCOPED_TRACE("every row-0 entry decodes to an exponent outside the code");
    Df11EncodedUnit copy = unit_;
    std::fill(copy.luts.begin(), copy.luts.begin() + 256, static_cast<uint8_t>(unused));
    EXPECT_NE(DecodeFlag(copy) & 1, 0) << "bad code bit";
  }
  {
    SCOPED_TRACE("a pointer cycle: no code ends within 32 bits");
    Df11EncodedUnit copy = unit_;
    std::fill(copy.luts.begin(), copy.luts.begin() + 512, static_cast<uint8_t>(255));
    EXPECT_NE(DecodeFlag(copy) & 1, 0) << "bad code bit";
  }
  {
    SCOPED_TRACE("the most common exponent's row-0 entries give another exponent");
    const int common = static_cast<int>(
        std::max_element(unit_.histogram.begin(), unit_.histogram.end()) - unit_.histogram.begin());
    int other = 0;  // a coded exponent with a different code length
    while (unit_.luts[lengths_row + other] == 0 ||
           unit_.luts[lengths_row + other] == unit_.luts[lengths_row + common]) {
      ++other;
    }
    Df11EncodedUnit copy = unit_;
    std::replace(copy.luts.begin(), copy.luts.begin() + 256, static_cast<uint8_t>(common),
                 static_cast<uint8_t>(other));
    EXPECT_NE(DecodeFlag(copy), 0);
  }
}

TEST_F(Df11DecodeCudaCorrupt, RandomFlipsAgreeWithTheCpuMirror) {
  // Df11DecodeWindowsRef runs the kernel's algorithm: it reports an error exactly when the
  // kernel raises its flag, and otherwise both decode the same elements.
  SCOPED_TRACE("seed " + std::to_string(seed_));
  std::mt19937_64 rng(seed_);
  int flagged = 0, checked = 0;
  for (int trial = 0; trial < 200; ++trial) {
    Df11EncodedUnit copy = unit_;
    std::vector<uint8_t>* fields[] = {&copy.luts, &copy.encoded_exponent, &copy.gaps,
                                      &copy.output_positions};
    auto* f = fields[rng() % 4];
    for (int k = 0; k < 3; ++k) (*f)[rng() % f->size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    if (!Df11ValidateUnit(copy.View()).empty()) continue;
    // The device copy reads zeros past the end of gaps; so does the CPU mirror's copy.
    std::vector<uint8_t> padded_gaps = copy.gaps;
    padded_gaps.resize(copy.gaps.size() + 16, 0);
    Df11UnitView host = copy.View();
    host.gaps = padded_gaps.data();
    std::vector<uint16_t> cpu(copy.n_elements, kPoison);
    const std::string cpu_error = Df11DecodeWindowsRef(host, 0, copy.n_elements, cpu.data());
    Df11DeviceBuffer device(copy.View());
    const DeviceResult r = DecodeOnDevice(device.unit(), 0, copy.n_elements, stream_);
    EXPECT_TRUE(r.guard_intact) << "trial " << trial;
    EXPECT_EQ(cpu_error.empty(), r.flag == 0)
        << "trial " << trial << ": CPU '" << cpu_error << "', flag " << r.flag;
    if (cpu_error.empty() && r.flag == 0) {
      EXPECT_EQ(Mismatches(cpu, 0, r.out, copy.n_elements), "") << "trial " << trial;
    }
    flagged += r.flag != 0;
    ++checked;
  }
  EXPECT_GT(checked, 50);
  EXPECT_GT(flagged, 10);
}

TEST_F(Df11DecodeCudaTest, DecodesInsideACudaGraph) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const auto words = NormalBf16(500'001, 0.02, seed);
  const Df11EncodedUnit unit = Encode(words);
  Df11DeviceBuffer device(unit.View());
  const int64_t n = unit.n_elements, sub_begin = 1234, sub_end = 400'007;
  DeviceArray<uint16_t> full(n), part(sub_end - sub_begin);
  DeviceArray<int> flag(1);

  cudaGraph_t graph;
  DF11_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  DF11_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0, sizeof(int), stream_));
  Df11DecodeCuda(device.unit(), 0, n, full.get(), flag.get(), stream_);
  Df11DecodeCuda(device.unit(), sub_begin, sub_end, part.get(), flag.get(), stream_);
  DF11_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec;
  DF11_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

  for (int replay = 0; replay < 2; ++replay) {
    SCOPED_TRACE("replay " + std::to_string(replay));
    full.Upload(std::vector<uint16_t>(n, kPoison));
    part.Upload(std::vector<uint16_t>(sub_end - sub_begin, kPoison));
    DF11_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
    DF11_CUDA_CHECK(cudaStreamSynchronize(stream_));
    EXPECT_EQ(flag.Download()[0], 0);
    EXPECT_EQ(Mismatches(words, 0, full.Download(), n), "");
    EXPECT_EQ(Mismatches(words, sub_begin, part.Download(), sub_end - sub_begin), "");
  }
  DF11_CUDA_CHECK(cudaGraphExecDestroy(exec));
  DF11_CUDA_CHECK(cudaGraphDestroy(graph));
}

}  // namespace
}  // namespace df11
