// SPDX-License-Identifier: Apache-2.0
// df11 compress / decompress / verify / inspect end to end on small random models, and the errors
// each gives for bad input (missing or corrupt files, wrong directories, bad pattern dicts).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/convert/compress.h"
#include "runtime/convert/decompress.h"
#include "runtime/convert/inspect.h"
#include "runtime/convert/verify.h"
#include "runtime/core/file_util.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/safetensors_writer.h"
#include "runtime/formats/tiny_model.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;

class ConvertTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) { return dir_ + "/" + name; }

  std::string MakeModel(const std::string& name, TinyModelOptions o = {}) {
    o.seed = o.seed ? o.seed : 42;
    Status s = MakeTinyModel(o, Path(name));
    EXPECT_TRUE(s.ok()) << s.ToString();
    return Path(name);
  }

  CompressOptions Quiet() {
    CompressOptions o;
    o.threads = 2;
    o.show_progress = false;
    return o;
  }

  // Every tensor of `a` equals (name, dtype, shape, bytes) a tensor of `b`, and vice versa.
  void ExpectSameTensors(const std::string& a, const std::string& b) {
    auto ca = Checkpoint::Open(a);
    auto cb = Checkpoint::Open(b);
    ASSERT_TRUE(ca.ok() && cb.ok());
    ASSERT_EQ(ca->tensor_names().size(), cb->tensor_names().size());
    for (const std::string& name : ca->tensor_names()) {
      const TensorInfo* x = ca->Find(name);
      const TensorInfo* y = cb->Find(name);
      ASSERT_NE(y, nullptr) << name;
      EXPECT_EQ(x->dtype, y->dtype) << name;
      EXPECT_EQ(x->shape, y->shape) << name;
      ASSERT_EQ(x->bytes.size(), y->bytes.size()) << name;
      EXPECT_EQ(std::memcmp(x->bytes.data(), y->bytes.data(), x->bytes.size()), 0) << name;
    }
  }

  test_support::TempDir tmp_{"df11_convert_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(ConvertTest, RoundTripEveryArchitecture) {
  for (const char* arch : {"llama", "qwen2", "qwen3", "mistral"}) {
    SCOPED_TRACE(arch);
    TinyModelOptions o;
    o.arch = arch;
    o.hidden = 128;
    o.intermediate = 256;
    o.vocab = 1000;
    o.tie_embeddings = std::string(arch) == "qwen2";
    const std::string src = MakeModel(std::string(arch), o);
    const std::string df11_dir = Path(std::string(arch) + ".df11");
    auto summary = CompressModel(src, df11_dir, Quiet());
    ASSERT_TRUE(summary.ok()) << summary.status().ToString();
    // 2 layers, embedding, lm_head: a tied model's too (the copy the reference loader needs;
    // decompress leaves it out again).
    EXPECT_EQ(summary->units, 4);
    EXPECT_TRUE(FileExists(df11_dir + "/lm_head.safetensors"));
    EXPECT_LT(summary->unit_stored_bytes, 0.75 * 2 * summary->unit_elements);
    EXPECT_TRUE(FileExists(df11_dir + "/model_layers_1.safetensors"));
    EXPECT_TRUE(FileExists(df11_dir + "/model_embed_tokens.safetensors"));
    EXPECT_TRUE(FileExists(df11_dir + "/model.safetensors"));  // the remainder (model.norm)

    auto report = VerifyModel(df11_dir, src, 2, false);
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    EXPECT_TRUE(report->identical) << report->first_mismatch;

    const std::string back = Path(std::string(arch) + ".bf16");
    auto d = DecompressModel(df11_dir, back, 2, false);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ExpectSameTensors(src, back);
    EXPECT_TRUE(FileExists(back + "/model.safetensors.index.json"));
    auto config = ReadFileToString(back + "/config.json");
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->find("dfloat11_config"), std::string::npos);
  }
}

