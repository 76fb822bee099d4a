// SPDX-License-Identifier: Apache-2.0
// The config.json keys that change the forward pass, as transformers 5.24 reads them: hidden_act
// (silu/swish, gelu_pytorch_tanh, gelu; others refused by name), rope (rope_scaling wins over
// rope_parameters, the dict's rope_theta over the top-level one; yarn's defaults and optional
// keys; dynamic, longrope, per-layer-type and partial rotary refused at load), and each
// architecture's sliding-window rule (Mistral: sliding_window, 4096 when absent; Qwen2/Qwen3:
// use_sliding_window, max_window_layers, layer_types; Llama: none). Refusals are Unimplemented
// naming the file, key, value and what is supported; ConfigUse::kConvert accepts them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/formats/model_config.h"

namespace df11 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

json Tiny(const std::string& arch) {
  json j = {
      {"architectures", {arch}},  {"vocab_size", 512},      {"hidden_size", 64},
      {"intermediate_size", 128}, {"num_hidden_layers", 4}, {"num_attention_heads", 4},
      {"num_key_value_heads", 2}, {"head_dim", 16},         {"max_position_embeddings", 4096}};
  return j;
}

// The status of parsing `j`, expecting Unimplemented naming every string of `names`.
void ExpectRefused(const json& j, const std::vector<std::string>& names) {
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  ASSERT_EQ(c.status().code(), StatusCode::kUnimplemented) << j.dump();
  EXPECT_THAT(c.status().message(), HasSubstr("m/config.json"));
  for (const std::string& n : names) EXPECT_THAT(c.status().message(), HasSubstr(n));
  // Converting does not compute the math: the same config is accepted, the refusal recorded.
  StatusOr<ModelConfig> convert = ParseModelConfig(j, "m/config.json", ConfigUse::kConvert);
  ASSERT_TRUE(convert.ok()) << j.dump();
  EXPECT_EQ(convert->unsupported, c.status().message());
}

TEST(HiddenAct, SupportedActivations) {
  const std::pair<const char*, GateActivation> cases[] = {
      {"silu", GateActivation::kSilu},
      {"swish", GateActivation::kSilu},
      {"gelu_pytorch_tanh", GateActivation::kGeluTanh},
      {"gelu", GateActivation::kGelu}};
  for (const char* arch :
       {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM"}) {
    for (const auto& [name, act] : cases) {
      json j = Tiny(arch);
      j["hidden_act"] = name;
      StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      EXPECT_EQ(c->hidden_act, act) << arch << " " << name;
    }
    StatusOr<ModelConfig> c = ParseModelConfig(Tiny(arch), "m/config.json");
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->hidden_act, GateActivation::kSilu) << "transformers' default";
  }
}

TEST(HiddenAct, OthersRefusedByName) {
  for (const char* act : {"relu", "gelu_new", "quick_gelu", "gelu_fast"}) {
    json j = Tiny("LlamaForCausalLM");
    j["hidden_act"] = act;
    ExpectRefused(j,
                  {"\"hidden_act\"", std::string("\"") + act + "\"", "gelu_pytorch_tanh", "silu"});
  }
  json j = Tiny("LlamaForCausalLM");
  j["hidden_act"] = 3;
  EXPECT_EQ(ParseModelConfig(j, "m/config.json").status().code(), StatusCode::kInvalidArgument);
}

TEST(Rope, YarnWithTransformersDefaults) {
  json j = Tiny("Qwen3ForCausalLM");
  j["rope_theta"] = 1e6;
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, "yarn");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 4096);  // max_position_embeddings
  EXPECT_DOUBLE_EQ(c->rope_scaling.beta_fast, 32);
  EXPECT_DOUBLE_EQ(c->rope_scaling.beta_slow, 1);
  EXPECT_TRUE(c->rope_scaling.truncate);
  EXPECT_DOUBLE_EQ(c->rope_scaling.attention_factor, 0);  // derived from factor

  j["rope_scaling"] = {{"type", "yarn"},
                       {"factor", 8},
                       {"beta_fast", 16},
                       {"beta_slow", 0},
                       {"mscale", 0.707},
                       {"mscale_all_dim", 1},
                       {"truncate", false},
                       {"attention_factor", 1.1},
                       {"original_max_position_embeddings", 1024}};
  c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->rope_scaling.beta_fast, 16);
  EXPECT_DOUBLE_EQ(c->rope_scaling.beta_slow, 1);  // 0 means the default (transformers' `or`)
  EXPECT_DOUBLE_EQ(c->rope_scaling.mscale, 0.707);
  EXPECT_DOUBLE_EQ(c->rope_scaling.mscale_all_dim, 1);
  EXPECT_FALSE(c->rope_scaling.truncate);
  EXPECT_DOUBLE_EQ(c->rope_scaling.attention_factor, 1.1);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 1024);

  j["rope_scaling"]["truncate"] = "no";
  EXPECT_EQ(ParseModelConfig(j, "m/config.json").status().code(), StatusCode::kInvalidArgument);
  j["rope_scaling"] = {{"rope_type", "yarn"}};  // factor is required
  c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("\"rope_scaling.factor\""));
}

