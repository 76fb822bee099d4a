// SPDX-License-Identifier: Apache-2.0
// The generation loop over a paged KV cache whose sliding-window layers keep their own blocks
// (Gemma 3, tests/data/hf_models/gemma3_text: windows of 8 on layers 0-2, layer 3 global): a
// long sequence holds at most its window's sliding blocks (the run summary's peak) and gets the
// tokens of a cache that releases nothing; requests preempted when a group runs dry, sharing a
// prompt prefix, keep the tokens they get alone, and so do requests whose drafted tokens are
// verified and partly rejected (cut from both groups); a long prompt prefilled in chunks takes
// its sliding blocks chunk by chunk (at most ceil((window + step - 2) / block) + 1 at once) and a
// request sharing its prefix waits until the chunks it shares are computed; every block of both
// groups is free after the job.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "runtime/engine/engine.h"
#include "runtime/model/cpu_backend.h"
#include "runtime/model/model_weights.h"
#include "tests/runtime/engine/engine_run.h"

namespace df11 {
namespace {

class EngineWindowTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto w = LoadModelWeights(std::string(DF11_TEST_DATA_DIR) + "/hf_models/models/gemma3_text");
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    weights_ = new ModelWeights(std::move(w).value());
    weights_->config.max_position_embeddings = 96;  // the context a default pool is sized for
  }
  static void TearDownTestSuite() { delete weights_; }

  using Run = test_support::EngineRun;
  static Run Generate(std::span<const GenerationRequest> requests, const EngineOptions& o,
                      int64_t block_tokens) {
    CpuBackendOptions bo;
    bo.forward.kv_block_tokens = block_tokens;
    CpuBackend backend(weights_, bo);
    LocalStepRunner runner(&backend);
    Engine engine(&runner, o, {});
    Run run = test_support::RunEngine(engine, requests);
    EXPECT_NE(engine.kv_blocks(), nullptr);
    if (engine.kv_blocks() != nullptr) {
      EXPECT_EQ(engine.kv_blocks()->groups(), 2);
    }
    return run;
  }

  static std::vector<GenerationRequest> Requests(int n, int shared, int64_t max_tokens) {
    return test_support::PrefixedRequests(n, shared, max_tokens);
  }

  // The tokens each request gets run alone (blocks of 4, no prefix caching).
  static std::vector<std::vector<int32_t>> Alone(const std::vector<GenerationRequest>& requests) {
    std::vector<std::vector<int32_t>> alone;
    for (const GenerationRequest& r : requests) {
      EngineOptions o;
      o.batch_size = 1;
      o.prefix_caching = false;
      Run run = Generate(std::span(&r, 1), o, 4);
      alone.push_back(run.results.empty() ? std::vector<int32_t>() : run.results[0].tokens);
    }
    return alone;
  }

  // Every request succeeded with the tokens it gets alone; both groups' blocks are free.
  static void ExpectTokensAndBothGroupsFree(const Run& run,
                                            const std::vector<GenerationRequest>& requests,
                                            const std::vector<std::vector<int32_t>>& alone,
                                            const std::string& context) {
    ASSERT_EQ(run.results.size(), requests.size()) << context;
    for (size_t i = 0; i < requests.size(); ++i) {
      EXPECT_TRUE(run.results[i].error.empty()) << run.results[i].error;
      EXPECT_EQ(run.results[i].tokens, alone[i]) << requests[i].id << " " << context;
    }
    EXPECT_EQ(run.used_after[0], 0) << context;
    EXPECT_EQ(run.used_after[1], 0) << context;
  }

  static ModelWeights* weights_;
};
ModelWeights* EngineWindowTest::weights_ = nullptr;

TEST_F(EngineWindowTest, ALongSequenceHoldsAtMostItsWindowsSlidingBlocks) {
  const std::vector<GenerationRequest> requests = Requests(1, 0, 60);
  EngineOptions o;
  o.batch_size = 1;
  // Blocks of 4 positions: the window of 8 spans at most 3 of them.
  Run run = Generate(requests, o, 4);
  // One block for the whole sequence: nothing is ever released.
  Run whole = Generate(requests, o, 1 << 20);
  ASSERT_EQ(run.results.size(), 1u);
  EXPECT_TRUE(run.results[0].error.empty()) << run.results[0].error;
  EXPECT_EQ(run.results[0].tokens.size(), 60u);
  EXPECT_EQ(run.results[0].tokens, whole.results[0].tokens);
  EXPECT_EQ(run.stats.peak_kv_blocks, (2 + 60 + 3) / 4);  // 62 positions, the last unwritten
  EXPECT_LE(run.stats.peak_kv_sliding_blocks, 3);
  EXPECT_EQ(run.used_after[0], 0);
  EXPECT_EQ(run.used_after[1], 0);
}

