// SPDX-License-Identifier: Apache-2.0
// The per-architecture key table: keys that change the math unless neutral (mlp_bias,
// quantization_config, is_causal, attention_chunk_size, kv_sharing_modes, a Llama sliding_window)
// are refused naming the file, key, value and what is supported; keys with no effect
// (pretraining_tp, dropout, metadata) are accepted silently; keys the architecture does not use
// are accepted and listed in unused_keys, per architecture (attention_bias is Qwen3's and
// Llama's, not Qwen2's; use_sliding_window is not Llama's).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "runtime/formats/model_config.h"

namespace df11 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using json = nlohmann::json;

json Tiny(const std::string& arch) {
  return {{"architectures", {arch}},  {"vocab_size", 512},      {"hidden_size", 64},
          {"intermediate_size", 128}, {"num_hidden_layers", 2}, {"num_attention_heads", 4}};
}

TEST(ConfigKeys, ChangingTheMathUnlessNeutralIsRefused) {
  struct Case {
    const char* arch;
    const char* key;
    json value;
    const char* why;
    json neutral;  // accepted
  };
  const Case cases[] = {
      {"LlamaForCausalLM", "mlp_bias", true, "biases on the MLP projections", false},
      {"MistralForCausalLM",
       "quantization_config",
       {{"quant_method", "gptq"}, {"bits", 4}},
       "quantized weights",
       nullptr},
      {"Qwen2ForCausalLM", "is_causal", false, "bidirectional attention", true},
      {"Qwen3ForCausalLM", "attention_chunk_size", 8192, "chunked attention", nullptr},
      {"LlamaForCausalLM", "kv_sharing_modes", json::array({"reuse", "own"}), "KV cache sharing",
       nullptr},
      {"LlamaForCausalLM", "sliding_window", 32, "LlamaForCausalLM attends to every position",
       nullptr},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(std::string(tc.arch) + " " + tc.key);
    json j = Tiny(tc.arch);
    j[tc.key] = tc.value;
    StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
    ASSERT_EQ(c.status().code(), StatusCode::kUnimplemented) << c.status().ToString();
    EXPECT_THAT(c.status().message(), HasSubstr("m/config.json: field \"" + std::string(tc.key)));
    EXPECT_THAT(c.status().message(), HasSubstr(tc.value.dump().substr(0, 10)));
    EXPECT_THAT(c.status().message(), HasSubstr(tc.why));
    EXPECT_THAT(c.status().message(), HasSubstr("supported: "));
    // The neutral value is accepted, and so is the key's absence.
    j[tc.key] = tc.neutral;
    c = ParseModelConfig(j, "m/config.json");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_THAT(c->unused_keys, IsEmpty());
    j.erase(tc.key);
    EXPECT_TRUE(ParseModelConfig(j, "m/config.json").ok());
  }
}

TEST(ConfigKeys, NoMathKeysAreAcceptedSilently) {
  json j = Tiny("LlamaForCausalLM");
  j["pretraining_tp"] = 4;  // transformers 5 does not use it
  j["attention_dropout"] = 0.1;
  j["initializer_range"] = 0.02;
  j["torch_dtype"] = "bfloat16";
  j["transformers_version"] = "5.24.0";
  j["use_cache"] = false;
  j["pad_token_id"] = 0;
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->unused_keys, IsEmpty());
}

TEST(ConfigKeys, KeysAnArchitectureDoesNotUseAreListed) {
  json j = Tiny("LlamaForCausalLM");
  j["use_sliding_window"] = true;  // a Qwen key: LlamaConfig ignores it
  j["my_metadata"] = "x";
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->unused_keys, ElementsAre("my_metadata", "use_sliding_window"));

  j = Tiny("Qwen2ForCausalLM");
  j["attention_bias"] = false;  // Qwen2 hard-codes its q/k/v biases
  c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->unused_keys, ElementsAre("attention_bias"));
  EXPECT_TRUE(c->attention_bias);

  j = Tiny("Qwen3ForCausalLM");
  j["attention_bias"] = true;
  c = ParseModelConfig(j, "m/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->unused_keys, IsEmpty());
  EXPECT_TRUE(c->attention_bias);
}

}  // namespace
}  // namespace df11
