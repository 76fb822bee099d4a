// SPDX-License-Identifier: Apache-2.0
// The CUDA backend's paged BF16 KV cache (skips without a CUDA device): the pool is the memory
// plan's blocks; block tables planned elsewhere (any block ids of the pool, in any order) give
// the logits of NewCache's tables bit for bit, with and without a CUDA graph; a copy-on-write
// block copy gives a forked sequence its parent's K/V and leaves the parent's block alone; the
// GPU's greedy tokens through the engine's tables follow the CPU's (the same tables); tables
// naming blocks past the pool, or caches of another block size, are refused with a Status. A
// Gemma 3 model (sliding-window layers) keeps those layers' blocks in their own group, the
// engine's split of the same budget: its greedy tokens follow the CPU's with the window smaller
// than the sequences, the sliding blocks held peak at the window's bound, and a sliding table
// naming blocks past its group or released blocks its window reads is refused.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/kv_blocks.h"
#include "runtime/model/cpu_backend.h"
#include "runtime/model/cuda_backend.h"
#include "runtime/model/model_weights.h"
#include "tests/common/temp_files.h"
#include "tests/runtime/model/model_test_util.h"

namespace df11 {
namespace {

// Requests whose tokens differ between two runs of the same requests.
int RequestsDiffering(const std::vector<std::vector<int32_t>> (&tokens)[2]) {
  int differ = 0;
  for (size_t r = 0; r < tokens[0].size(); ++r) differ += tokens[0][r] != tokens[1][r] ? 1 : 0;
  return differ;
}

class CudaBackendPagingTest : public ::testing::Test {
 protected:
  // The tiny model of the suite (a fixture below serves another one).
  virtual TinyModelOptions ModelOptions() const {
    TinyModelOptions o;
    o.layers = 3;
    o.hidden = 128;
    o.intermediate = 256;
    o.vocab = 700;
    o.seed = 31;
    o.max_position_embeddings = 128;
    return o;
  }

  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      GTEST_SKIP() << "no CUDA device";
    }
    auto [bf16, df11] = model_testing::MakeBf16AndDf11(tmp_.path(), ModelOptions(), "m");
    auto w = LoadModelWeights(df11);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    weights_ = std::make_unique<ModelWeights>(std::move(w).value());
  }

  std::unique_ptr<CudaBackend> Cuda(bool graph, int64_t block_tokens = 4) {
    return CudaOf(weights_.get(), graph, block_tokens);
  }

  static std::unique_ptr<CudaBackend> CudaOf(const ModelWeights* weights, bool graph,
                                             int64_t block_tokens) {
    CudaBackendOptions o;
    o.forward.cuda_graph = graph;
    o.forward.max_step_tokens = 64;
    o.forward.kv_block_tokens = block_tokens;
    o.forward.gpu_memory_fraction = 0.05;  // a pool of blocks, not the whole card
    auto b = CudaBackend::Create(weights, o);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(b).value() : nullptr;
  }

  // A cache over `blocks` (ids of the pool), as the engine plans it.
  static KvCache Planned(std::vector<int32_t> blocks, int64_t block_tokens) {
    KvCache c;
    c.block_tokens = block_tokens;
    c.blocks = std::move(blocks);
    c.capacity = static_cast<int64_t>(c.blocks.size()) * block_tokens;
    return c;
  }

  // Two sequences: a prompt step, then `decode` one-token steps; every step's logits.
  static std::vector<std::vector<float>> Run(CudaBackend& b, KvCache* x, KvCache* y, int decode) {
    std::vector<std::vector<float>> all;
    std::vector<int32_t> xt = {5, 6, 7, 8, 9, 10, 11}, yt = {300, 301, 302};
    for (int i = 0; i <= decode; ++i) {
      const std::vector<SequenceStep> steps = {{x, xt}, {y, yt}};
      std::vector<float> logits;
      const Status s = b.Forward(steps, false, &logits);
      EXPECT_TRUE(s.ok()) << s.ToString();
      all.push_back(logits);
      xt = {static_cast<int32_t>(20 + i)};
      yt = {static_cast<int32_t>(400 + i)};
    }
    return all;
  }

  test_support::TempDir tmp_{"df11_cuda_backend_paging_test"};
  std::unique_ptr<ModelWeights> weights_;
};

