// SPDX-License-Identifier: Apache-2.0
// Malformed DF11 units: each corruption of a valid unit gives an error message, never a crash
// or a read out of bounds (run under ASan with DF11_SANITIZE=ON).
#include <gtest/gtest.h>

#include "kernels/dfloat11/df11_window.h"
#include "tests/kernels/dfloat11/df11_test_util.h"

namespace df11 {
namespace {

class Df11Malformed : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::FreshSeed();
    words_ = testing::NormalBf16(60'000, 0.02, seed_);
    ASSERT_EQ(testing::RoundTrip(words_, 1, &unit_), "");
  }
  std::string Decode() {
    std::vector<uint16_t> out;
    return testing::DecodeAll(unit_.View(), &out);
  }
  uint64_t seed_;
  std::vector<uint16_t> words_;
  Df11EncodedUnit unit_;
};

TEST_F(Df11Malformed, TablePointerOutOfRange) {
  unit_.luts[5] = 240;  // row 16, which does not exist
  EXPECT_NE(Decode().find("points to row 16"), std::string::npos) << Decode();
}

TEST_F(Df11Malformed, TablePointerCycle) {
  // Make every row-0 entry point to row 1 and row 1 point to itself: no code ever ends.
  ASSERT_GE(unit_.n_luts, 3) << "needs a sub-table";
  for (int i = 0; i < 256; ++i) unit_.luts[i] = 255;
  for (int i = 0; i < 256; ++i) unit_.luts[256 + i] = 255;
  EXPECT_NE(Decode().find("no valid code within 32 bits"), std::string::npos) << Decode();
}

TEST_F(Df11Malformed, CodeLongerThan32Bits) {
  unit_.luts[(unit_.n_luts - 1) * 256 + 120] = 33;
  EXPECT_NE(Decode().find("33 bits"), std::string::npos) << Decode();
}

TEST_F(Df11Malformed, DecreasingOutputPositions) {
  ASSERT_GE(unit_.output_positions.size(), 12u);
  unit_.output_positions[4] = 0xFF;
  unit_.output_positions[5] = 0xFF;
  unit_.output_positions[6] = 0x01;  // entry 1 becomes larger than entry 2
  EXPECT_NE(Decode().find("output_positions"), std::string::npos) << Decode();
}

TEST_F(Df11Malformed, OutputPositionsNotEndingAtElementCount) {
  unit_.output_positions.back() ^= 0x01;
  unit_.output_positions[unit_.output_positions.size() - 4] ^= 0x01;
  EXPECT_NE(Decode().find("output_positions"), std::string::npos) << Decode();
}

TEST_F(Df11Malformed, GapThatDisagreesWithTheStream) {
  // The CPU decoder starts its four chains per block at windows 0, 128, 256 and 384 and checks
  // that they meet; flip window 128's 5-bit field.
  const int64_t bit = 128 * 5 + 2;
  unit_.gaps[bit >> 3] ^= static_cast<uint8_t>(0x80 >> (bit & 7));
  std::string err = Decode();
  EXPECT_NE(err.find("gaps says"), std::string::npos) << err;
}

TEST_F(Df11Malformed, EveryGapCorruptionIsCaughtByTheWindowDecoder) {
  // The GPU algorithm reads every window's gap, so every wrong one must be detected.
  for (int64_t w = 1; w < 600; w += 7) {
    Df11EncodedUnit copy = unit_;
    const int64_t bit = w * 5 + 4;  // the field's lowest bit
    copy.gaps[bit >> 3] ^= static_cast<uint8_t>(0x80 >> (bit & 7));
    std::vector<uint16_t> out(words_.size());
    EXPECT_NE(Df11DecodeWindowsRef(copy.View(), 0, words_.size(), out.data(), false), "")
        << "cut per lookup, window " << w;
    EXPECT_NE(Df11DecodeWindowsRef(copy.View(), 0, words_.size(), out.data(), true), "")
        << "late cut, window " << w;
  }
}

TEST_F(Df11Malformed, TruncatedFields) {
  Df11UnitView v = unit_.View();
  std::vector<uint16_t> out;
  Df11UnitView short_stream = v;
  short_stream.n_bytes -= 4096;
  EXPECT_NE(testing::DecodeAll(short_stream, &out), "");
  Df11UnitView short_gaps = v;
  short_gaps.n_gap_bytes -= 1;
  EXPECT_NE(testing::DecodeAll(short_gaps, &out).find("gaps"), std::string::npos);
  Df11UnitView bad_rows = v;
  bad_rows.n_luts = 19;
  EXPECT_NE(testing::DecodeAll(bad_rows, &out).find("rows"), std::string::npos);
  Df11UnitView last_byte = v;
  last_byte.n_bytes -= 1;  // the last code then ends past the stream
  EXPECT_NE(testing::DecodeAll(last_byte, &out), "");
}

TEST_F(Df11Malformed, RandomByteFlipsNeverCrash) {
  std::mt19937_64 rng(seed_);
  for (int trial = 0; trial < 300; ++trial) {
    Df11EncodedUnit copy = unit_;
    std::vector<uint8_t>* fields[] = {&copy.luts, &copy.encoded_exponent, &copy.gaps,
                                      &copy.output_positions};
    auto* f = fields[rng() % 4];
    for (int k = 0; k < 3; ++k) (*f)[rng() % f->size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    std::vector<uint16_t> out;
    (void)testing::DecodeAll(copy.View(), &out);  // must return, error or not
    if (Df11ValidateUnit(copy.View()).empty()) {
      out.assign(words_.size(), 0);
      const std::string a = Df11DecodeWindowsRef(copy.View(), 0, words_.size(), out.data(), false);
      std::vector<uint16_t> late(words_.size(), 0);
      const std::string b = Df11DecodeWindowsRef(copy.View(), 0, words_.size(), late.data(), true);
      EXPECT_EQ(a, b) << "trial " << trial;  // the same verdict, and output when it is valid
      if (a.empty()) {
        EXPECT_EQ(out, late) << "trial " << trial;
      }
    }
  }
}

TEST_F(Df11Malformed, MultiCodeLookupsDecodeLikeTheWalkOnCorruptTables) {
  // The multi-code table packs several codes per lookup; on a corrupt table it must still stop
  // where walking the stored tables code by code stops (same codes, count, end and failure).
  std::mt19937_64 rng(seed_);
  int checked = 0, failing_windows = 0;
  for (int trial = 0; trial < 400; ++trial) {
    Df11EncodedUnit copy = unit_;
    for (int k = 0; k < 3; ++k) {
      copy.luts[rng() % copy.luts.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    const Df11UnitView v = copy.View();
    if (!Df11ValidateUnit(v).empty()) continue;
    ++checked;
    Df11CpuTables tables;
    BuildDf11CpuTables(v, &tables);
    const uint8_t* lengths = v.luts + static_cast<int64_t>(v.n_luts - 1) * 256;
    for (int64_t w = 0; w < (v.n_bytes + 7) / 8; ++w) {
      uint8_t bytes[12] = {};
      for (int i = 0; i < 12; ++i) {
        if (w * 8 + i < v.n_bytes) bytes[i] = v.encoded[w * 8 + i];
      }
      const Df11WindowBits bits = Df11WindowFromBytes(bytes);
      const uint32_t gap = Df11GapAt(v.gaps, v.n_gap_bytes, w);
      std::vector<uint32_t> walked, grouped;  // symbol | code end << 8
      const Df11WindowResult a = Df11DecodeWindow(
          bits, gap, v.luts, lengths,
          [&](int32_t, uint32_t symbol, uint32_t end) { walked.push_back(symbol | end << 8); });
      auto collect = [&](std::vector<uint32_t>* into) {
        return [&, into](int32_t, uint32_t symbols, uint32_t n, uint32_t start) {
          for (uint32_t j = 0; j < n; ++j) {
            const uint32_t symbol = (symbols >> (8 * j)) & 0xFF;
            start += lengths[symbol];
            into->push_back(symbol | start << 8);
          }
        };
      };
      const Df11WindowResult b = Df11DecodeWindowGroups(bits, gap, tables.multi.data(), v.luts,
                                                        lengths, collect(&grouped));
      ASSERT_EQ(a.count, b.count) << "trial " << trial << " window " << w;
      ASSERT_EQ(a.end, b.end) << "trial " << trial << " window " << w;
      ASSERT_EQ(a.ok, b.ok) << "trial " << trial << " window " << w;
      ASSERT_EQ(walked, grouped) << "trial " << trial << " window " << w;
      // The late cut: the same result; its groups may run past the window's last code.
      std::vector<uint32_t> late;
      const Df11WindowResult c = Df11DecodeWindowGroups<true>(bits, gap, tables.multi.data(),
                                                              v.luts, lengths, collect(&late));
      ASSERT_EQ(a.count, c.count) << "trial " << trial << " window " << w;
      ASSERT_EQ(a.end, c.end) << "trial " << trial << " window " << w;
      ASSERT_EQ(a.ok, c.ok) << "trial " << trial << " window " << w;
      ASSERT_GE(late.size(), walked.size());
      ASSERT_LE(late.size(), walked.size() + 3);
      late.resize(walked.size());
      ASSERT_EQ(walked, late) << "trial " << trial << " window " << w;
      failing_windows += !a.ok;
    }
  }
  EXPECT_GT(checked, 50);
  EXPECT_GT(failing_windows, 0) << "no corruption reached a bad code";
}

}  // namespace
}  // namespace df11
