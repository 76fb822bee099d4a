// SPDX-License-Identifier: Apache-2.0
// The tiny models written by Hugging Face transformers in tests/data/hf_models (see
// scripts/reference/make_hf_model_goldens.py and tests/data/README.md) and their reference
// logits: float32 math on the BF16 weights, every position of three prompts, and the greedy
// continuation. Shared by the CPU and the CUDA backend tests. DF11_TEST_DATA_DIR in the
// environment overrides the compiled-in data folder (the GPU check runs a build made elsewhere).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/core/file_util.h"
#include "runtime/formats/safetensors.h"

namespace df11::model_testing {

// The models, each with the config keys it exercises.
inline const std::vector<std::string> kHfModels = {
    "llama_gelu_tanh",            // hidden_act gelu_pytorch_tanh
    "mistral_sliding_window",     // sliding_window 8 on every layer, prompt of 30
    "qwen2_sliding_layers_gelu",  // use_sliding_window: layers 1-2 windowed, layer 0 not; gelu
    "qwen3_yarn",                 // rope yarn, factor 4 (cos and sin scaled by 1.139)
    // Gemma 3: embedding scale, (1 + w) norms, four norms per layer, q/k norms, GeGLU,
    // query_pre_attn_scalar 24, local rope (theta 1e4) on the window-8 layers and linear rope
    // (factor 8) on the global ones, final softcap 1.5 (CausalLM only), prompt of 3.75x the
    // window; attn_logit_softcapping 0.5 in the config, which transformers does not apply.
    "gemma3_text",        // Gemma3ForCausalLM, layers 0-2 local, layer 3 global
    "gemma3_multimodal",  // Gemma3ForConditionalGeneration: tied head, vision tower, 1 and 3 global
};

inline std::string HfModelsDir() {
  const char* env = std::getenv("DF11_TEST_DATA_DIR");
  return std::string(env != nullptr ? env : DF11_TEST_DATA_DIR) + "/hf_models";
}

struct HfPrompt {
  std::vector<int32_t> ids;
  std::vector<float> logits;    // (ids.size(), vocab)
  std::vector<int32_t> greedy;  // the reference's greedy continuation
  std::vector<double> margins;  // its top-1 - top-2 logit gap at each greedy step
};

struct HfModel {
  std::string dir;  // the BF16 model directory (config.json, model.safetensors)
  std::vector<HfPrompt> prompts;
};

// bf16_kv: the reference whose attention read keys and values rounded to BF16 (a BF16 KV cache,
// as the CPU backend keeps); otherwise FP32 ones.
inline HfModel LoadHfModel(const std::string& name, bool bf16_kv = false) {
  HfModel m;
  m.dir = HfModelsDir() + "/models/" + name;
  auto text = ReadFileToString(HfModelsDir() + "/manifest.json");
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  if (!text.ok()) return m;
  const nlohmann::json entry = nlohmann::json::parse(*text)["models"][name];
  auto file = SafetensorsFile::Open(HfModelsDir() + "/" + name + ".safetensors");
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (!file.ok()) return m;
  auto read = [&](const std::string& tensor, auto* out) {
    const TensorInfo* t = file->Find(tensor);
    EXPECT_NE(t, nullptr) << tensor;
    if (t == nullptr) return;
    out->resize(t->numel);
    std::memcpy(out->data(), t->bytes.data(), t->bytes.size());
  };
  for (size_t p = 0; p < entry["prompts"].size(); ++p) {
    const std::string pre = "prompt" + std::to_string(p) + ".";
    HfPrompt prompt;
    read(pre + "ids", &prompt.ids);
    const std::string kind = bf16_kv ? "f32_bf16kv" : "f32";
    read(pre + "logits_" + kind, &prompt.logits);
    read(pre + "greedy_" + kind, &prompt.greedy);
    prompt.margins =
        entry["prompts"][p]["greedy_" + kind + "_top2_margins"].get<std::vector<double>>();
    m.prompts.push_back(std::move(prompt));
  }
  return m;
}

}  // namespace df11::model_testing
