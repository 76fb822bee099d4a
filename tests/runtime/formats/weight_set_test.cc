// SPDX-License-Identifier: Apache-2.0
// The weight set against the config, for BF16 and DF11 directories (make-tiny + compress): the
// class "weights that do not match config.json" (fewer or more layers than stored, a Llama config
// over Qwen3 weights, a wrong size, an extra bias, an F32 tensor, a missing LM head) is refused
// with InvalidArgument naming the directory, the tensor, where it is and what the config implies;
// tied LM heads may be stored or not; old rotary buffers are ignored as transformers ignores them;
// DF11 units without recorded shapes are checked by element count; a rank's part of a sharded
// model expects local shapes. The loaders refuse before reading any weight.
#include "runtime/formats/weight_set.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "runtime/convert/compress.h"
#include "runtime/formats/tiny_model.h"
#include "runtime/model/model_weights.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class WeightSetTest : public ::testing::Test {
 protected:
  // make-tiny `arch` with 4 layers as dir_/name (and its DF11 copy as dir_/name.df11).
  std::string Make(const std::string& arch, const std::string& name, bool tied = false) {
    TinyModelOptions o;
    o.arch = arch;
    o.layers = 4;
    o.head_dim = arch == "qwen3" ? 16 : 0;
    o.tie_embeddings = tied;
    o.seed = 5;
    const std::string path = dir_ + "/" + name;
    Status s = MakeTinyModel(o, path);
    EXPECT_TRUE(s.ok()) << s.ToString();
    CompressOptions c;
    c.show_progress = false;
    auto summary = CompressModel(path, path + ".df11", c);
    EXPECT_TRUE(summary.ok()) << summary.status().ToString();
    return path;
  }
  // Rewrites config.json of `model` with `edit` applied.
  template <typename F>
  void EditConfig(const std::string& model, F edit) {
    json j = json::parse(std::ifstream(model + "/config.json"));
    edit(j);
    std::ofstream(model + "/config.json") << j.dump(2);
  }
  // The status of checking `model` against its config.
  Status Check(const std::string& model) {
    auto c = LoadModelConfig(model);
    if (!c.ok()) return c.status();
    auto ckpt = Checkpoint::Open(model);
    if (!ckpt.ok()) return ckpt.status();
    std::vector<Df11Pattern> patterns;
    json j = json::parse(std::ifstream(model + "/config.json"));
    if (j.contains("dfloat11_config")) {
      auto df11 = ParseDf11Config(nlohmann::ordered_json::parse(j["dfloat11_config"].dump()), "x");
      if (!df11.ok()) return df11.status();
      patterns = df11->patterns;
    }
    return CheckModelWeights(*c, *ckpt, patterns, model);
  }
  test_support::TempDir tmp_{"df11_weight_set_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(WeightSetTest, MatchingModelsPass) {
  for (const char* arch : {"llama", "qwen2", "qwen3", "mistral"}) {
    const std::string m = Make(arch, arch);
    EXPECT_TRUE(Check(m).ok()) << Check(m).ToString();
    EXPECT_TRUE(Check(m + ".df11").ok()) << Check(m + ".df11").ToString();
  }
}

TEST_F(WeightSetTest, FewerLayersInTheConfigThanStored) {
  const std::string m = Make("llama", "m");
  for (const std::string& dir : {m, m + ".df11"}) {
    EditConfig(dir, [](json& j) { j["num_hidden_layers"] = 3; });
    Status s = Check(dir);
    ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr(dir + ": the weights do not match config.json"));
    EXPECT_THAT(s.message(), HasSubstr("3 layers"));
    EXPECT_THAT(s.message(), HasSubstr("unexpected tensor model.layers.3."));
    // The loader refuses the same, before reading a weight.
    auto w = LoadModelWeights(dir);
    EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(w.status().message(), HasSubstr("unexpected tensor model.layers.3."));
  }
  EXPECT_THAT(Check(m + ".df11").message(),
              HasSubstr("in DF11 unit model.layers.3 (model_layers_3.safetensors)"));
}

TEST_F(WeightSetTest, MoreLayersInTheConfigThanStored) {
  const std::string m = Make("mistral", "m");
  for (const std::string& dir : {m, m + ".df11"}) {
    EditConfig(dir, [](json& j) { j["num_hidden_layers"] = 5; });
    Status s = Check(dir);
    ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("tensor model.layers.4."));
    EXPECT_THAT(s.message(), HasSubstr("is missing"));
  }
}

