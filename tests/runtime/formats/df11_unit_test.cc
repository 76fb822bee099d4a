// SPDX-License-Identifier: Apache-2.0
// DF11 units in safetensors: the reference encoder's units (tests/data/ref_units, made by
// scripts/reference/make_reference_units.sh) decode bit-exactly with both CPU decoders, and our
// own units written by AddDf11UnitTensors load back and decode; malformed unit tensors give a
// Status naming the unit.
#include "runtime/formats/df11_unit.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "kernels/common/bf16.h"
#include "runtime/core/file_util.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

const std::string kRefDir = std::string(DF11_TEST_DATA_DIR) + "/ref_units";

std::vector<uint16_t> Originals(const Checkpoint& ckpt, const std::string& unit, size_t n) {
  std::vector<uint16_t> all;
  for (size_t i = 0; i < n; ++i) {
    const TensorInfo* t = ckpt.Find(unit + ".original." + std::to_string(i));
    EXPECT_NE(t, nullptr) << unit << " original " << i;
    if (t == nullptr) return all;
    EXPECT_EQ(t->dtype, DType::kBF16);
    size_t at = all.size();
    all.resize(at + t->numel);
    std::memcpy(all.data() + at, t->bytes.data(), t->bytes.size());
  }
  return all;
}

TEST(Df11UnitReference, EveryReferenceUnitDecodesBitExactly) {
  auto manifest_text = ReadFileToString(kRefDir + "/manifest.json");
  ASSERT_TRUE(manifest_text.ok()) << manifest_text.status().ToString();
  auto manifest = nlohmann::json::parse(*manifest_text);
  auto ckpt = Checkpoint::Open(kRefDir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  int checked = 0;
  for (const auto& entry : manifest["units"]) {
    const std::string name = entry["name"];
    SCOPED_TRACE(name);
    auto unit = LoadDf11Unit(*ckpt, name);
    ASSERT_TRUE(unit.ok()) << unit.status().ToString();
    EXPECT_EQ(unit->split_positions.size() + 1, entry["shapes"].size());
    std::vector<uint16_t> expected = Originals(*ckpt, name, entry["shapes"].size());
    ASSERT_EQ(static_cast<int64_t>(expected.size()), unit->n_elements());
    std::vector<uint16_t> out(expected.size(), 0xDEAD);
    ASSERT_TRUE(DecodeDf11Unit(*unit, 0, unit->n_elements(), 2, out.data()).ok());
    EXPECT_EQ(out, expected);
    for (bool late_cut : {false, true}) {
      std::vector<uint16_t> windows(expected.size(), 0xDEAD);
      EXPECT_EQ(Df11DecodeWindowsRef(unit->view, 0, unit->n_elements(), windows.data(), late_cut),
                "");
      EXPECT_EQ(windows, expected) << (late_cut ? "late cut" : "cut per lookup");
    }
    // Sub-ranges of each matrix.
    for (size_t m = 0; m <= unit->split_positions.size(); ++m) {
      auto [b, e] = unit->MatrixRange(m);
      std::vector<uint16_t> part(e - b, 0xDEAD);
      ASSERT_TRUE(DecodeDf11Unit(*unit, b, e, 1, part.data()).ok());
      EXPECT_TRUE(std::equal(part.begin(), part.end(), expected.begin() + b));
    }
    ++checked;
  }
  EXPECT_GE(checked, 7);
}

class Df11UnitFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(std::random_device{}());
    std::normal_distribution<float> dist(0.0f, 0.02f);
    a_.resize(5000);
    b_.resize(7001);
    for (auto& w : a_) w = FloatToBf16(dist(rng));
    for (auto& w : b_) w = FloatToBf16(dist(rng));
    std::span<const uint16_t> parts[] = {a_, b_};
    std::string err;
    ASSERT_TRUE(Df11EncodeRef(parts, 1, &encoded_, &err)) << err;
  }

  // Writes the unit, letting `edit` change the tensors first.
  void Write(const std::function<void(Df11EncodedUnit&)>& edit = nullptr) {
    Df11EncodedUnit copy = encoded_;
    if (edit) edit(copy);
    SafetensorsWriter writer;
    ASSERT_TRUE(AddDf11UnitTensors("model.layers.0", copy, &writer).ok());
    ASSERT_TRUE(writer.Write(dir_ + "/model_layers_0.safetensors").ok());
  }

  test_support::TempDir tmp_{"df11_unit_test"};
  const std::string dir_ = tmp_.path();
  std::vector<uint16_t> a_, b_;
  Df11EncodedUnit encoded_;
};

TEST_F(Df11UnitFile, WrittenUnitLoadsAndDecodes) {
  Write();
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ(FindDf11Units(*ckpt), std::vector<std::string>{"model.layers.0"});
  auto unit = LoadDf11Unit(*ckpt, "model.layers.0");
  ASSERT_TRUE(unit.ok()) << unit.status().ToString();
  ASSERT_EQ(unit->split_positions, std::vector<int64_t>{5000});
  std::vector<uint16_t> out(12001);
  ASSERT_TRUE(DecodeDf11Unit(*unit, 0, 12001, 2, out.data()).ok());
  EXPECT_TRUE(std::equal(a_.begin(), a_.end(), out.begin()));
  EXPECT_TRUE(std::equal(b_.begin(), b_.end(), out.begin() + 5000));
}

TEST_F(Df11UnitFile, MalformedUnitsNameTheUnitAndField) {
  struct Case {
    const char* what;
    std::function<void(Df11EncodedUnit&)> edit;
    const char* expect;
  };
  const Case cases[] = {
      {"pointer out of range", [](Df11EncodedUnit& u) { u.luts[3] = 240; }, "points to row"},
      {"33-bit code", [](Df11EncodedUnit& u) { u.luts[(u.n_luts - 1) * 256 + 9] = 33; }, "33 bits"},
      {"positions not ending at n", [](Df11EncodedUnit& u) { u.output_positions.back() = 1; },
       "output_positions"},
      {"odd positions bytes", [](Df11EncodedUnit& u) { u.output_positions.push_back(0); },
       "multiple of 4"},
      {"short gaps", [](Df11EncodedUnit& u) { u.gaps.resize(10); }, "gaps"},
      {"bad split", [](Df11EncodedUnit& u) { u.split_positions = {99999}; }, "split_positions"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Write(c.edit);
    auto ckpt = Checkpoint::Open(dir_);
    ASSERT_TRUE(ckpt.ok());
    auto unit = LoadDf11Unit(*ckpt, "model.layers.0");
    ASSERT_FALSE(unit.ok());
    EXPECT_NE(unit.status().message().find("model.layers.0"), std::string::npos);
    EXPECT_NE(unit.status().message().find(c.expect), std::string::npos)
        << unit.status().message();
  }
}

TEST_F(Df11UnitFile, MissingFieldAndWrongDtype) {
  SafetensorsWriter writer;
  std::vector<uint8_t> bytes(64, 0);
  ASSERT_TRUE(writer.AddTensor("u.encoded_exponent", DType::kU8, {64}, bytes).ok());
  ASSERT_TRUE(writer.AddTensor("u.luts", DType::kI8, {64}, bytes).ok());
  ASSERT_TRUE(writer.Write(dir_ + "/u.safetensors").ok());
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok());
  auto unit = LoadDf11Unit(*ckpt, "u");
  ASSERT_FALSE(unit.ok());
  EXPECT_NE(unit.status().message().find("u.luts is I8"), std::string::npos)
      << unit.status().message();
}

}  // namespace
}  // namespace df11
