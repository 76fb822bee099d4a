// SPDX-License-Identifier: Apache-2.0
// The CPU backend against Hugging Face transformers on the tiny models transformers itself wrote
// (tests/data/hf_models): GELU-tanh (Llama), a sliding window on every layer (Mistral, prompt of
// 3.75x the window, decoding to 7.75x), a window on some layers only with the exact GELU (Qwen2),
// YaRN (Qwen3), and Gemma 3's text model alone (Gemma3ForCausalLM) and inside
// Gemma3ForConditionalGeneration (local and global layers, tied head, vision tower beside). For
// each, BF16 and its DF11 compression: every position's logits within 5e-4 of transformers'
// float32 logits on the same BF16 weights with keys and values rounded to BF16, as the CPU's KV
// cache keeps them (|logits| < 2; without the feature they move by 0.05 to 1.9, with FP32 keys and
// values by 2e-3 to 9e-3; a key within ~1e-7 of a BF16 rounding boundary may round the other way
// here than there, one BF16 step, which moved a logit by 1.04e-4), DF11 logits bit-identical to
// BF16, and greedy decoding (prefill, then one token per step through the KV cache, fed
// transformers' tokens) gives transformers' 32 tokens wherever its top-2 margin exceeds twice the
// tolerance. The BF16 model's caches are tables the engine's block manager plans (blocks of 4,
// sliding-window layers in their own group, holding at most their window's blocks once decoding);
// the DF11 model's are one table for every layer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "kernels/sampling/sampling.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/cpu_backend.h"
#include "tests/common/temp_files.h"
#include "tests/runtime/model/kv_plan_util.h"
#include "tests/runtime/model/hf_model_goldens.h"
#include "tests/runtime/model/model_test_util.h"

namespace df11 {
namespace {

constexpr float kAtol = 5e-4f;

class HfModels : public ::testing::TestWithParam<std::string> {};

TEST_P(HfModels, CpuMatchesTransformers) {
  const model_testing::HfModel ref = model_testing::LoadHfModel(GetParam(), /*bf16_kv=*/true);
  ASSERT_EQ(ref.prompts.size(), 3u);
  const test_support::TempDir dir("df11_hf_models_test");
  const std::string& tmp = dir.path();
  CompressOptions co;
  co.show_progress = false;
  auto compressed = CompressModel(ref.dir, tmp + "/df11", co);
  ASSERT_TRUE(compressed.ok()) << compressed.status().ToString();
  auto bf16 = LoadModelWeights(ref.dir);
  ASSERT_TRUE(bf16.ok()) << bf16.status().ToString();
  auto df11 = LoadModelWeights(tmp + "/df11");
  ASSERT_TRUE(df11.ok()) << df11.status().ToString();
  const int64_t V = bf16->config.vocab_size;
  CpuBackendOptions paged;
  paged.forward.kv_block_tokens = 4;
  CpuBackend b(&*bf16, paged), d(&*df11, {});
  KvBlocks blocks(model_testing::PlannedKvOptions(bf16->config, 4, 1024, /*prefix_caching=*/false));
  for (size_t p = 0; p < ref.prompts.size(); ++p) {
    SCOPED_TRACE(GetParam() + " prompt " + std::to_string(p));
    const model_testing::HfPrompt& prompt = ref.prompts[p];
    const int64_t capacity = static_cast<int64_t>(prompt.ids.size() + prompt.greedy.size());
    const int64_t id = static_cast<int64_t>(p);
    KvCache bc, dc = d.NewCache(capacity);
    model_testing::OpenPlanned(&blocks, id, prompt.ids, &bc);
    ASSERT_TRUE(model_testing::PlacePlanned(&blocks, id, prompt.ids, &bc));
    SequenceStep bs{&bc, prompt.ids}, ds{&dc, prompt.ids};
    std::vector<float> logits, df11_logits;
    ASSERT_TRUE(b.Forward(std::span<const SequenceStep>(&bs, 1), true, &logits).ok());
    ASSERT_TRUE(d.Forward(std::span<const SequenceStep>(&ds, 1), true, &df11_logits).ok());
    blocks.Commit(id);
    ASSERT_EQ(logits.size(), prompt.logits.size());
    float worst = 0;
    size_t worst_at = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const float diff = std::fabs(logits[i] - prompt.logits[i]);
      if (diff > worst) {
        worst = diff;
        worst_at = i;
      }
    }
    std::printf("%s prompt %zu: max |logit - transformers| %.3g\n", GetParam().c_str(), p, worst);
    EXPECT_LE(worst, kAtol) << "position " << worst_at / V << " token " << worst_at % V
                            << ": transformers " << prompt.logits[worst_at] << ", ours "
                            << logits[worst_at];
    ASSERT_EQ(std::memcmp(logits.data(), df11_logits.data(), 4 * logits.size()), 0)
        << "DF11 logits differ from BF16";

    // Greedy: where the reference's top-2 margin is above twice the tolerance, the token must be
    // transformers'; a near-tie step is not compared. Every step feeds transformers' token.
    int32_t next = ArgmaxRef(logits.data() + logits.size() - V, V);
    int64_t compared = 0;
    for (size_t s = 0; s < prompt.greedy.size(); ++s) {
      if (prompt.margins[s] > 2 * kAtol) {
        ASSERT_EQ(next, prompt.greedy[s]) << "step " << s;
        ++compared;
      }
      std::vector<int32_t> one = {prompt.greedy[s]};
      ASSERT_TRUE(model_testing::PlacePlanned(&blocks, id, one, &bc));
      SequenceStep bstep{&bc, one}, dstep{&dc, one};
      ASSERT_TRUE(b.Forward(std::span<const SequenceStep>(&bstep, 1), false, &logits).ok());
      blocks.Commit(id);
      ASSERT_TRUE(d.Forward(std::span<const SequenceStep>(&dstep, 1), false, &df11_logits).ok());
      ASSERT_EQ(std::memcmp(logits.data(), df11_logits.data(), 4 * logits.size()), 0)
          << "DF11 logits differ from BF16 at step " << s;
      next = ArgmaxRef(logits.data(), V);
    }
    EXPECT_GE(compared, 28) << "too many near-ties to compare the tokens";
    if (blocks.groups() == 2) {  // the sliding-window layers hold their window only
      EXPECT_LE(model_testing::HeldSlidingBlocks(bc), blocks.BlocksFor(blocks.window()) + 1);
      EXPECT_LT(model_testing::HeldSlidingBlocks(bc), static_cast<int64_t>(bc.blocks.size()));
    }
    blocks.Free(id);
  }
  EXPECT_EQ(blocks.used_blocks(kFullGroup), 0);
  if (blocks.groups() == 2) {
    EXPECT_EQ(blocks.used_blocks(kSlidingGroup), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, HfModels, ::testing::ValuesIn(model_testing::kHfModels));

}  // namespace
}  // namespace df11
