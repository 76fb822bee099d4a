// SPDX-License-Identifier: Apache-2.0
// ModelConfig: real published configs (Llama 3.1 8B, Qwen2.5 0.5B, Qwen3 8B, Mistral 7B v0.3)
// parse to the right dims, defaults, math (no unused keys, SiLU, windows) and tensor lists; bad
// configs give a Status naming the field.
#include "runtime/formats/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "runtime/core/file_util.h"
#include "runtime/formats/model_tensors.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;
using Shape = std::vector<int64_t>;

// meta-llama/Llama-3.1-8B-Instruct config.json.
json Llama31_8B() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

// Qwen/Qwen2.5-0.5B-Instruct config.json.
json Qwen25_05B() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
    "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false,
    "vocab_size": 151936})");
}

// Qwen/Qwen3-0.6B config.json: head_dim 128 while hidden / heads = 1024 / 16 = 64.
json Qwen3_06B() {
  return json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
    "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
}

// mistralai/Mistral-7B-Instruct-v0.3 config.json as written by recent transformers.
json Mistral7B() {
  return json::parse(R"({
    "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "head_dim": null, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
    "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.42.0.dev0", "use_cache": true, "vocab_size": 32768})");
}

std::map<std::string, Shape> AsMap(const std::vector<std::pair<std::string, Shape>>& v) {
  return std::map<std::string, Shape>(v.begin(), v.end());
}

TEST(ModelConfigTest, Llama31_8B) {
  StatusOr<ModelConfig> c = ParseModelConfig(Llama31_8B(), "llama/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->architecture_name, "LlamaForCausalLM");
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_EQ(c->num_hidden_layers, 32);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_EQ(c->raw["transformers_version"], "4.43.0.dev0");

  EXPECT_EQ(WeightShape(*c, "model.layers.3.self_attn.q_proj").value(), (Shape{4096, 4096}));
  EXPECT_EQ(WeightShape(*c, "model.layers.3.self_attn.k_proj").value(), (Shape{1024, 4096}));
  EXPECT_EQ(WeightShape(*c, "model.layers.31.self_attn.v_proj").value(), (Shape{1024, 4096}));
  EXPECT_EQ(WeightShape(*c, "model.layers.0.self_attn.o_proj").value(), (Shape{4096, 4096}));
  EXPECT_EQ(WeightShape(*c, "model.layers.0.mlp.gate_proj").value(), (Shape{14336, 4096}));
  EXPECT_EQ(WeightShape(*c, "model.layers.0.mlp.up_proj").value(), (Shape{14336, 4096}));
  EXPECT_EQ(WeightShape(*c, "model.layers.0.mlp.down_proj").value(), (Shape{4096, 14336}));
  EXPECT_EQ(WeightShape(*c, "model.embed_tokens").value(), (Shape{128256, 4096}));
  EXPECT_EQ(WeightShape(*c, "lm_head").value(), (Shape{128256, 4096}));
  for (const char* bad : {"model.layers.32.self_attn.q_proj", "model.layers.03.mlp.up_proj",
                          "model.layers.-1.mlp.up_proj", "model.layers.1.input_layernorm",
                          "model.layers.1.self_attn.q_proj.weight", "model.norm", "lm_head.weight",
                          "model.layers..mlp.up_proj", ""}) {
    StatusOr<Shape> s = WeightShape(*c, bad);
    EXPECT_EQ(s.status().code(), StatusCode::kNotFound) << bad;
  }

  auto tensors = ExpectedTensors(*c);
  EXPECT_EQ(tensors.size(), 1 + 32 * 9 + 2);
  EXPECT_EQ(tensors.front().first, "model.embed_tokens.weight");
  EXPECT_EQ(tensors.back().first, "lm_head.weight");
  // The published checkpoint holds 8,030,261,248 parameters.
  int64_t params = 0;
  for (const auto& [name, shape] : tensors) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    params += n;
  }
  EXPECT_EQ(params, 8030261248);
  auto m = AsMap(tensors);
  EXPECT_EQ(m.at("model.layers.7.input_layernorm.weight"), (Shape{4096}));
  EXPECT_EQ(m.at("model.layers.7.post_attention_layernorm.weight"), (Shape{4096}));
  EXPECT_EQ(m.at("model.norm.weight"), (Shape{4096}));
  EXPECT_EQ(m.count("model.layers.7.self_attn.q_proj.bias"), 0u);
}

