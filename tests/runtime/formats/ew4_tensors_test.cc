// SPDX-License-Identifier: Apache-2.0
// ew4 weights in safetensors files (ew4_tensors.h): the reference encoder's DF11 units
// (tests/data/ref_units) transcode to ew4 and back bit-exactly; weights written by
// AddEw4Tensors load back; a file whose ew4 tensors are missing, mistyped, misshapen or
// inconsistent is refused with a message naming the weight and the tensor or field.
#include "runtime/formats/ew4_tensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "kernels/dfloat11/df11_layout.h"
#include "kernels/ew4/ew4_decode.h"
#include "runtime/core/file_util.h"
#include "runtime/formats/df11_unit.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

const std::string kRefDir = std::string(DF11_TEST_DATA_DIR) + "/ref_units";

TEST(Ew4Tensors, ReferenceUnitsTranscodeToEw4AndBackBitExactly) {
  auto manifest_text = ReadFileToString(kRefDir + "/manifest.json");
  ASSERT_TRUE(manifest_text.ok()) << manifest_text.status().ToString();
  const auto manifest = nlohmann::json::parse(*manifest_text);
  auto ckpt = Checkpoint::Open(kRefDir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  int matrices = 0;
  for (const auto& entry : manifest["units"]) {
    const std::string name = entry["name"];
    auto unit = LoadDf11Unit(*ckpt, name);
    ASSERT_TRUE(unit.ok()) << unit.status().ToString();
    for (size_t i = 0; i < entry["shapes"].size(); ++i) {
      SCOPED_TRACE(name + " matrix " + std::to_string(i));
      const int64_t rows = entry["shapes"][i][0], cols = entry["shapes"][i][1];
      const TensorInfo* original = ckpt->Find(name + ".original." + std::to_string(i));
      ASSERT_NE(original, nullptr);
      std::vector<uint16_t> want(static_cast<size_t>(rows * cols));
      std::memcpy(want.data(), original->bytes.data(), original->bytes.size());
      auto [begin, end] = unit->MatrixRange(i);
      std::vector<uint16_t> decoded(static_cast<size_t>(end - begin));
      ASSERT_TRUE(DecodeDf11Unit(*unit, begin, end, 2, decoded.data()).ok());
      Ew4Encoded e;
      ASSERT_EQ(Ew4EncodeRef(decoded.data(), rows, cols, 2, &e), "");
      ASSERT_EQ(Ew4ValidateView(e.View()), "");
      std::vector<uint16_t> back(want.size(), 0xDEAD);
      Ew4DecodeRowsRef(e.View(), 0, rows, 2, back.data());
      EXPECT_TRUE(back == want);
      ++matrices;
    }
  }
  EXPECT_GE(matrices, 9);
}

class Ew4TensorsFile : public ::testing::Test {
 protected:
  void SetUp() override {
    // 5 x 100 weights at exponent 120 with three escapes (Inf, a subnormal, 2^20).
    words_.assign(5 * 100, 0x3C00);
    for (size_t i = 0; i < words_.size(); ++i) words_[i] = Df11Combine(118 + i % 5, i & 0xFF);
    words_[7] = 0x7F80;
    words_[250] = 0x0001;
    words_[499] = 0x4980;
    ASSERT_EQ(Ew4EncodeRef(words_.data(), 5, 100, 1, &enc_), "");
    ASSERT_EQ(enc_.n_escapes(), 3);
  }

  // Writes kWeight's tensors, each passed through `edit` (which may drop one by clearing its
  // name), to a file; returns LoadEw4Weight's result.
  StatusOr<Ew4View> WriteAndLoad(
      const std::function<void(std::string* name, DType* dtype, std::vector<int64_t>* shape,
                               std::vector<uint8_t>* bytes)>& edit) {
    SafetensorsWriter staging;
    EXPECT_TRUE(AddEw4Tensors(kWeight, enc_, &staging).ok());
    const std::string staged = tmp_.path() + "/staged.safetensors";
    EXPECT_TRUE(staging.Write(staged).ok());
    auto staged_file = SafetensorsFile::Open(staged);
    EXPECT_TRUE(staged_file.ok());
    SafetensorsWriter w;
    for (const TensorInfo& t : staged_file->tensors()) {
      std::string name = t.name;
      DType dtype = t.dtype;
      std::vector<int64_t> shape = t.shape;
      std::vector<uint8_t> bytes(t.bytes.begin(), t.bytes.end());
      edit(&name, &dtype, &shape, &bytes);
      if (!name.empty()) {
        EXPECT_TRUE(w.AddOwnedTensor(name, dtype, shape, bytes).ok());
      }
    }
    const std::string file = "w" + std::to_string(++files_) + ".safetensors";
    EXPECT_TRUE(w.Write(tmp_.path() + "/" + file).ok());
    auto ckpt = Checkpoint::OpenFile(tmp_.path(), file);
    EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    checkpoints_.push_back(std::move(ckpt).value());
    return LoadEw4Weight(checkpoints_.back(), kWeight, &realigned_);
  }

  static constexpr const char* kWeight = "model.layers.0.mlp.up_proj.weight";
  std::vector<uint16_t> words_;
  Ew4Encoded enc_;
  test_support::TempDir tmp_{"df11_ew4_tensors_test"};
  int files_ = 0;
  std::vector<Checkpoint> checkpoints_;
  std::vector<std::vector<uint32_t>> realigned_;
};

TEST_F(Ew4TensorsFile, WrittenWeightsLoadBack) {
  auto v = WriteAndLoad([](auto*, auto*, auto*, auto*) {});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->rows, 5);
  EXPECT_EQ(v->cols, 100);
  std::vector<uint16_t> back(words_.size(), 0xDEAD);
  Ew4DecodeRowsRef(*v, 0, 5, 1, back.data());
  EXPECT_TRUE(back == words_);
}

