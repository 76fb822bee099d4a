// SPDX-License-Identifier: Apache-2.0
// CheckDf11ModelDir on DF11 directories that `df11 compress` wrote and then lost a tensor or a
// file: every missing field of a unit, a missing unit file, a missing plain tensor and a unit of
// the wrong size are refused up front with InvalidArgument naming the file and the tensor or
// unit; complete directories (ours, with and without a tied lm_head unit) pass.
#include "runtime/formats/df11_model_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "runtime/convert/compress.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_unit.h"
#include "runtime/formats/safetensors_writer.h"
#include "runtime/formats/tiny_model.h"
#include "runtime/formats/weight_set.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class Df11ModelCheckTest : public ::testing::Test {
 protected:
  // A compressed tiny Llama (2 layers) in dir_/df11; returns its path.
  std::string Compressed(bool tied = false) {
    TinyModelOptions o;
    o.layers = 2;
    o.hidden = 32;
    o.heads = 2;
    o.kv_heads = 2;
    o.intermediate = 64;
    o.vocab = 128;
    o.seed = 5;
    o.tie_embeddings = tied;
    EXPECT_TRUE(MakeTinyModel(o, dir_ + "/bf16").ok());
    CompressOptions c;
    c.threads = 2;
    c.show_progress = false;
    auto s = CompressModel(dir_ + "/bf16", dir_ + "/df11", c);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return dir_ + "/df11";
  }

  // Checks `dir` the way every command does.
  Status Check(const std::string& dir) {
    auto ckpt = Checkpoint::Open(dir);
    if (!ckpt.ok()) return ckpt.status();
    auto config = LoadModelConfig(dir);
    auto patterns = DefaultPatterns("LlamaForCausalLM");
    if (!config.ok() || !patterns.ok()) return Status::Internal("test set-up");
    Status structure = CheckDf11ModelDir(*ckpt, *patterns);
    if (!structure.ok()) return structure;
    return CheckModelWeights(*config, *ckpt, *patterns, dir);
  }

  // Rewrites `file` without tensor `drop`.
  static void Drop(const std::string& file, const std::string& drop) {
    std::vector<std::pair<std::string, std::vector<uint8_t>>> keep;
    SafetensorsWriter writer;
    {
      auto f = SafetensorsFile::Open(file);
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      ASSERT_NE(f->Find(drop), nullptr) << drop;
      for (const TensorInfo& t : f->tensors()) {
        if (t.name == drop) continue;
        ASSERT_TRUE(writer.AddOwnedTensor(t.name, t.dtype, t.shape,
                                          std::vector<uint8_t>(t.bytes.begin(), t.bytes.end()))
                        .ok());
      }
      for (const auto& [k, v] : f->metadata()) writer.SetMetadata(k, v);
    }
    ASSERT_TRUE(writer.Write(file).ok());
  }

  test_support::TempDir tmp_{"df11_model_check_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(Df11ModelCheckTest, CompleteDirectoriesPass) {
  EXPECT_TRUE(Check(Compressed()).ok()) << Check(dir_ + "/df11").ToString();
}

TEST_F(Df11ModelCheckTest, TiedModelWithItsLmHeadUnitPasses) {
  const std::string df11 = Compressed(/*tied=*/true);
  ASSERT_TRUE(fs::exists(df11 + "/lm_head.safetensors"));
  EXPECT_TRUE(Check(df11).ok()) << Check(df11).ToString();
  fs::remove(df11 + "/lm_head.safetensors");  // the form without it is complete too
  EXPECT_TRUE(Check(df11).ok()) << Check(df11).ToString();
}

TEST_F(Df11ModelCheckTest, EveryMissingFieldIsNamedWithItsFile) {
  const std::string df11 = Compressed();
  for (const char* field : kDf11UnitFields) {
    SCOPED_TRACE(field);
    fs::copy(df11, dir_ + "/copy");
    const std::string file = dir_ + "/copy/model_layers_1.safetensors";
    Drop(file, std::string("model.layers.1.") + field);
    Status s = Check(dir_ + "/copy");
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr(file));
    EXPECT_THAT(s.message(), HasSubstr(std::string("no tensor model.layers.1.") + field));
    fs::remove_all(dir_ + "/copy");
  }
}

TEST_F(Df11ModelCheckTest, MissingUnitFileNamesTheUnitAndItsFile) {
  const std::string df11 = Compressed();
  fs::remove(df11 + "/model_layers_1.safetensors");
  Status s = Check(df11);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("is missing (DF11 unit model.layers.1, kept in "
                                     "model_layers_1.safetensors)"));
}

TEST_F(Df11ModelCheckTest, MissingUntiedLmHeadAndPlainTensorAreNamed) {
  const std::string df11 = Compressed();
  fs::copy(df11, dir_ + "/copy");
  fs::remove(dir_ + "/copy/lm_head.safetensors");
  Status s = Check(dir_ + "/copy");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tensor lm_head.weight [128, 32] is missing (DF11 unit "
                                     "lm_head, kept in lm_head.safetensors)"));
  Drop(df11 + "/model.safetensors", "model.norm.weight");
  s = Check(df11);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tensor model.norm.weight [32] is missing"));
}

TEST_F(Df11ModelCheckTest, UnitOfAnotherSizeThanTheConfigIsRefused) {
  const std::string df11 = Compressed();
  // A config that says intermediate 48 for units holding 64-row MLP matrices.
  auto config = LoadModelConfig(df11);
  ASSERT_TRUE(config.ok());
  config->intermediate_size = 48;
  auto ckpt = Checkpoint::Open(df11);
  ASSERT_TRUE(ckpt.ok());
  const auto patterns = DefaultPatterns("LlamaForCausalLM");
  ASSERT_TRUE(patterns.ok());
  // Complete as a DF11 directory; its weights are not the config's.
  EXPECT_TRUE(CheckDf11ModelDir(*ckpt, *patterns).ok());
  Status s = CheckModelWeights(*config, *ckpt, *patterns, df11);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.layers.0.mlp.gate_proj.weight in DF11 unit "
                                     "model.layers.0 (model_layers_0.safetensors)"));
  EXPECT_THAT(s.message(), HasSubstr("expected BF16 [48, 32]"));
}

}  // namespace
}  // namespace df11