TEST_F(CudaBackendPagingTest, ThePoolIsThePlansBlocks) {
  auto b = Cuda(true);
  ASSERT_TRUE(b);
  const DeviceMemoryPlan& plan = b->memory_plan();
  EXPECT_EQ(b->KvBlockTokens(), 4);
  EXPECT_GT(plan.kv_blocks, 0);
  EXPECT_EQ(b->KvTokenBudget(), plan.kv_blocks * 4);
  // No sliding-window layer: one group of every block.
  EXPECT_EQ(plan.groups.sliding, 0);
  EXPECT_EQ(plan.groups.full, plan.kv_blocks);
  // K and V in BF16 for each of the 3 layers.
  const int64_t row = weights_->dims.kv_heads * weights_->config.head_dim;
  EXPECT_EQ(plan.in.kv_bytes_per_token, 2 * 2 * row * 3);
}

TEST_F(CudaBackendPagingTest, PlannedTablesGiveTheLogitsOfFreshCaches) {
  const int decode = 9;  // 7 + 9 positions: 4 blocks of 4
  for (bool graph : {false, true}) {
    SCOPED_TRACE(graph ? "graph" : "no graph");
    auto b = Cuda(graph);
    ASSERT_TRUE(b);
    KvCache x = b->NewCache(7 + decode), y = b->NewCache(3 + decode);
    const auto expected = Run(*b, &x, &y, decode);
    // Blocks from the far end of the pool, out of order, interleaved between the sequences.
    const int32_t top = static_cast<int32_t>(b->memory_plan().kv_blocks) - 1;
    ASSERT_GE(top, 16);
    KvCache px = Planned({top, top - 5, top - 2, top - 9}, 4);
    KvCache py = Planned({top - 1, top - 3, top - 4}, 4);
    const auto got = Run(*b, &px, &py, decode);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].size(), expected[i].size());
      EXPECT_EQ(std::memcmp(got[i].data(), expected[i].data(), 4 * got[i].size()), 0)
          << "step " << i;
    }
  }
}

// A fork shares its parent's full block and copies the partial last one before writing to it:
// a fork of the whole parent takes the parent's next token with the same logits, and a fork of
// all but its last position writes its own token there into its copy, leaving the parent's
// rows alone (the parent's next step equals that of a copy that was never forked).
TEST_F(CudaBackendPagingTest, CopyOnWriteGivesAForkItsParentsRows) {
  auto b = Cuda(false);
  ASSERT_TRUE(b);
  auto step = [&](KvCache* c, std::vector<int32_t> tokens) {
    const std::vector<SequenceStep> steps = {{c, tokens}};
    std::vector<float> logits;
    const Status s = b->Forward(steps, false, &logits);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return logits;
  };
  KvCache parent = Planned({0, 1, 2}, 4), alone = Planned({3, 4, 5}, 4);
  const std::vector<int32_t> prompt = {5, 6, 7, 8, 9, 10};  // one full block and half of one
  step(&parent, prompt);
  step(&alone, prompt);
  KvCache fork = Planned({0, 6}, 4);  // shares block 0; block 1 is copied to 6
  fork.length = 6;
  fork.block_copies = {{1, 6}};
  const auto forked = step(&fork, {42});
  EXPECT_TRUE(fork.block_copies.empty());
  KvCache rewrite = Planned({0, 7}, 4);  // position 5 written again, into its copy
  rewrite.length = 5;
  rewrite.block_copies = {{1, 7}};
  step(&rewrite, {77});
  const auto parent_next = step(&parent, {42});
  EXPECT_EQ(forked, parent_next);
  EXPECT_EQ(parent_next, step(&alone, {42}));
}

