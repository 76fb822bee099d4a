// SPDX-License-Identifier: Apache-2.0
// The memory plan: Llama 3.1 405B fits one 8 x 80 GB node losslessly as DF11 (TP 8) and does not
// as BF16; its BF16 KV blocks hold twice the tokens FP32 K and V would; sliding-window layers
// cost as much as full ones (their blocks are kept).
#include "runtime/model/memory_plan.h"

#include <gtest/gtest.h>

#include <fstream>


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
  // ~7.9 GB left for the KV cache at 64.5 KB per token (126 layers, one kv head, BF16 K and V).
  EXPECT_GT(df11->kv_tokens, 2 * 49152);
  o.codec = WeightCodec::kBf16;
  auto bf16 = PlanMemory(*c, o);
  ASSERT_TRUE(bf16.ok());
  EXPECT_GT(bf16->weight_bytes / 1e9, 100);
  EXPECT_FALSE(bf16->fits);
  o.tp = 7;
  EXPECT_FALSE(PlanMemory(*c, o).ok());
}

// Llama 3.1 405B DF11 on 8 x 80 GB, TP 8: K and V in BF16 blocks hold twice the positions that
// FP32 K and V held in the same bytes (~61 k -> ~123 k per GPU), up to one block of rounding;
// the expectation comes from the model's shape.
TEST(MemoryPlan, Bf16KvBlocksDoubleLlama405bTp8Tokens) {
  auto c = LoadModelConfig(kConfigs + "/models/llama-3.1-405b");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  MemoryPlanOptions o;
  o.tp = 8;
  o.memory_fraction = 0.92;
  o.context = 8192;
  auto p = PlanMemory(*c, o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const int64_t row = c->num_key_value_heads / o.tp * c->head_dim;  // per layer and position
  const double fp32_per_token = 2.0 * 4.0 * static_cast<double>(row * c->num_hidden_layers);
  EXPECT_DOUBLE_EQ(p->kv_bytes_per_token, fp32_per_token / 2);
  const int64_t fp32_tokens = static_cast<int64_t>(p->kv_bytes / fp32_per_token);
  EXPECT_GT(fp32_tokens, 55000);  // the ~61 k the FP32 cache held
  EXPECT_EQ(p->kv_tokens % o.kv_block_tokens, 0);
  EXPECT_EQ(p->kv_tokens, p->kv_blocks * o.kv_block_tokens);
  EXPECT_GE(p->kv_tokens, 2 * fp32_tokens - o.kv_block_tokens);
  EXPECT_LE(p->kv_tokens, 2 * fp32_tokens + 1);
  EXPECT_EQ(p->max_sequences, p->kv_blocks / (8192 / o.kv_block_tokens));
  const std::string text = p->Format(o);
  EXPECT_NE(text.find(std::to_string(p->kv_blocks) + " blocks of 16"), std::string::npos) << text;
  // Larger blocks: whole blocks only.
  o.kv_block_tokens = 4096;
  auto big = PlanMemory(*c, o);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->kv_tokens % 4096, 0);
  EXPECT_GT(big->kv_tokens, p->kv_tokens - 4096);
  EXPECT_LE(big->kv_tokens, p->kv_tokens + 16);
  o.kv_block_tokens = 0;
  auto bad = PlanMemory(*c, o);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--kv-block-tokens must be in [1, 4096], got 0"),
            std::string::npos)
      << bad.status().ToString();
}

