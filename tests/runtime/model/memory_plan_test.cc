// SPDX-License-Identifier: Apache-2.0
// The memory plan: Llama 3.1 405B fits one 8 x 80 GB node losslessly as DF11 (TP 8) and does not
// as BF16; the deployment YAMLs in configs/ load; bad configs name the file and key.
#include "runtime/model/memory_plan.h"

#include <gtest/gtest.h>

#include <fstream>

#include "runtime/model/deploy_config.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

const std::string kConfigs = std::string(DF11_TEST_DATA_DIR) + "/../../configs";

TEST(MemoryPlan, Llama405bFitsOneNodeOnlyAsDf11) {
  auto c = LoadModelConfig(kConfigs + "/models/llama-3.1-405b");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  MemoryPlanOptions o;
  o.tp = 8;
  o.gpu_memory_bytes = 80.0 * (1 << 30);
  o.memory_fraction = 0.92;
  o.context = 8192;
  auto df11 = PlanMemory(*c, o);
  ASSERT_TRUE(df11.ok());
  EXPECT_NEAR(df11->parameters / 1e9, 405.9, 0.5);
  // 810 GB of BF16 at 10.87 bits/weight over 8 GPUs: ~69 GB each.
  EXPECT_NEAR(df11->weight_bytes / 1e9, 68.9, 1.0);
  EXPECT_TRUE(df11->fits) << df11->Format(o);
  // ~7.9 GB left for the KV cache at 129 KB per token (126 layers, one kv head, FP32 K and V).
  EXPECT_GT(df11->kv_tokens, 49152);
  o.codec = WeightCodec::kBf16;
  auto bf16 = PlanMemory(*c, o);
  ASSERT_TRUE(bf16.ok());
  EXPECT_GT(bf16->weight_bytes / 1e9, 100);
  EXPECT_FALSE(bf16->fits);
  o.tp = 7;
  EXPECT_FALSE(PlanMemory(*c, o).ok());
}

// Gemma 3 27B (configs/models/gemma-3-27b-it: 62 layers, 52 of them with a 1024-token window):
// its sliding-window layers keep only their window, so a 32768-token sequence takes about a fifth
// of the full cache on one 80 GB GPU, and the plan says so; Llama has nothing to save.
TEST(MemoryPlan, CountsSlidingWindowLayersByTheirWindow) {
  auto c = LoadModelConfig(kConfigs + "/models/gemma-3-27b-it");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  MemoryPlanOptions o;
  o.context = 32768;
  auto p = PlanMemory(*c, o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->window_layers, 52);
  // Per position and layer: 16 kv heads x 128 x (K, V) x 4 bytes = 16384 bytes.
  EXPECT_DOUBLE_EQ(p->sequence_kv_bytes_full, 16384.0 * 62 * 32768);
  EXPECT_DOUBLE_EQ(p->sequence_kv_bytes, 16384.0 * (10 * 32768 + 52 * 1024));
  EXPECT_GT(p->max_sequences, p->max_sequences_full);
  EXPECT_EQ(p->max_sequences, static_cast<int64_t>(p->kv_bytes / p->sequence_kv_bytes));
  // One sequence: 10 full layers grow per token once every window is full.
  const double slots = p->kv_bytes / 16384.0;
  EXPECT_EQ(p->kv_tokens_windowed, static_cast<int64_t>((slots - 52 * 1024) / 10));
  EXPECT_GT(p->kv_tokens_windowed, 5 * p->kv_tokens);
  EXPECT_TRUE(p->fits);
  const std::string text = p->Format(o);
  EXPECT_NE(text.find("52 sliding-window layers keep only their window"), std::string::npos)
      << text;
  EXPECT_NE(text.find("(81% less)"), std::string::npos) << text;

  auto llama = LoadModelConfig(kConfigs + "/models/llama-3.1-405b");
  ASSERT_TRUE(llama.ok());
  o.tp = 8;
  auto q = PlanMemory(*llama, o);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->window_layers, 0);
  EXPECT_DOUBLE_EQ(q->sequence_kv_bytes, q->sequence_kv_bytes_full);
  EXPECT_EQ(q->max_sequences, q->max_sequences_full);
  EXPECT_EQ(q->Format(o).find("window saving"), std::string::npos);
}

// meta-llama/Llama-3.1-8B: 8,030,261,248 parameters in its checkpoint, norms included.
TEST(MemoryPlan, CountsEveryTensorOfTheCheckpoint) {
  auto c = ParseModelConfig(nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": false, "vocab_size": 128256})"),
                            "llama-3.1-8b/config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto p = PlanMemory(*c, MemoryPlanOptions());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->parameters, 8030261248);
}