TEST(Rope, ParametersAndTheta) {
  // transformers 5's rope_parameters, its rope_theta winning over the top-level key.
  json j = Tiny("LlamaForCausalLM");
  j["rope_theta"] = 10000.0;
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 5e5}};
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c->rope_theta, 5e5);
  // rope_scaling, when set, wins over rope_parameters.
  j["rope_scaling"] = {{"rope_type", "default"}};
  c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->rope_scaling.type.empty());
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  // No rope_type: "default" (a factor there is unused and listed as such).
  j["rope_scaling"] = {{"factor", 2.0}};
  c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->rope_scaling.type.empty());
  EXPECT_THAT(c->unused_keys, ElementsAre("rope_scaling.factor"));
}

TEST(Rope, UnsupportedRefusedAtLoad) {
  for (const char* type : {"dynamic", "longrope", "proportional", "su"}) {
    json j = Tiny("LlamaForCausalLM");
    j["rope_scaling"] = {{"rope_type", type}, {"factor", 2.0}};
    ExpectRefused(j, {"\"rope_scaling.rope_type\"", std::string("\"") + type + "\"",
                      "default, linear, llama3, yarn"});
  }
  json j = Tiny("Qwen3ForCausalLM");
  j["partial_rotary_factor"] = 0.5;
  ExpectRefused(j, {"\"partial_rotary_factor\"", "0.5"});
  j["partial_rotary_factor"] = 1.0;
  EXPECT_TRUE(ParseModelConfig(j, "m/config.json").ok());
  j["rope_parameters"] = {{"rope_type", "default"}, {"partial_rotary_factor", 0.25}};
  ExpectRefused(j, {"\"rope_parameters.partial_rotary_factor\""});
  j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}},
                          {"sliding_attention", {{"rope_type", "default"}}}};
  ExpectRefused(j, {"rope_parameters.full_attention", "per layer type"});
}

TEST(SlidingWindow, Mistral) {
  json j = Tiny("MistralForCausalLM");
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->layer_window, ElementsAre(4096, 4096, 4096, 4096)) << "MistralConfig's default";
  j["sliding_window"] = 32;
  c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->layer_window, ElementsAre(32, 32, 32, 32));
  EXPECT_EQ(LayerWindow(*c, 3), 32);
  j["sliding_window"] = nullptr;
  c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->layer_window, ElementsAre(0, 0, 0, 0));
  j["sliding_window"] = 0;
  EXPECT_EQ(ParseModelConfig(j, "m/config.json").status().code(), StatusCode::kInvalidArgument);
  // MistralModel masks every layer alike: layer_types may only say the same.
  j["sliding_window"] = 32;
  j["layer_types"] = {"sliding_attention", "sliding_attention", "sliding_attention",
                      "sliding_attention"};
  EXPECT_TRUE(ParseModelConfig(j, "m/config.json").ok());
  j["layer_types"][0] = "full_attention";
  ExpectRefused(j, {"\"layer_types\"[0]", "full_attention", "sliding_attention"});
}

TEST(SlidingWindow, Qwen2AndQwen3) {
  for (const char* arch : {"Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    SCOPED_TRACE(arch);
    json j = Tiny(arch);
    j["sliding_window"] = 32;
    j["max_window_layers"] = 2;
    StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_THAT(c->layer_window, ElementsAre(0, 0, 0, 0)) << "use_sliding_window is false";
    j["use_sliding_window"] = true;
    c = ParseModelConfig(j, "m/config.json");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_THAT(c->layer_window, ElementsAre(0, 0, 32, 32)) << "layers >= max_window_layers";
    j.erase("max_window_layers");
    c = ParseModelConfig(j, "m/config.json");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_THAT(c->layer_window, ElementsAre(0, 0, 0, 0)) << "max_window_layers defaults to 28";
    j.erase("sliding_window");
    j["max_window_layers"] = 0;
    c = ParseModelConfig(j, "m/config.json");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_THAT(c->layer_window, ElementsAre(4096, 4096, 4096, 4096)) << "window defaults to 4096";
    // layer_types, when given, decides.
    j["sliding_window"] = 16;
    j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention",
                        "full_attention"};
    c = ParseModelConfig(j, "m/config.json");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_THAT(c->layer_window, ElementsAre(16, 0, 16, 0));
    j["layer_types"] = {"full_attention"};
    EXPECT_EQ(ParseModelConfig(j, "m/config.json").status().code(), StatusCode::kInvalidArgument);
    j["layer_types"] = {"sliding_attention", "chunked_attention", "full_attention",
                        "full_attention"};
    ExpectRefused(j, {"\"layer_types\"[1]", "chunked_attention"});
    // A sliding layer without a window: transformers raises; refused.
    j["use_sliding_window"] = false;
    j["layer_types"] = {"sliding_attention", "full_attention", "full_attention", "full_attention"};
    ExpectRefused(j, {"\"layer_types\"[0]", "no sliding window"});
    j["sliding_window"] = -4;
    j["use_sliding_window"] = true;
    j.erase("layer_types");
    EXPECT_EQ(ParseModelConfig(j, "m/config.json").status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(SlidingWindow, LlamaHasNone) {
  json j = Tiny("LlamaForCausalLM");
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->layer_window, ElementsAre(0, 0, 0, 0));
  j["sliding_window"] = nullptr;
  EXPECT_TRUE(ParseModelConfig(j, "m/config.json").ok());
  j["sliding_window"] = 4096;
  ExpectRefused(j, {"\"sliding_window\"", "4096", "LlamaForCausalLM", "absent or null"});
  j.erase("sliding_window");
  j["layer_types"] = {"full_attention", "full_attention", "sliding_attention", "full_attention"};
  ExpectRefused(j, {"\"layer_types\"[2]"});
}

}  // namespace
}  // namespace df11