TEST_F(ConvertTest, InspectSplitsTheBits) {
  TinyModelOptions o;
  o.hidden = 256;
  o.intermediate = 512;
  o.vocab = 4000;
  const std::string src = MakeModel("m", o);
  ASSERT_TRUE(CompressModel(src, Path("m.df11"), Quiet()).ok());
  auto inspection = InspectModel(Path("m.df11"), 2);
  ASSERT_TRUE(inspection.ok()) << inspection.status().ToString();
  ASSERT_EQ(inspection->units.size(), 4u);
  auto j = InspectionToJson(*inspection);
  const auto& total = j["total"];
  const double bits = total["bits_per_weight"]["total"];
  const double sum = double(total["bits_per_weight"]["exponent_codes"]) +
                     double(total["bits_per_weight"]["sign_mantissa"]) +
                     double(total["bits_per_weight"]["gaps"]) +
                     double(total["bits_per_weight"]["output_positions"]) +
                     double(total["bits_per_weight"]["tables"]);
  EXPECT_NEAR(bits, sum, 1e-9);
  EXPECT_DOUBLE_EQ(double(total["bits_per_weight"]["sign_mantissa"]), 8.0);
  // N(0, 0.02) weights: entropy ~2.55 bits; stored within 0.3 bits of the floor.
  EXPECT_GT(double(total["exponent_entropy"]), 2.3);
  EXPECT_LT(bits, double(total["field_split_floor"]) + 0.3);
  EXPECT_NE(FormatInspection(*inspection).find("TOTAL (4 units)"), std::string::npos);
  // Beside DF11: the same weights as ew4, 12 bits plus escapes and row offsets (32 bits per row
  // of 256 or 512 here); N(0, 0.02) leaves ~1.5e-4 of the weights outside a 15-exponent window.
  const double ew4 = total["ew4"]["bits_per_weight"];
  EXPECT_GT(ew4, 12.0);
  EXPECT_LT(ew4, 12.15);
  EXPECT_GT(ew4, bits + 1.0);
  EXPECT_LT(double(total["ew4"]["escape_rate"]), 5e-4);
  EXPECT_NEAR(double(total["ew4"]["window_coverage"]) + double(total["ew4"]["escape_rate"]), 1.0,
              1e-12);
  EXPECT_NE(FormatInspection(*inspection).find("ew4 b/w"), std::string::npos);
  int64_t hist_sum = 0;
  for (const auto& [len, n] : j["units"][0]["code_length_histogram"].items()) hist_sum += n.get<int64_t>();
  EXPECT_EQ(hist_sum, j["units"][0]["elements"].get<int64_t>());
}

TEST_F(ConvertTest, VerifyNamesTheFirstMismatch) {
  const std::string src = MakeModel("m");
  ASSERT_TRUE(CompressModel(src, Path("m.df11"), Quiet()).ok());
  fs::copy(src, Path("changed"), fs::copy_options::recursive);
  // Rewrite the changed model's file with element 17 of up_proj flipped.
  {
    auto ckpt = Checkpoint::Open(src);
    SafetensorsWriter w;
    std::vector<uint8_t> changed;
    for (const std::string& name : ckpt->tensor_names()) {
      const TensorInfo* t = ckpt->Find(name);
      if (name == "model.layers.1.mlp.up_proj.weight") {
        changed.assign(t->bytes.begin(), t->bytes.end());
        changed[2 * 17] ^= 1;
        ASSERT_TRUE(w.AddTensor(name, t->dtype, t->shape, changed).ok());
      } else {
        ASSERT_TRUE(w.AddTensor(name, t->dtype, t->shape, t->bytes).ok());
      }
    }
    ASSERT_TRUE(w.Write(Path("changed/model.safetensors")).ok());
  }
  auto report = VerifyModel(Path("m.df11"), Path("changed"), 2, false);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_FALSE(report->identical);
  EXPECT_NE(report->first_mismatch.find("model.layers.1.mlp.up_proj.weight element 17"),
            std::string::npos)
      << report->first_mismatch;
}