TEST_F(WeightSetTest, LlamaConfigOverQwen3Weights) {
  const std::string m = Make("qwen3", "m");
  for (const std::string& dir : {m, m + ".df11"}) {
    EditConfig(dir, [](json& j) {
      j["architectures"] = {"LlamaForCausalLM"};
      j["model_type"] = "llama";
    });
    Status s = Check(dir);
    ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("LlamaForCausalLM"));
    EXPECT_THAT(s.message(), HasSubstr("unexpected tensor model.layers.0.self_attn.k_norm.weight"));
  }
}

TEST_F(WeightSetTest, WrongSizeNamesBothShapes) {
  const std::string m = Make("qwen2", "m");
  EditConfig(m, [](json& j) { j["intermediate_size"] = 96; });
  Status s = Check(m);
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("model.layers.0.mlp.gate_proj.weight in model.safetensors is "
                                     "BF16 [128, 64]; expected BF16 [96, 64]"));
  EditConfig(m + ".df11", [](json& j) { j["intermediate_size"] = 96; });
  EXPECT_THAT(Check(m + ".df11").message(), HasSubstr("expected BF16 [96, 64]"));
}

TEST_F(WeightSetTest, TiedHeadMayBeStoredAndUntiedMustBe) {
  const std::string tied = Make("llama", "tied", /*tied=*/true);
  EXPECT_TRUE(Check(tied).ok());
  // Untie the config: lm_head.weight is now required.
  EditConfig(tied, [](json& j) { j["tie_word_embeddings"] = false; });
  Status s = Check(tied);
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("tensor lm_head.weight [512, 64] is missing"));
  // An untied model relabelled tied stores lm_head: accepted (the reference encoder does so).
  const std::string untied = Make("llama", "untied");
  EditConfig(untied, [](json& j) { j["tie_word_embeddings"] = true; });
  EXPECT_TRUE(Check(untied).ok()) << Check(untied).ToString();
}

TEST_F(WeightSetTest, StoredWeightsAgainstTheConfig) {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"vocab_size", 8},
            {"hidden_size", 4},
            {"intermediate_size", 6},
            {"num_hidden_layers", 1},
            {"num_attention_heads", 2}};
  auto c = ParseModelConfig(j, "x");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::vector<StoredWeight> stored;
  for (auto& [name, shape] : ExpectedTensors(*c)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    stored.push_back({name, DType::kBF16, shape, n, "f.safetensors"});
  }
  EXPECT_TRUE(CheckWeightSet(*c, ModelPart(), stored, "m").ok());
  // A DF11 unit of the reference records no shapes: element counts are compared.
  stored[1].shape.clear();
  EXPECT_TRUE(CheckWeightSet(*c, ModelPart(), stored, "m").ok());
  stored[1].numel += 1;
  EXPECT_THAT(CheckWeightSet(*c, ModelPart(), stored, "m").message(),
              HasSubstr("is BF16 17 elements; expected BF16 [4, 4]"));
  stored[1].numel -= 1;
  // Old rotary buffers are ignored (as transformers does); other extras are not.
  stored.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {1}, 1, "f"});
  EXPECT_TRUE(CheckWeightSet(*c, ModelPart(), stored, "m").ok());
  stored.push_back({"model.layers.0.mlp.gate_proj.bias", DType::kBF16, {6}, 6, "f"});
  EXPECT_THAT(CheckWeightSet(*c, ModelPart(), stored, "m").message(),
              HasSubstr("unexpected tensor model.layers.0.mlp.gate_proj.bias in f"));
  stored.pop_back();
  stored.back().dtype = DType::kBF16;
  stored[0].dtype = DType::kF32;
  EXPECT_THAT(CheckWeightSet(*c, ModelPart(), stored, "m").message(),
              HasSubstr("model.embed_tokens.weight in f.safetensors is F32 [8, 4]"));
  stored[0].dtype = DType::kBF16;
  stored.push_back(stored[2]);
  EXPECT_THAT(CheckWeightSet(*c, ModelPart(), stored, "m").message(), HasSubstr("stored twice"));

  // A rank of a sharded layout: the last stage holds half the heads and MLP rows of layer 0.
  ModelPart part;
  part.heads = 1;
  part.kv_heads = 1;
  part.intermediate = 3;
  part.vocab_rows = 4;
  part.embedding = false;
  std::vector<StoredWeight> rank;
  for (auto& [name, shape] : ExpectedTensors(*c, part)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    rank.push_back({name, DType::kBF16, shape, n, "rank-00001.safetensors"});
  }
  EXPECT_TRUE(CheckWeightSet(*c, part, rank, "r1").ok());
  EXPECT_EQ(rank[0].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(rank[0].shape, (std::vector<int64_t>{2, 4}));
  EXPECT_FALSE(CheckWeightSet(*c, ModelPart(), rank, "r1").ok());
}

}  // namespace
}  // namespace df11