// Gemma 3 27B (configs/models/gemma-3-27b-it: 62 layers, 52 of them with a 1024-token window) on
// one 80 GB GPU at 32k context: the KV blocks count every layer, and beside them the window
// saving: a sequence takes 2048 blocks of its 10 full-attention layers and of its 52 sliding ones
// at most ceil((1024 + 2048 - 2) / 16) + 1 = 193 (a prompt's chunks of the default 2048-token
// step each hold the window before them, 65 blocks once it decodes), so more sequences fit with
// the saving than without (those of the engine's split of the memory between the groups); on
// 2 x 24 GB (TP 2) one sequence fits with the saving and none without; a model without
// sliding-window layers prints no saving.
TEST(MemoryPlan, SlidingWindowLayersKeepOnlyTheirWindowsBlocks) {
  auto c = LoadModelConfig(kConfigs + "/models/gemma-3-27b-it");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  MemoryPlanOptions o;
  o.context = 32768;
  auto p = PlanMemory(*c, o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // Per position and layer: 16 kv heads x 128 x (K, V) x 2 bytes = 8192 bytes.
  EXPECT_DOUBLE_EQ(p->kv_bytes_per_token, 8192.0 * 62);
  EXPECT_EQ(p->kv_blocks, static_cast<int64_t>(p->kv_bytes / (8192.0 * 62 * 16)));
  EXPECT_EQ(p->max_sequences, p->kv_blocks / (32768 / 16));
  EXPECT_TRUE(p->fits);
  EXPECT_EQ(p->window_layers, 52);
  EXPECT_EQ(p->window, 1024);
  EXPECT_DOUBLE_EQ(p->sequence_kv_bytes, 8192.0 * 16 * (2048 * 10 + 193 * 52));
  EXPECT_DOUBLE_EQ(p->sequence_kv_bytes_full, 8192.0 * 16 * 2048 * 62);
  // The engine's split: the sliding pool keeps at least one sequence's 193 blocks, the
  // full-attention layers get the rest.
  const int64_t units = p->kv_blocks * 62, sliding = std::max<int64_t>(
      static_cast<int64_t>(static_cast<double>(units) / (2048 * 10 + 193 * 52) * 193), 193);
  EXPECT_EQ(p->windowed_sequences,
            std::min((units - sliding * 52) / 10 / 2048, sliding / 193));
  EXPECT_EQ(p->windowed_kv_tokens, p->windowed_sequences * 32768);
  EXPECT_GT(p->windowed_sequences, 3 * p->max_sequences);
  const std::string text = p->Format(o);
  EXPECT_NE(text.find("window saving      52 sliding-window layers (window 1024)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("with the saving " + std::to_string(p->windowed_sequences) +
                      (p->windowed_sequences == 1 ? " sequence" : " sequences") +
                      " of 32768 tokens"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("without it " + std::to_string(p->max_sequences) + " ("), std::string::npos)
      << text;
  // 2 x 24 GB, TP 2: less than one context's KV for every layer, one sequence with the saving.
  MemoryPlanOptions two = o;
  two.tp = 2;
  two.gpu_memory_bytes = 24.0 * (1 << 30);
  auto small = PlanMemory(*c, two);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_EQ(small->max_sequences, 0);
  EXPECT_EQ(small->windowed_sequences, 1);
  // Steps of 512 tokens: chunks hold ceil((1024 + 510) / 16) + 1 = 97 sliding blocks, more fit.
  two.workspace_tokens = 512;
  auto short_steps = PlanMemory(*c, two);
  ASSERT_TRUE(short_steps.ok()) << short_steps.status().ToString();
  // TP 2: 8 kv heads a GPU, 4096 bytes per position and layer.
  EXPECT_DOUBLE_EQ(short_steps->sequence_kv_bytes, 4096.0 * 16 * (2048 * 10 + 97 * 52));
  EXPECT_GE(short_steps->windowed_sequences, small->windowed_sequences);
  // A sequence shorter than a window: nothing to save.
  o.context = 512;
  p = PlanMemory(*c, o);
  ASSERT_TRUE(p.ok());
  EXPECT_DOUBLE_EQ(p->sequence_kv_bytes, p->sequence_kv_bytes_full);
  auto llama = LoadModelConfig(kConfigs + "/models/llama-3.1-8b-instruct");
  ASSERT_TRUE(llama.ok());
  p = PlanMemory(*llama, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->window_layers, 0);
  EXPECT_EQ(p->Format({}).find("window"), std::string::npos) << p->Format({});
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

// The GPU backend's plan from measured sizes: the KV cache gets what the fraction leaves (at most
// what the device has free), and weights that do not fit are an error naming the sizes.
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
  in.kv_block_tokens = 8;
  in.context = 4096;
  auto p = PlanDeviceMemory(in);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->budget_bytes, 72'000'000'000);
  EXPECT_EQ(p->kv_bytes, 72'000'000'000 - 43'000'000'000);
  EXPECT_EQ(p->kv_blocks, 3'625);
  EXPECT_EQ(p->kv_tokens, 29'000);
  EXPECT_EQ(p->max_sequences, 7);  // 3625 blocks / 512 blocks per sequence
  EXPECT_EQ(p->weight_memory_bytes(), 42'001'000'000);
  EXPECT_NE(p->Format().find("weight memory per GPU = compressed shard + two layer scratch buffers"),
            std::string::npos);
  // The device sampler's workspace comes out of the KV cache's share.
  in.sampling_bytes = 131'000'000;
  auto sampled = PlanDeviceMemory(in);
  ASSERT_TRUE(sampled.ok());
  EXPECT_EQ(sampled->kv_bytes, p->kv_bytes - 131'000'000);
  EXPECT_EQ(sampled->kv_tokens, 28'864);  // 28869 positions' bytes: 3608 whole blocks
  EXPECT_NE(sampled->Format().find("sampling workspace    131.000 MB"), std::string::npos)
      << sampled->Format();
  // What the device has free caps the cache (other processes or backends hold the rest).
  in.device_free_bytes = 10'000'000'000 + kDeviceMemoryMarginBytes + in.sampling_bytes;
  auto shared = PlanDeviceMemory(in);
  ASSERT_TRUE(shared.ok());
  EXPECT_EQ(shared->kv_bytes, 10'000'000'000);
  EXPECT_EQ(shared->kv_tokens, 10'000);
  in.device_free_bytes = kDeviceMemoryMarginBytes;
  auto full = PlanDeviceMemory(in);
  EXPECT_EQ(full.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(full.status().message().find("no room for the KV cache on the GPU"),
            std::string::npos)
      << full.status().ToString();
  in.device_free_bytes = 0;
  in.sampling_bytes = 0;
  in.plain_bytes = 40'000'000'000;  // a BF16 copy as well: no longer fits
  auto big = PlanDeviceMemory(in);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(big.status().message().find("does not fit"), std::string::npos);
  in.memory_fraction = 1.5;
  EXPECT_EQ(PlanDeviceMemory(in).status().code(), StatusCode::kInvalidArgument);
  in.memory_fraction = 0.9;
  in.plain_bytes = 0;
  in.kv_block_tokens = 0;
  EXPECT_EQ(PlanDeviceMemory(in).status().code(), StatusCode::kInvalidArgument);
}

// The GPU backend's plan for Gemma 3 27B as DF11 (62 layers, 52 with a 1024-token window) on one
// 80 GiB device at 32768 tokens: the sliding-window layers keep their blocks in their own group
// (the engine's split of the budget), so more sequences fit than in blocks of every layer, in
// the same memory; a pipeline stage of full-attention layers only takes no sliding blocks.
TEST(DeviceMemoryPlan, SlidingWindowLayersKeepOnlyTheirWindowsBlocks) {
  auto c = LoadModelConfig(kConfigs + "/models/gemma-3-27b-it");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  DeviceMemoryInputs in;
  in.device_total_bytes = int64_t{80} << 30;
  in.memory_fraction = 0.9;
  in.compressed_bytes = 37'600'000'000;
  in.layer_scratch_bytes = 2'000'000'000;
  in.activation_bytes = 1'000'000'000;
  const int64_t row = 8192;  // K and V of 16 kv heads x 128, BF16, one layer and position
  in.kv_bytes_per_token = row * 62;
  in.context = 32768;
  in.model_windows = c->layer_window;
  in.local_windows = c->layer_window;
  auto p = PlanDeviceMemory(in);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const int64_t every_layer = p->kv_bytes / (row * 62 * 16);  // blocks of all 62 layers
  const int64_t without = every_layer / 2048;
  EXPECT_GE(without, 1);
  EXPECT_GT(p->max_sequences, 3 * without);
  EXPECT_EQ(p->max_sequences, KvSequencesOf(p->groups, 1024, 16, 32768));
  EXPECT_GE(p->kv_blocks, every_layer);
  EXPECT_EQ(p->kv_tokens, p->kv_blocks * 16);
  // The groups are the engine's split of that budget and fit the KV memory.
  const KvGroupBlocks split = KvGroupsOfBudget(c->layer_window, p->kv_tokens, 16, 32768);
  EXPECT_EQ(p->groups.full, split.full);
  EXPECT_EQ(p->groups.sliding, split.sliding);
  EXPECT_LE((10 * p->groups.full + 52 * p->groups.sliding) * 16 * row, p->kv_bytes);
  const std::string text = p->Format();
  EXPECT_NE(text.find("concurrency        " +
                      std::string(10 - std::to_string(p->max_sequences).size(), ' ') +
                      std::to_string(p->max_sequences) +
                      (p->max_sequences == 1 ? " sequence" : " sequences") + " of 32768 tokens"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("KV block groups    " + std::to_string(p->groups.full) +
                      " blocks of each full-attention layer, " + std::to_string(p->groups.sliding) +
                      " of each sliding-window layer"),
            std::string::npos)
      << text;
  // A stage holding only 10 full-attention layers: its memory is all full-attention blocks.
  in.local_windows.assign(10, 0);
  in.kv_bytes_per_token = row * 10;
  auto stage = PlanDeviceMemory(in);
  ASSERT_TRUE(stage.ok()) << stage.status().ToString();
  EXPECT_LE(10 * stage->groups.full * 16 * row, stage->kv_bytes);
  EXPECT_GT(10 * stage->groups.full * 16 * row, stage->kv_bytes - 10 * 16 * row * 64);
}

}  // namespace
}  // namespace df11
