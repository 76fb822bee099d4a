// SPDX-License-Identifier: Apache-2.0
// Tied embeddings and the reference Python package (tests/data/tied_interop, made by
// scripts/reference/make_tied_interop.sh): `df11 compress` of a tied model writes exactly the
// files and tensors that the reference loader (dfloat11 0.5.0 DFloat11Model.from_pretrained)
// loaded correctly, lm_head unit included (without it the reference's LM head keeps its
// initial values); our forward pass over those files, and over the reference encoder's own
// directory, gives transformers' float32 logits (which the reference loader reproduces) with a
// BF16 KV cache within 1e-4; the stored copy costs no memory when served (the LM head is the
// embedding).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/convert/compress.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/cpu_backend.h"
#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;

constexpr float kAtol = 1e-4f;
const std::string kDir = std::string(DF11_TEST_DATA_DIR) + "/tied_interop";

class TiedInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    manifest_ = nlohmann::json::parse(std::ifstream(kDir + "/manifest.json"));
    std::string cmd = std::string(DF11_BINARY_DIR) + "/launcher/df11 -q make-tiny";
    for (const auto& flag : manifest_["make_tiny_flags"]) cmd += " " + flag.get<std::string>();
    const test_support::CommandResult made = test_support::RunCommand(cmd + " " + dir_ + "/bf16");
    ASSERT_EQ(made.status, 0) << cmd << "\n" << made.output;
    CompressOptions o;
    o.threads = 2;
    o.show_progress = false;
    auto s = CompressModel(dir_ + "/bf16", dir_ + "/df11", o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
  }

  // Every position's logits of each prompt against the reference loader's.
  void ExpectReferenceLogits(const std::string& model_dir) {
    SCOPED_TRACE(model_dir);
    auto weights = LoadModelWeights(model_dir);
    ASSERT_TRUE(weights.ok()) << weights.status().ToString();
    auto golden = SafetensorsFile::Open(kDir + "/logits.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status().ToString();
    CpuBackend t(&*weights, {});
    for (size_t p = 0; p < manifest_["prompts"].size(); ++p) {
      const std::string pre = "prompt" + std::to_string(p) + ".";
      const TensorInfo* ids_t = golden->Find(pre + "ids");
      // transformers' logits with keys and values rounded to BF16, as the CPU's KV cache keeps
      // them (the reference loader's float32 logits equal transformers' with FP32 ones).
      const TensorInfo* logits_t = golden->Find(pre + "logits_f32_bf16kv");
      ASSERT_TRUE(ids_t != nullptr && logits_t != nullptr);
      std::vector<int32_t> ids(ids_t->numel);
      std::memcpy(ids.data(), ids_t->bytes.data(), 4 * ids.size());
      std::vector<float> expected(logits_t->numel);
      std::memcpy(expected.data(), logits_t->bytes.data(), 4 * expected.size());
      KvCache cache = t.NewCache(static_cast<int64_t>(ids.size()));
      SequenceStep step{&cache, ids};
      std::vector<float> logits;
      ASSERT_TRUE(t.Forward(std::span<const SequenceStep>(&step, 1), true, &logits).ok());
      ASSERT_EQ(logits.size(), expected.size());
      float worst = 0;
      for (size_t i = 0; i < logits.size(); ++i) {
        worst = std::max(worst, std::fabs(logits[i] - expected[i]));
      }
      EXPECT_LE(worst, kAtol) << "prompt " << p;
    }
  }

  test_support::TempDir tmp_{"df11_tied_interop"};
  const std::string dir_ = tmp_.path();
  nlohmann::json manifest_;
};

TEST_F(TiedInteropTest, CompressWritesWhatTheReferenceLoaderLoadedCorrectly) {
  const auto& loaded = manifest_["reference_loader"]["ours"];
  ASSERT_TRUE(loaded["logits_equal_transformers_f32"].get<bool>());
  EXPECT_FALSE(
      manifest_["reference_loader"]["ours_without_lm_head"]["logits_equal_transformers_f32"]
          .get<bool>());
  // File by file, tensor by tensor (name, dtype, shape), what the golden was made from.
  nlohmann::json ours = nlohmann::json::object();
  for (const auto& entry : fs::directory_iterator(dir_ + "/df11")) {
    const std::string name = entry.path().filename();
    if (!name.ends_with(".safetensors")) continue;
    auto file = SafetensorsFile::Open(entry.path());
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    nlohmann::json tensors = nlohmann::json::object();
    for (const TensorInfo& t : file->tensors()) {
      tensors[t.name] = {{"dtype", std::string(DTypeName(t.dtype))}, {"shape", t.shape}};
    }
    ours[name] = tensors;
  }
  EXPECT_EQ(ours, manifest_["ours_df11_files"]);
  EXPECT_TRUE(ours.contains("lm_head.safetensors"));
}

TEST_F(TiedInteropTest, OurLogitsMatchTheReferenceLoadersOnBothDirectories) {
  ExpectReferenceLogits(dir_ + "/df11");
  ExpectReferenceLogits(kDir + "/reference_df11");
}

TEST_F(TiedInteropTest, StoredLmHeadCopyIsNotKeptInMemory) {
  // Served from the embedding, as without the copy: the same units and bytes.
  auto with_copy = LoadModelWeights(dir_ + "/df11");
  ASSERT_TRUE(with_copy.ok()) << with_copy.status().ToString();
  EXPECT_EQ(with_copy->lm_head.unit, with_copy->embed.unit);
  fs::remove(dir_ + "/df11/lm_head.safetensors");
  auto without = LoadModelWeights(dir_ + "/df11");
  ASSERT_TRUE(without.ok()) << without.status().ToString();
  EXPECT_EQ(with_copy->units.size(), without->units.size());
  EXPECT_EQ(with_copy->WeightBytes(), without->WeightBytes());
}

}  // namespace
}  // namespace df11