// The engine plans the tables (admission by blocks, prefix sharing); the GPU and the CPU are
// fed them alike, and the GPU's greedy tokens follow the CPU's but for near-ties of its BF16
// GEMMs (at most one request may differ).
TEST_F(CudaBackendPagingTest, EngineTablesGiveTheCpusGreedyTokens) {
  auto gpu = Cuda(true, 16);
  ASSERT_TRUE(gpu);
  CpuBackend cpu(weights_.get(), {});
  std::vector<GenerationRequest> requests(6);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = "r" + std::to_string(i);
    for (int j = 0; j < 20; ++j) requests[i].prompt.push_back(100 + j);  // a shared prefix
    requests[i].prompt.push_back(static_cast<int32_t>(200 + i));
    requests[i].max_tokens = 12;
  }
  EngineOptions o;
  o.batch_size = 4;
  o.kv_tokens = 16 * 16;
  std::vector<std::vector<int32_t>> tokens[2];
  int i = 0;
  for (ForwardBackend* backend : {static_cast<ForwardBackend*>(gpu.get()),
                                  static_cast<ForwardBackend*>(&cpu)}) {
    LocalStepRunner runner(backend);
    Engine engine(&runner, o, {});
    auto results = engine.Generate(requests);
    ASSERT_TRUE(results.ok()) << results.status().ToString();
    for (const GenerationResult& r : *results) {
      EXPECT_TRUE(r.error.empty()) << r.error;
      tokens[i].push_back(r.tokens);
    }
    EXPECT_GT(engine.stats().prefix_cached_tokens, 0);
    EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
    ++i;
  }
  EXPECT_LE(RequestsDiffering(tokens), 1);
}

// Speculative decoding on the GPU: drafted tokens' rows come back from the same step (captured
// graphs included) and the engine keeps the greedy tokens of plain decoding, but for near-ties
// that a step of another size may flip in cuBLAS's sums (at most one request may differ).
TEST_F(CudaBackendPagingTest, PromptLookupKeepsTheGreedyTokensOfPlainDecoding) {
  auto gpu = Cuda(true, 16);
  ASSERT_TRUE(gpu);
  std::vector<GenerationRequest> requests(4);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = "r" + std::to_string(i);
    for (int rep = 0; rep < 3; ++rep) {  // a repeating prompt, so lookup finds tails
      for (int j = 0; j < 7; ++j) {
        requests[i].prompt.push_back(static_cast<int32_t>(50 + 9 * i + j));
      }
    }
    requests[i].max_tokens = 24;
  }
  std::vector<std::vector<int32_t>> tokens[2];
  for (int speculate = 0; speculate < 2; ++speculate) {
    EngineOptions o;
    o.batch_size = 4;
    o.kv_tokens = 16 * 24;
    if (speculate == 1) o.speculative.method = SpeculativeOptions::Method::kPromptLookup;
    LocalStepRunner runner(gpu.get());
    Engine engine(&runner, o, {});
    auto results = engine.Generate(requests);
    ASSERT_TRUE(results.ok()) << results.status().ToString();
    for (const GenerationResult& r : *results) {
      EXPECT_TRUE(r.error.empty()) << r.error;
      tokens[speculate].push_back(r.tokens);
    }
    if (speculate == 1) {
      EXPECT_GT(engine.stats().draft_tokens, 0);
    }
    EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
  }
  EXPECT_LE(RequestsDiffering(tokens), 1);
}

TEST_F(CudaBackendPagingTest, TablesOutsideThePoolAreRefused) {
  auto b = Cuda(false);
  ASSERT_TRUE(b);
  const int32_t blocks = static_cast<int32_t>(b->memory_plan().kv_blocks);
  KvCache past = Planned({0, blocks}, 4);
  const std::vector<int32_t> tokens = {1, 2, 3};
  std::vector<float> logits;
  Status s = b->Forward(std::vector<SequenceStep>{{&past, tokens}}, false, &logits);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(
      s.message().find("table of the full-attention layers names block " + std::to_string(blocks) +
                       " at entry 1; expected an id in [0, " + std::to_string(blocks) + ")"),
      std::string::npos)
      << s.ToString();
  KvCache other = Planned({0, 1}, 8);
  s = b->Forward(std::vector<SequenceStep>{{&other, tokens}}, false, &logits);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("blocks of 8 positions but this CUDA backend's pool has blocks of 4"),
            std::string::npos)
      << s.ToString();
  KvCache short_table = Planned({0}, 4);
  s = b->Forward(std::vector<SequenceStep>{{&short_table, std::vector<int32_t>{1, 2, 3, 4, 5}}},
                 false, &logits);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
}

// Gemma 3 (3 layers: 0 and 1 slide with a window of 8, 2 is global) in blocks of 4 positions.
class CudaBackendWindowTest : public CudaBackendPagingTest {
 protected:
  TinyModelOptions ModelOptions() const override {
    TinyModelOptions o = CudaBackendPagingTest::ModelOptions();
    o.arch = "gemma3_text";
    o.heads = 4;
    o.kv_heads = 2;
    o.seed = 37;
    o.sliding_window = 8;
    return o;
  }
  void SetUp() override {
    CudaBackendPagingTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_EQ(weights_->config.layer_window, (std::vector<int64_t>{8, 8, 0}));
  }
};