TEST_F(Ew4TensorsFile, HostileTensorsAreRefused) {
  using Edit = std::function<void(std::string*, DType*, std::vector<int64_t>*,
                                  std::vector<uint8_t>*)>;
  auto on = [](const std::string& field, Edit e) -> Edit {
    return [field, e](std::string* n, DType* d, std::vector<int64_t>* s, std::vector<uint8_t>* b) {
      if (n->ends_with("." + field)) e(n, d, s, b);
    };
  };
  const std::string w = std::string("ew4 weight ") + kWeight + ": ";
  struct Case {
    std::string expect;
    Edit edit;
  };
  const std::vector<Case> cases = {
      {w + "tensor " + kWeight + ".ew4_escape_values is missing",
       on("ew4_escape_values", [](auto* n, auto*, auto*, auto*) { n->clear(); })},
      {w + kWeight + ".ew4_escape_offsets is U16 [12]; expected U32 [6]",
       on("ew4_escape_offsets", [](auto*, DType* d, auto* s, auto*) {
         *d = DType::kU16;
         *s = {12};
       })},
      {w + kWeight + ".ew4_codes is U8 [5, 32]; expected U8 [5, 64]",
       on("ew4_codes", [](auto*, auto*, auto* s, auto* b) {
         *s = {5, 32};
         b->resize(5 * 32);
       })},
      {w + "escape_offsets must start at 0 and end at the escape count 3",
       on("ew4_escape_offsets", [](auto*, auto*, auto*, auto* b) { (*b)[5 * 4] = 2; })},
      {w + "escape_columns of row 0 must increase within [0, 100); entry 0 is 300",
       on("ew4_escape_columns", [](auto*, auto*, auto*, auto* b) {
         (*b)[0] = 300 & 0xFF;
         (*b)[1] = 300 >> 8;
       })},
      {w + "window 242 is outside [0, 241]",
       on("ew4_window", [](auto*, auto*, auto*, auto* b) { (*b)[0] = 242; })},
      {w + "row 1 has 1 weights coded 0 (escape) but 0 escape entries",
       on("ew4_codes", [](auto*, auto*, auto*, auto* b) { (*b)[64 + 3] &= 0xF0; })},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expect);
    auto v = WriteAndLoad(c.edit);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), StatusCode::kCorruption);
    EXPECT_NE(v.status().message().find(c.expect), std::string::npos) << v.status().ToString();
  }
}

}  // namespace
}  // namespace df11
