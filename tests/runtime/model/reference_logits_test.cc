// SPDX-License-Identifier: Apache-2.0
// Our CPU forward pass against Hugging Face transformers (float32 math on the same BF16 weights):
// the reference logits in tests/data/ref_logits (scripts/reference/make_reference_logits.sh) for
// tiny random Llama (GQA, llama3 rope scaling; tied embeddings), Qwen2 (q/k/v biases), Qwen3
// (head_dim != hidden/heads, q/k norms) and Mistral models that `df11 make-tiny` regenerates.
// The reference is the one whose attention read keys and values rounded to BF16, as the CPU's KV
// cache keeps them (logits_f32_bf16kv). Logits must agree within an absolute 5e-4 (|logits| <
// 1.2 here; float32 rounding differences are ~1e-6, but a key within ~1e-7 of a BF16 rounding
// boundary may round the other way, one BF16 step; FP32 keys and values move the logits by
// ~9e-4), and greedy decoding (fed the reference's tokens) must give the same tokens at every
// step whose top-2 margin in the reference is above that tolerance (elsewhere either is right).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kernels/sampling/sampling.h"
#include "runtime/core/file_util.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/cpu_backend.h"
#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

constexpr float kAtol = 5e-4f;
const std::string kDir = std::string(DF11_TEST_DATA_DIR) + "/ref_logits";

class ReferenceLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceLogits, MatchesTransformers) {
  const std::string model = GetParam();
  auto manifest = nlohmann::json::parse(*ReadFileToString(kDir + "/manifest.json"));
  const auto& entry = manifest["models"][model];
  const test_support::TempDir tmp("df11_ref_logits");
  const std::string dir = tmp.path() + "/" + model;
  std::string cmd = std::string(DF11_BINARY_DIR) + "/launcher/df11 -q make-tiny";
  for (const auto& flag : entry["make_tiny_flags"]) cmd += " " + flag.get<std::string>();
  const test_support::CommandResult made = test_support::RunCommand(cmd + " " + dir);
  ASSERT_EQ(made.status, 0) << cmd << "\n" << made.output;

  auto weights = LoadModelWeights(dir);
  ASSERT_TRUE(weights.ok()) << weights.status().ToString();
  auto file = SafetensorsFile::Open(kDir + "/" + model + ".safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  CpuBackend t(&*weights, {});
  const int64_t V = weights->config.vocab_size;
  for (size_t p = 0; p < entry["prompts"].size(); ++p) {
    SCOPED_TRACE(model + " prompt " + std::to_string(p));
    const std::string pre = "prompt" + std::to_string(p) + ".";
    auto find = [&](const std::string& n) { return file->Find(pre + n); };
    ASSERT_NE(find("ids"), nullptr);
    std::vector<int32_t> ids(find("ids")->numel);
    std::memcpy(ids.data(), find("ids")->bytes.data(), 4 * ids.size());
    std::vector<float> expected(find("logits_f32_bf16kv")->numel);
    std::memcpy(expected.data(), find("logits_f32_bf16kv")->bytes.data(), 4 * expected.size());
    std::vector<int32_t> greedy(find("greedy_f32_bf16kv")->numel);
    std::memcpy(greedy.data(), find("greedy_f32_bf16kv")->bytes.data(), 4 * greedy.size());

    // Prefill logits at every position.
    KvCache cache = t.NewCache(static_cast<int64_t>(ids.size() + greedy.size()));
    SequenceStep step{&cache, ids};
    std::vector<float> logits;
    ASSERT_TRUE(t.Forward(std::span<const SequenceStep>(&step, 1), true, &logits).ok());
    ASSERT_EQ(logits.size(), expected.size());
    float worst = 0;
    int64_t worst_at = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      float d = std::fabs(logits[i] - expected[i]);
      if (d > worst) {
        worst = d;
        worst_at = static_cast<int64_t>(i);
      }
    }
    EXPECT_LE(worst, kAtol) << "position " << worst_at / V << " token " << worst_at % V
                            << ": expected " << expected[worst_at] << " got " << logits[worst_at];

    // Greedy continuation.
    const auto& margins = entry["prompts"][p]["greedy_f32_bf16kv_top2_margins"];
    // Every step feeds the reference's token; a near-tie step (either token right within
    // rounding) is not compared.
    size_t compared = 0;
    int32_t next = ArgmaxRef(logits.data() + logits.size() - V, V);
    for (size_t s = 0; s < greedy.size(); ++s) {
      if (margins[s].get<double>() >= kAtol) {
        ASSERT_EQ(next, greedy[s]) << "step " << s;
        ++compared;
      }
      std::vector<int32_t> one = {greedy[s]};
      SequenceStep d{&cache, one};
      ASSERT_TRUE(t.Forward(std::span<const SequenceStep>(&d, 1), false, &logits).ok());
      next = ArgmaxRef(logits.data(), V);
    }
    EXPECT_GE(compared, 28u) << "too few comparable steps";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ReferenceLogits,
                         ::testing::Values("llama_gqa", "llama_tied", "qwen2", "qwen3", "mistral"));

}  // namespace
}  // namespace df11