TEST(ModelConfigTest, Qwen25TiedWithBiases) {
  StatusOr<ModelConfig> c = ParseModelConfig(Qwen25_05B(), "qwen2.5/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kQwen2);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(OutputProjectionHasBias(*c));
  EXPECT_TRUE(c->rope_scaling.type.empty());
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->bos_token_id, 151643);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(151645));

  auto tensors = ExpectedTensors(*c);
  auto m = AsMap(tensors);
  EXPECT_EQ(m.count("lm_head.weight"), 0u);
  EXPECT_EQ(m.at("model.layers.0.self_attn.q_proj.bias"), (Shape{896}));
  EXPECT_EQ(m.at("model.layers.0.self_attn.k_proj.bias"), (Shape{128}));
  EXPECT_EQ(m.at("model.layers.23.self_attn.v_proj.bias"), (Shape{128}));
  EXPECT_EQ(m.count("model.layers.0.self_attn.o_proj.bias"), 0u);
  EXPECT_EQ(tensors.size(), 1 + 24 * 12 + 1);
  // Qwen2.5-0.5B: 494,032,768 parameters.
  int64_t params = 0;
  for (const auto& [name, shape] : tensors) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    params += n;
  }
  EXPECT_EQ(params, 494032768);
}

TEST(ModelConfigTest, Qwen3ExplicitHeadDimAndQkNorm) {
  StatusOr<ModelConfig> c = ParseModelConfig(Qwen3_06B(), "qwen3/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kQwen3);
  EXPECT_EQ(c->head_dim, 128);  // hidden / heads would be 64
  EXPECT_TRUE(c->qk_norm);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(WeightShape(*c, "model.layers.0.self_attn.q_proj").value(), (Shape{2048, 1024}));
  EXPECT_EQ(WeightShape(*c, "model.layers.0.self_attn.k_proj").value(), (Shape{1024, 1024}));
  EXPECT_EQ(WeightShape(*c, "model.layers.0.self_attn.o_proj").value(), (Shape{1024, 2048}));
  auto m = AsMap(ExpectedTensors(*c));
  EXPECT_EQ(m.at("model.layers.27.self_attn.q_norm.weight"), (Shape{128}));
  EXPECT_EQ(m.at("model.layers.27.self_attn.k_norm.weight"), (Shape{128}));
  EXPECT_EQ(m.count("model.layers.0.self_attn.q_proj.bias"), 0u);
  EXPECT_EQ(m.count("lm_head.weight"), 0u);
}

TEST(ModelConfigTest, MistralNullHeadDim) {
  StatusOr<ModelConfig> c = ParseModelConfig(Mistral7B(), "mistral/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kMistral);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->vocab_size, 32768);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
  EXPECT_EQ(AsMap(ExpectedTensors(*c)).count("lm_head.weight"), 1u);
}

TEST(ModelConfigTest, PublishedConfigsUseEveryKeyAndRunAsWritten) {
  // Every key of these published configs is one the architecture reads or that has no effect:
  // no warning, nothing refused; SiLU, no window (Qwen2.5's sliding_window is off without
  // use_sliding_window; Mistral 7B v0.3 says null).
  for (const json& j : {Llama31_8B(), Qwen25_05B(), Qwen3_06B(), Mistral7B()}) {
    StatusOr<ModelConfig> c = ParseModelConfig(j, "published/config.json");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_THAT(c->unused_keys, ::testing::IsEmpty()) << c->architecture_name;
    EXPECT_EQ(c->hidden_act, GateActivation::kSilu);
    EXPECT_EQ(c->layer_window, std::vector<int64_t>(c->num_hidden_layers, 0))
        << c->architecture_name;
  }
  // Mistral 7B v0.1 windows every layer at 4096.
  json v01 = Mistral7B();
  v01["sliding_window"] = 4096;
  StatusOr<ModelConfig> c = ParseModelConfig(v01, "mistral-7b-v0.1/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->layer_window, std::vector<int64_t>(32, 4096));
}

TEST(ModelConfigTest, TransformersDefaults) {
  json j = Llama31_8B();
  for (const char* key : {"num_key_value_heads", "rms_norm_eps", "rope_theta", "rope_scaling",
                          "tie_word_embeddings", "max_position_embeddings", "bos_token_id",
                          "eos_token_id", "attention_bias"}) {
    j.erase(key);
  }
  StatusOr<ModelConfig> c = ParseModelConfig(j, "defaults.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_key_value_heads, 32);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000);
  EXPECT_TRUE(c->rope_scaling.type.empty());
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));

  // null counts as unset; an explicit null bos stays unset.
  j["num_key_value_heads"] = nullptr;
  j["bos_token_id"] = nullptr;
  c = ParseModelConfig(j, "defaults.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_key_value_heads, 32);
  EXPECT_FALSE(c->bos_token_id.has_value());

  // No "architectures": the model_type decides.
  j.erase("architectures");
  c = ParseModelConfig(j, "defaults.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture_name, "LlamaForCausalLM");
}

TEST(ModelConfigTest, RopeScalingOlderKeyAndOtherTypes) {
  json j = Llama31_8B();
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  StatusOr<ModelConfig> c = ParseModelConfig(j, "x.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, "llama3");

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  c = ParseModelConfig(j, "x.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 2.0);

  j["rope_scaling"] = {{"rope_type", "default"}};
  c = ParseModelConfig(j, "x.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->rope_scaling.type.empty());

  j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
  c = ParseModelConfig(j, "x.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(c.status().message(), HasSubstr("longrope"));

  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}};
  c = ParseModelConfig(j, "x.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("rope_scaling.original_max_position_embeddings"));
}

TEST(ModelConfigTest, UnknownArchitectureIsUnimplemented) {
  json j = Llama31_8B();
  j["architectures"] = {"Gemma2ForCausalLM"};
  StatusOr<ModelConfig> c = ParseModelConfig(j, "gemma/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(c.status().message(), HasSubstr("Gemma2ForCausalLM"));
  EXPECT_THAT(c.status().message(), HasSubstr("LlamaForCausalLM"));
  EXPECT_THAT(c.status().message(), HasSubstr("Qwen3ForCausalLM"));
  EXPECT_THAT(c.status().message(), HasSubstr("Gemma3ForConditionalGeneration"));
  EXPECT_THAT(c.status().message(), HasSubstr("gemma/config.json"));
}

TEST(ModelConfigTest, MissingHiddenSize) {
  json j = Llama31_8B();
  j.erase("hidden_size");
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("m/config.json"));
  EXPECT_THAT(c.status().message(), HasSubstr("missing required field \"hidden_size\""));
  EXPECT_THAT(c.status().message(), HasSubstr("positive integer"));
}

TEST(ModelConfigTest, HeadsNotDivisibleByKvHeads) {
  json j = Llama31_8B();
  j["num_key_value_heads"] = 5;
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("num_attention_heads (32)"));
  EXPECT_THAT(c.status().message(), HasSubstr("num_key_value_heads (5)"));

  j = Mistral7B();
  j["hidden_size"] = 4100;  // not a multiple of 32 heads, and head_dim is null
  c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("head_dim"));
}

TEST(ModelConfigTest, IllTypedAndNonPositiveFields) {
  struct Case {
    const char* field;
    json value;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"hidden_size", "4096", "\"hidden_size\" is \"4096\" (string)"},
      {"hidden_size", 4096.0, "\"hidden_size\" is 4096.0 (number)"},
      {"num_hidden_layers", 0, "\"num_hidden_layers\" is 0"},
      {"vocab_size", -1, "\"vocab_size\""},
      {"intermediate_size", nullptr, "\"intermediate_size\" is null"},
      {"rms_norm_eps", 0.0, "\"rms_norm_eps\""},
      {"rope_theta", "big", "\"rope_theta\""},
      {"tie_word_embeddings", 1, "\"tie_word_embeddings\" is 1 (number); expected true or false"},
      {"head_dim", -128, "\"head_dim\""},
      {"eos_token_id", json::array({128001, "x"}), "\"eos_token_id\"[1]"},
      {"bos_token_id", 200000, "\"bos_token_id\""},
      {"architectures", "LlamaForCausalLM", "\"architectures\""},
      {"rope_scaling", 8, "\"rope_scaling\""},
  };
  for (const Case& tc : cases) {
    json j = Llama31_8B();
    j[tc.field] = tc.value;
    StatusOr<ModelConfig> c = ParseModelConfig(j, "bad/config.json");
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << tc.field;
    EXPECT_THAT(c.status().message(), HasSubstr(tc.expect)) << tc.field;
    EXPECT_THAT(c.status().message(), HasSubstr("bad/config.json")) << tc.field;
  }
  StatusOr<ModelConfig> c = ParseModelConfig(json::array(), "bad/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
}

TEST(ModelConfigTest, LoadModelConfigReadsDirectory) {
  const test_support::TempDir tmp("df11_model_config_test");
  const std::string& dir = tmp.path();
  StatusOr<ModelConfig> c = LoadModelConfig(dir);
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);

  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "config.json"), "{not json").ok());
  c = LoadModelConfig(dir);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("config.json"));

  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "config.json"), Qwen25_05B().dump()).ok());
  c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hidden_size, 896);
}

}  // namespace
}  // namespace df11