// A 74-token prompt in chunks of at most 6 tokens, blocks of 4 and a window of 8: each chunk
// holds the window before its first position and its own positions, at most
// ceil((8 + 6 - 2) / 4) + 1 = 4 sliding blocks (not the prompt's 19), and the tokens are those
// of a cache that releases nothing.
TEST_F(EngineWindowTest, ALongPromptTakesItsSlidingBlocksChunkByChunk) {
  std::vector<GenerationRequest> requests = Requests(1, 72, 16);
  ASSERT_EQ(requests[0].prompt.size(), 74u);
  EngineOptions o;
  o.batch_size = 1;
  o.max_step_tokens = 6;
  Run run = Generate(requests, o, 4);
  o.max_step_tokens = 0;
  Run whole = Generate(requests, o, 1 << 20);
  ASSERT_EQ(run.results.size(), 1u);
  EXPECT_TRUE(run.results[0].error.empty()) << run.results[0].error;
  EXPECT_EQ(run.results[0].tokens.size(), 16u);
  EXPECT_EQ(run.results[0].tokens, whole.results[0].tokens);
  EXPECT_GE(run.stats.prefill_steps, 74 / 6);
  EXPECT_EQ(run.stats.peak_kv_blocks, (74 + 16 - 1 + 3) / 4);  // the last token is not written
  EXPECT_LE(run.stats.peak_kv_sliding_blocks, (8 + 6 - 2 + 3) / 4 + 1);
  EXPECT_EQ(run.used_after[0], 0);
  EXPECT_EQ(run.used_after[1], 0);
}

// Requests sharing a 40-token prefix, prefilled in chunks of 8 over a pool that runs dry: a
// request waits while the prefix it shares is being computed and shares only computed chunks,
// so every request keeps the tokens it gets alone.
TEST_F(EngineWindowTest, ChunkedPromptsSharingAPrefixKeepTheirTokensAndFreeBothGroups) {
  const std::vector<GenerationRequest> requests = Requests(6, 40, 12);
  const std::vector<std::vector<int32_t>> alone = Alone(requests);
  for (int64_t kv_tokens : {0, 20 * 4}) {
    EngineOptions o;
    o.batch_size = 6;
    o.max_step_tokens = 8;
    o.kv_tokens = kv_tokens;
    Run run = Generate(requests, o, 4);
    ASSERT_EQ(run.results.size(), requests.size());
    EXPECT_GT(run.stats.prefix_cached_tokens, 0) << kv_tokens;
    if (kv_tokens > 0) {
      EXPECT_GT(run.stats.preemptions, 0);
    }
    ExpectTokensAndBothGroupsFree(run, requests, alone, "kv " + std::to_string(kv_tokens));
  }
}

TEST_F(EngineWindowTest, PreemptedAndPrefixSharingRequestsKeepTheirTokensAndFreeBothGroups) {
  const std::vector<GenerationRequest> requests = Requests(8, 12, 40);
  const std::vector<std::vector<int32_t>> alone = Alone(requests);
  EngineOptions o;
  o.batch_size = 8;
  o.kv_tokens = 40 * 4;  // split between the groups for sequences of the 96-token context
  Run run = Generate(requests, o, 4);
  ASSERT_EQ(run.results.size(), requests.size());
  EXPECT_GT(run.stats.preemptions, 0);
  EXPECT_GT(run.stats.prefix_cached_tokens, 0);
  ExpectTokensAndBothGroupsFree(run, requests, alone, "");
}

TEST_F(EngineWindowTest, RejectedDraftsLeaveBothGroupsAndTheTokensStay) {
  std::vector<GenerationRequest> requests = Requests(4, 0, 40);
  for (GenerationRequest& r : requests) {  // a repeating pattern prompt lookup drafts from
    for (int j = 0; j < 24; ++j) r.prompt.push_back(40 + j % 5);
  }
  EngineOptions o;
  o.batch_size = 4;
  const Run plain = Generate(requests, o, 4);
  o.speculative.method = SpeculativeOptions::Method::kPromptLookup;
  const Run spec = Generate(requests, o, 4);
  ASSERT_EQ(spec.results.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(spec.results[i].error.empty()) << spec.results[i].error;
    EXPECT_EQ(spec.results[i].tokens, plain.results[i].tokens) << requests[i].id;
  }
  EXPECT_GT(spec.stats.draft_tokens, spec.stats.accepted_tokens);
  EXPECT_EQ(spec.used_after[0], 0);
  EXPECT_EQ(spec.used_after[1], 0);
}

}  // namespace
}  // namespace df11