// A layout `df11 shard` refuses is refused by the plan too, for the same reason.
TEST(MemoryPlan, RefusesLayoutsTheShardCannotWrite) {
  auto c = ParseModelConfig(nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 768, "intermediate_size": 2048,
    "num_attention_heads": 24, "num_hidden_layers": 4, "num_key_value_heads": 6,
    "vocab_size": 1000})"),
                            "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  MemoryPlanOptions o;
  o.tp = 4;  // 24 heads and 2048 MLP rows split 4 ways, but 6 kv heads do not
  auto kv = PlanMemory(*c, o);
  EXPECT_EQ(kv.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(kv.status().message().find("--tp 4: num_key_value_heads 6 is not divisible by tp 4"),
            std::string::npos)
      << kv.status().ToString();
  o.tp = 2;
  o.pp = 5;
  auto pp = PlanMemory(*c, o);
  EXPECT_EQ(pp.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(pp.status().message().find("--pp 5: cannot split 4 layers"), std::string::npos)
      << pp.status().ToString();
  o.pp = 2;
  EXPECT_TRUE(PlanMemory(*c, o).ok());
}

TEST(DeployConfig, ShippedConfigsLoadAndBadOnesAreNamed) {
  for (const char* name : {"llama-3.1-405b-8xh100-tp8.yaml", "llama-3.1-405b-2x8xh100-tp8-pp2.yaml",
                           "tiny-cpu-tp2-pp2.yaml"}) {
    auto d = LoadDeployConfig(kConfigs + "/" + name);
    ASSERT_TRUE(d.ok()) << name << ": " << d.status().ToString();
  }
  auto two = LoadDeployConfig(kConfigs + "/llama-3.1-405b-2x8xh100-tp8-pp2.yaml");
  EXPECT_EQ(two->tp, 8);
  EXPECT_EQ(two->pp, 2);
  EXPECT_EQ(two->max_step_tokens, 2048);
  const test_support::TempDir tmp("df11_memory_plan_test");
  const std::string bad = tmp.path() + "/bad_deploy.yaml";
  std::ofstream(bad) << "model: x\nparallel: {tp: eight}\n";
  auto b = LoadDeployConfig(bad);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("\"tp\""), std::string::npos) << b.status().ToString();
  std::ofstream(bad) << "model: x\ngpus: 8\n";
  EXPECT_NE(LoadDeployConfig(bad).status().message().find("unknown key \"gpus\""), std::string::npos);
  std::ofstream(bad) << "model: x\nengine: {max_step_tokens: 0}\n";
  EXPECT_NE(LoadDeployConfig(bad).status().message().find("max_step_tokens >= 1"),
            std::string::npos);
  std::ofstream(bad) << "model: x\nengine: {batch_size: 64, max_step_tokens: 32}\n";
  EXPECT_NE(LoadDeployConfig(bad).status().message().find(
                "engine.batch_size 64 is larger than engine.max_step_tokens 32"),
            std::string::npos)
      << LoadDeployConfig(bad).status().ToString();
  std::ofstream(bad) << "model: [unclosed\n";
  EXPECT_FALSE(LoadDeployConfig(bad).ok());
  EXPECT_EQ(LoadDeployConfig("/nonexistent.yaml").status().code(), StatusCode::kNotFound);
}

// The GPU backend's plan from measured sizes: the KV cache gets what the fraction leaves, and
// weights that do not fit are an error naming the sizes.
TEST(DeviceMemoryPlan, KvGetsTheRestAndOversizedWeightsAreRejected) {
  DeviceMemoryInputs in;
  in.device_total_bytes = 80'000'000'000;
  in.memory_fraction = 0.9;
  in.compressed_bytes = 40'000'000'000;
  in.small_bytes = 1'000'000;
  in.layer_scratch_bytes = 2'000'000'000;
  in.head_scratch_bytes = 500'000'000;
  in.activation_bytes = 499'000'000;
  in.kv_bytes_per_token = 1'000'000;
  in.context = 4096;
  auto p = PlanDeviceMemory(in);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->budget_bytes, 72'000'000'000);
  EXPECT_EQ(p->kv_bytes, 72'000'000'000 - 43'000'000'000);
  EXPECT_EQ(p->kv_tokens, 29'000);
  EXPECT_EQ(p->max_sequences, 7);
  EXPECT_EQ(p->weight_memory_bytes(), 42'001'000'000);
  EXPECT_NE(p->Format().find("weight memory per GPU = compressed shard + two layer scratch buffers"),
            std::string::npos);
  // The device sampler's workspace comes out of the KV cache's share.
  in.sampling_bytes = 131'000'000;
  auto sampled = PlanDeviceMemory(in);
  ASSERT_TRUE(sampled.ok());
  EXPECT_EQ(sampled->kv_bytes, p->kv_bytes - 131'000'000);
  EXPECT_EQ(sampled->kv_tokens, 28'869);
  EXPECT_NE(sampled->Format().find("sampling workspace    131.000 MB"), std::string::npos)
      << sampled->Format();
  in.sampling_bytes = 0;
  in.plain_bytes = 40'000'000'000;  // a BF16 copy as well: no longer fits
  auto big = PlanDeviceMemory(in);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(big.status().message().find("does not fit"), std::string::npos);
  in.memory_fraction = 1.5;
  EXPECT_EQ(PlanDeviceMemory(in).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace df11