TEST_F(CudaBackendWindowTest, SlidingLayersKeepOnlyTheirWindowsBlocks) {
  auto gpu = Cuda(true, 4);
  ASSERT_TRUE(gpu);
  EXPECT_TRUE(gpu->KvSlidingGroup());
  const KvGroupBlocks groups = gpu->memory_plan().groups;
  EXPECT_GT(groups.sliding, 0);
  CpuBackendOptions co;
  co.forward.kv_block_tokens = 4;
  CpuBackend cpu(weights_.get(), co);
  std::vector<GenerationRequest> requests(3);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = "r" + std::to_string(i);
    for (int j = 0; j < 10; ++j) requests[i].prompt.push_back(static_cast<int32_t>(40 * i + j));
    requests[i].max_tokens = 40;  // 50 positions, the window 8
  }
  EngineOptions o;
  o.batch_size = 3;
  o.kv_tokens = gpu->KvTokenBudget();
  std::vector<std::vector<int32_t>> tokens[2];
  int i = 0;
  for (ForwardBackend* backend :
       {static_cast<ForwardBackend*>(gpu.get()), static_cast<ForwardBackend*>(&cpu)}) {
    LocalStepRunner runner(backend);
    Engine engine(&runner, o, {});
    auto results = engine.Generate(requests);
    ASSERT_TRUE(results.ok()) << results.status().ToString();
    for (const GenerationResult& r : *results) {
      EXPECT_TRUE(r.error.empty()) << r.error;
      EXPECT_EQ(r.tokens.size(), 40u);
      tokens[i].push_back(r.tokens);
    }
    // The engine's groups are the device pool's (the same budget, the same split).
    const KvBlocks* blocks = engine.kv_blocks();
    ASSERT_NE(blocks, nullptr);
    ASSERT_EQ(blocks->groups(), 2);
    EXPECT_EQ(blocks->total_blocks(kFullGroup), groups.full);
    EXPECT_EQ(blocks->total_blocks(kSlidingGroup), groups.sliding);
    // Each sequence holds at most ceil(8 / 4) + 1 sliding blocks once its prompt is written.
    EXPECT_LE(engine.stats().peak_kv_sliding_blocks, 3 * 3);
    EXPECT_GE(engine.stats().peak_kv_blocks, 3 * (50 / 4));
    EXPECT_EQ(blocks->used_blocks(kSlidingGroup), 0);
    ++i;
  }
  EXPECT_LE(RequestsDiffering(tokens), 1);
}

TEST_F(CudaBackendWindowTest, BadSlidingTablesAreRefused) {
  auto b = Cuda(false, 4);
  ASSERT_TRUE(b);
  const KvGroupBlocks groups = b->memory_plan().groups;
  const int32_t past = static_cast<int32_t>(groups.sliding);
  std::vector<float> logits;
  auto forward = [&](KvCache* c, std::vector<int32_t> tokens) {
    return b->Forward(std::vector<SequenceStep>{{c, tokens}}, false, &logits);
  };
  KvCache c = Planned({0, 1, 2, 3}, 4);
  c.sliding_blocks = {0, 1, past, 3};
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  Status s = forward(&c, prompt);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(
      s.message().find("table of the sliding-window layers names block " + std::to_string(past) +
                       " at entry 2; expected an id in [0, " + std::to_string(past) + ")"),
      std::string::npos)
      << s.ToString();
  // Twelve positions written; then block 1 (positions 4-7) released while the next token's
  // window (positions 5-12) still reads it.
  c.sliding_blocks = {0, 1, 2, 3};
  ASSERT_TRUE(forward(&c, prompt).ok());
  c.sliding_blocks = {-1, -1, 2, 3};
  s = forward(&c, {13});
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("names block -1 at entry 1 (released, but its window still reads"),
            std::string::npos)
      << s.ToString();
  // Block 0 (positions 0-3) is wholly before that window: released, it is never read.
  c.sliding_blocks = {-1, 1, 2, 3};
  EXPECT_TRUE(forward(&c, {13}).ok());
}

}  // namespace
}  // namespace df11