TEST_F(ConvertTest, UncodableValuesKeepTheUnitInBf16) {
  const std::string src = MakeModel("m");
  // Put a NaN into layer 0's q_proj.
  {
    auto ckpt = Checkpoint::Open(src);
    SafetensorsWriter w;
    std::vector<uint8_t> changed;
    for (const std::string& name : ckpt->tensor_names()) {
      const TensorInfo* t = ckpt->Find(name);
      if (name == "model.layers.0.self_attn.q_proj.weight") {
        changed.assign(t->bytes.begin(), t->bytes.end());
        changed[10] = 0xC0;
        changed[11] = 0x7F;  // 0x7FC0: NaN
        ASSERT_TRUE(w.AddTensor(name, t->dtype, t->shape, changed).ok());
      } else {
        ASSERT_TRUE(w.AddTensor(name, t->dtype, t->shape, t->bytes).ok());
      }
    }
    ASSERT_TRUE(w.Write(src + "/model.safetensors").ok());
  }
  auto summary = CompressModel(src, Path("m.df11"), Quiet());
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  ASSERT_EQ(summary->kept_bf16.size(), 1u);
  EXPECT_NE(summary->kept_bf16[0].find("model.layers.0.self_attn.q_proj.weight element 5"),
            std::string::npos)
      << summary->kept_bf16[0];
  auto report = VerifyModel(Path("m.df11"), src, 2, false);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->identical) << report->first_mismatch;
}

TEST_F(ConvertTest, PatternDictWithUnescapedDotsAndOnlyLayers) {
  const std::string src = MakeModel("m");
  CompressOptions o = Quiet();
  o.pattern_dict_json = R"({"model.layers.\\d+": ["self_attn.q_proj", "mlp.down_proj"]})";
  auto summary = CompressModel(src, Path("m.df11"), o);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->units, 2);
  auto report = VerifyModel(Path("m.df11"), src, 1, false);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->identical) << report->first_mismatch;
}

TEST_F(ConvertTest, BadInputGivesClearErrors) {
  const std::string src = MakeModel("m");
  auto missing = CompressModel(Path("nope"), Path("out1"), Quiet());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope/config.json"), std::string::npos);

  fs::create_directories(Path("full"));
  std::ofstream(Path("full/keep.txt")) << "precious";
  auto full = CompressModel(src, Path("full"), Quiet());
  EXPECT_EQ(full.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(FileExists(Path("full/keep.txt")));

  ASSERT_TRUE(CompressModel(src, Path("m.df11"), Quiet()).ok());
  auto twice = CompressModel(Path("m.df11"), Path("out2"), Quiet());
  EXPECT_NE(twice.status().message().find("already"), std::string::npos);

  CompressOptions bad = Quiet();
  bad.pattern_dict_json = "{not json";
  EXPECT_EQ(CompressModel(src, Path("out3"), bad).status().code(), StatusCode::kInvalidArgument);
  bad.pattern_dict_json = R"({"model.layers.\\d+": ["self_attn.nope"]})";
  auto nope = CompressModel(src, Path("out4"), bad);
  EXPECT_NE(nope.status().message().find("self_attn.nope.weight"), std::string::npos)
      << nope.status().ToString();
  bad.pattern_dict_json = R"({"model.layers.(": []})";
  EXPECT_NE(CompressModel(src, Path("out5"), bad).status().message().find("not a valid regex"),
            std::string::npos);

  // An unknown architecture needs an explicit pattern dict.
  fs::copy(src, Path("gpt"), fs::copy_options::recursive);
  std::ofstream(Path("gpt/config.json")) << R"({"architectures": ["GPTNeoXForCausalLM"]})";
  auto gpt = CompressModel(Path("gpt"), Path("out6"), Quiet());
  EXPECT_EQ(gpt.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(gpt.status().message().find("GPTNeoXForCausalLM"), std::string::npos);

  // Decompress / verify / inspect of something that is not DF11.
  EXPECT_NE(DecompressModel(src, Path("out7"), 1, false).status().message().find("not a DF11"),
            std::string::npos);
  EXPECT_FALSE(InspectModel(src, 1).ok());

  // A truncated unit file.
  const std::string unit_file = Path("m.df11/model_layers_0.safetensors");
  fs::resize_file(unit_file, fs::file_size(unit_file) / 2);
  auto truncated = VerifyModel(Path("m.df11"), src, 1, false);
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.status().message().find("model_layers_0.safetensors"), std::string::npos)
      << truncated.status().ToString();
}

}  // namespace
}  // namespace df11
