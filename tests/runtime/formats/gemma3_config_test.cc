// SPDX-License-Identifier: Apache-2.0
// Gemma 3 configs as published and as transformers 5.24 writes them: Gemma3ForConditionalGeneration
// (its text_config, Gemma3TextConfig's defaults for what the published files omit, the
// sliding_window_pattern layout, local and global rope, query_pre_attn_scalar, the BF16-rounded
// embedding scale, the top level's token ids and tying) and Gemma3ForCausalLM (layer_types and
// per-layer-type rope_parameters); what transformers ignores is ignored with a warning, and bad
// fields are named with their text_config path.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/formats/model_config.h"

namespace df11 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

// google/gemma-3-27b-it's config.json (configs/models/gemma-3-27b-it holds the same).
json Gemma3_27B() {
  return json::parse(R"({
    "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
    "eoi_token_index": 256000, "eos_token_id": [1, 106], "image_token_index": 262144,
    "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
    "text_config": {"head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
                    "model_type": "gemma3_text", "num_attention_heads": 32,
                    "num_hidden_layers": 62, "num_key_value_heads": 16,
                    "query_pre_attn_scalar": 168,
                    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                    "sliding_window": 1024},
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
    "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                      "model_type": "siglip_vision_model", "num_attention_heads": 16,
                      "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}})");
}

// A Gemma3ForCausalLM config as transformers 5.24 saves it (layer_types, rope_parameters).
json Gemma3Text() {
  return json::parse(R"({
    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 512,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 24, "sliding_window": 8,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
    "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0,
                                           "rope_theta": 1000000.0},
                        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
    "final_logit_softcapping": 30.0, "attn_logit_softcapping": null,
    "use_bidirectional_attention": false, "tie_word_embeddings": true, "pad_token_id": 0,
    "bos_token_id": 2, "eos_token_id": 1, "rms_norm_eps": 1e-06, "use_cache": true,
    "_sliding_window_pattern": 6, "dtype": "bfloat16", "transformers_version": "5.24.0"})");
}

TEST(Gemma3Config, Published27bServesItsLanguageModel) {
  StatusOr<ModelConfig> c = ParseModelConfig(Gemma3_27B(), "gemma-3-27b-it/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kGemma3Multimodal);
  EXPECT_THAT(c->unused_keys, ::testing::IsEmpty());
  EXPECT_TRUE(c->unsupported.empty()) << c->unsupported;
  // Gemma3TextConfig's defaults for what text_config omits.
  EXPECT_EQ(c->vocab_size, 262208);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->num_key_value_heads, 16);
  EXPECT_EQ(c->hidden_act, GateActivation::kGeluTanh);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 2);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(1, 106));
  // Every 6th layer global, the others a 1024-token window with the local rope.
  ASSERT_EQ(c->layer_window.size(), 62u);
  for (int64_t l = 0; l < 62; ++l) {
    EXPECT_EQ(LayerWindow(*c, l), (l + 1) % 6 == 0 ? 0 : 1024) << "layer " << l;
    EXPECT_EQ(LayerUsesLocalRope(*c, l), (l + 1) % 6 != 0) << "layer " << l;
  }
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->rope_scaling.type, "linear");
  EXPECT_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_EQ(c->local_rope_theta, 1e4);
  EXPECT_TRUE(c->local_rope_scaling.type.empty());
  EXPECT_DOUBLE_EQ(c->attention_scale, 1.0 / std::sqrt(168.0));
  EXPECT_EQ(c->norm_weight_offset, 1.0f);
  // sqrt(5376) = 73.32 in BF16 (8 bits of mantissa): 73.5.
  EXPECT_EQ(c->embedding_multiplier, 73.5f);
  EXPECT_EQ(c->final_logit_softcapping, 0);
  EXPECT_EQ(c->vision_config["num_hidden_layers"], 27);
}

TEST(Gemma3Config, CausalLmAsTransformersWritesIt) {
  StatusOr<ModelConfig> c = ParseModelConfig(Gemma3Text(), "gemma3_text/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kGemma3);
  EXPECT_THAT(c->unused_keys, ::testing::IsEmpty());
  EXPECT_THAT(c->layer_window, ElementsAre(8, 0, 8));
  EXPECT_EQ(c->rope_scaling.type, "linear");
  EXPECT_EQ(c->local_rope_theta, 1e4);
  EXPECT_DOUBLE_EQ(c->attention_scale, 1.0 / std::sqrt(24.0));
  EXPECT_EQ(c->embedding_multiplier, 8.0f);
  EXPECT_EQ(c->final_logit_softcapping, 30.0);
}

TEST(Gemma3Config, WhatTransformersIgnoresIsIgnored) {
  // Gemma3Attention never applies attn_logit_softcapping (a key without effect, as the goldens'
  // 0.5 shows); the multimodal forward never applies final_logit_softcapping (an unused key).
  json j = Gemma3Text();
  j["attn_logit_softcapping"] = 50.0;
  StatusOr<ModelConfig> c = ParseModelConfig(j, "gemma3_text/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(c->unused_keys, ::testing::IsEmpty());
  json mm = Gemma3_27B();
  mm["text_config"]["final_logit_softcapping"] = 30.0;
  c = ParseModelConfig(mm, "gemma-3-27b-it/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->final_logit_softcapping, 0);
  EXPECT_THAT(c->unused_keys, ElementsAre("text_config.final_logit_softcapping"));
}

TEST(Gemma3Config, BadFieldsAreNamedWithTheirPath) {
  json j = Gemma3_27B();
  j.erase("text_config");
  StatusOr<ModelConfig> c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("m/config.json"));
  EXPECT_THAT(c.status().message(), HasSubstr("text_config"));

  j = Gemma3_27B();
  j["text_config"]["sliding_window"] = "wide";
  c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("text_config.sliding_window"));

  j = Gemma3Text();
  j["rope_parameters"]["chunked_attention"] = json::object();
  c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(c.status().message(), HasSubstr("rope_parameters.chunked_attention"));

  j = Gemma3Text();
  j["use_bidirectional_attention"] = true;
  c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(c.status().message(), HasSubstr("use_bidirectional_attention"));

  j = Gemma3_27B();
  j["text_config"]["num_attention_heads"] = 31;  // 5376 is not a multiple
  c = ParseModelConfig(j, "m/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("text_config."));
}

}  // namespace
}  // namespace df11
