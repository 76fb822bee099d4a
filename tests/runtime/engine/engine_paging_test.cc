// SPDX-License-Identifier: Apache-2.0
// The generation loop over a paged BF16 KV cache (the CPU backend): requests are admitted by free
// blocks, so a workload whose prompt + max_tokens reservations exceed the pool runs more
// sequences at once than reservations allow, with the same tokens; when the pool runs dry the
// most recently admitted sequence is preempted and computed again, and every request (greedy or
// sampled) still gets the tokens it gets alone (counted once in the statistics, the recomputed
// ones apart); requests sharing a prompt prefix find it in the
// prefix cache (also in a later Generate call) and get the tokens of a cold run; a request that
// can never fit gets an error naming the figures; after any job, including one stopped by a
// failing callback or a failing step, every block is free again, and a prompt stopped midway
// through its chunks leaves only its computed blocks to share.
#include <gtest/gtest.h>

#include <optional>

#include "runtime/engine/engine.h"
#include "runtime/model/cpu_backend.h"
#include "runtime/model/model_weights.h"
#include "tests/common/temp_files.h"
#include "tests/runtime/engine/engine_run.h"
#include "tests/runtime/model/model_test_util.h"

namespace df11 {
namespace {

class EnginePagingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_.emplace("df11_engine_paging_test");
    TinyModelOptions o;
    o.vocab = 400;
    o.seed = 23;
    o.max_position_embeddings = 96;
    auto [bf16, df11] = model_testing::MakeBf16AndDf11(dir_->path(), o, "m");
    auto w = LoadModelWeights(df11);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    weights_ = new ModelWeights(std::move(w).value());
  }
  static void TearDownTestSuite() {
    delete weights_;
    dir_.reset();
  }

  // test_support::PrefixedRequests, every third sampled.
  static std::vector<GenerationRequest> Requests(int n, int shared, int64_t max_tokens) {
    std::vector<GenerationRequest> r = test_support::PrefixedRequests(n, shared, max_tokens);
    for (int i = 2; i < n; i += 3) {
      r[i].sampling.temperature = 0.9f;
      r[i].sampling.top_p = 0.95f;
      r[i].seed = 100 + i;
    }
    return r;
  }

  using Run = test_support::EngineRun;
  static Run Generate(std::span<const GenerationRequest> requests, const EngineOptions& o,
                      const ModelText& text = {}) {
    CpuBackend backend(weights_, {});
    LocalStepRunner runner(&backend);
    Engine engine(&runner, o, text);
    return test_support::RunEngine(engine, requests);
  }

  // Each request served alone, with a pool of its own.
  static std::vector<std::vector<int32_t>> Alone(std::span<const GenerationRequest> requests,
                                                 const ModelText& text = {}) {
    std::vector<std::vector<int32_t>> tokens;
    EngineOptions o;
    o.batch_size = 1;
    o.prefix_caching = false;
    for (const GenerationRequest& r : requests) {
      Run run = Generate(std::span(&r, 1), o, text);
      tokens.push_back(run.results.empty() ? std::vector<int32_t>() : run.results[0].tokens);
    }
    return tokens;
  }

  static std::optional<test_support::TempDir> dir_;
  static ModelWeights* weights_;
};
std::optional<test_support::TempDir> EnginePagingTest::dir_;
ModelWeights* EnginePagingTest::weights_ = nullptr;

TEST_F(EnginePagingTest, ADryPoolPreemptsTheLatestSequenceAndEveryRequestKeepsItsTokens) {
  const std::vector<GenerationRequest> requests = Requests(8, 0, 30);
  const auto alone = Alone(requests);
  EngineOptions o;
  o.batch_size = 8;
  o.kv_tokens = 6 * 16;  // 6 blocks; each request grows to 3 blocks
  o.prefix_caching = false;
  Run run = Generate(requests, o);
  ASSERT_EQ(run.results.size(), requests.size());
  EXPECT_GT(run.stats.preemptions, 0);
  EXPECT_LE(run.stats.peak_kv_blocks, 6);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(run.results[i].error.empty()) << run.results[i].error;
    EXPECT_EQ(run.results[i].tokens, alone[i]) << requests[i].id;
    EXPECT_EQ(run.results[i].tokens.size(), 30u) << requests[i].id;
  }
  EXPECT_EQ(run.used_after[kFullGroup], 0);
  // The summary counts each request's 30 tokens once; the preempted sequences' discarded tokens
  // are counted apart.
  EXPECT_EQ(run.stats.generated_tokens, 8 * 30);
  EXPECT_GT(run.stats.recomputed_tokens, 0);
}

TEST_F(EnginePagingTest, AdmissionByFreeBlocksRunsMoreSequencesThanReservationsAllow) {
  // Reservations of prompt + max_tokens (82..89 each) would let two of these six run at once in
  // 12 blocks of 16; they end early (ids below 30 end a sequence), so the blocks they take as
  // they grow hold all six from the first step.
  const std::vector<GenerationRequest> requests = Requests(6, 0, 80);
  ModelText text;
  for (int32_t id = 0; id < 30; ++id) text.eos_ids.push_back(id);
  const auto alone = Alone(requests, text);
  EngineOptions o;
  o.batch_size = 6;
  o.kv_tokens = 12 * 16;
  Run run = Generate(requests, o, text);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(run.results[i].error.empty()) << run.results[i].error;
    EXPECT_EQ(run.results[i].tokens, alone[i]) << requests[i].id;
    EXPECT_EQ(run.results[i].first_token_step, 0) << requests[i].id;
  }
  EXPECT_EQ(run.stats.preemptions, 0);
  EXPECT_LE(run.stats.peak_kv_blocks, 12);
  EXPECT_EQ(run.used_after[kFullGroup], 0);
}

TEST_F(EnginePagingTest, ASharedPromptPrefixIsComputedOnceWithTheTokensOfAColdRun) {
  const std::vector<GenerationRequest> requests = Requests(6, 40, 5);
  EngineOptions o;
  o.batch_size = 3;
  o.prefix_caching = false;
  Run cold = Generate(requests, o);
  o.prefix_caching = true;
  Run warm = Generate(requests, o);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(warm.results[i].tokens, cold.results[i].tokens) << requests[i].id;
  }
  // 40 shared tokens = 2 full blocks of 16, computed once: the first request computes them, the
  // others (even those that could have joined its batch) wait for them and find them.
  EXPECT_EQ(cold.stats.prefix_cached_tokens, 0);
  EXPECT_EQ(warm.stats.prefix_cached_tokens, 5 * 32);
  EXPECT_EQ(warm.stats.prompt_tokens, cold.stats.prompt_tokens - 5 * 32);
  EXPECT_EQ(warm.used_after[kFullGroup], 0);
}

TEST_F(EnginePagingTest, ALaterCallFindsTheEarlierCallsPrefixAndAWholePromptHit) {
  CpuBackend backend(weights_, {});
  LocalStepRunner runner(&backend);
  Engine engine(&runner, EngineOptions{});
  const std::vector<GenerationRequest> first = Requests(1, 32, 6);
  auto a = engine.Generate(first);
  ASSERT_TRUE(a.ok());
  // The same prompt again (found whole: its last position is computed again in a copy of the
  // shared block) and one that shares only the 32-token prefix.
  std::vector<GenerationRequest> later = {first[0], Requests(2, 32, 6)[1]};
  later[0].id = "again";
  auto b = engine.Generate(later);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[0].tokens, (*a)[0].tokens);
  const int64_t prompt = static_cast<int64_t>(first[0].prompt.size());  // 34: 2 full blocks
  EXPECT_EQ(engine.stats().prefix_cached_tokens, 32 + 32);
  EXPECT_LT(prompt, 48);
  EXPECT_EQ((*b)[1].tokens, Alone(std::span(&later[1], 1))[0]);
  EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
}

TEST_F(EnginePagingTest, ARequestThatCanNeverFitGetsAnErrorNamingTheFigures) {
  std::vector<GenerationRequest> requests = Requests(3, 0, 10);
  requests[1].max_tokens = 50;  // prompt 3 + 50 > 3 blocks of 16
  EngineOptions o;
  o.kv_tokens = 3 * 16;
  Run run = Generate(requests, o);
  EXPECT_EQ(run.results[1].error,
            "needs 53 KV cache tokens (prompt 3 + max_tokens 50), more than the KV budget of 48 "
            "tokens (3 blocks of 16)");
  EXPECT_TRUE(run.results[0].error.empty() && run.results[2].error.empty());
  EXPECT_EQ(run.results[2].tokens.size(), 10u);
}

TEST_F(EnginePagingTest, AStoppedJobLeavesEveryBlockFree) {
  CpuBackend backend(weights_, {});
  LocalStepRunner runner(&backend);
  EngineOptions o;
  o.batch_size = 4;
  o.kv_tokens = 6 * 16;
  Engine engine(&runner, o);
  const std::vector<GenerationRequest> requests = Requests(8, 20, 12);
  int delivered = 0;
  const Status s = engine.Generate(requests, [&](size_t, GenerationResult) {
    return ++delivered == 3 ? Status::Cancelled("stopped by the caller") : Status::Ok();
  });
  EXPECT_EQ(s.code(), StatusCode::kCancelled);
  ASSERT_NE(engine.kv_blocks(), nullptr);
  EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
  EXPECT_EQ(engine.kv_blocks()->open_sequences(), 0);
  // The engine serves the next job normally.
  auto again = engine.Generate(std::span(requests).subspan(0, 2));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].tokens.size(), 12u);
  EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
}

// A job stopped while a prompt is prefilled in chunks: only the chunks computed before the stop
// may be shared by a later call (none here: the first chunk fills no block), so the same prompt
// gets the tokens of a cold run, not K/V that were never computed.
TEST_F(EnginePagingTest, APromptStoppedMidPrefillLeavesNoUncomputedBlocksToShare) {
  CpuBackend backend(weights_, {});
  LocalStepRunner runner(&backend);
  EngineOptions o;
  o.max_step_tokens = 8;
  Engine engine(&runner, o);
  // A 2-token prompt done in the first step, beside the first 6-token chunk of a 66-token one.
  std::vector<GenerationRequest> requests = Requests(1, 0, 1);
  requests.push_back(Requests(1, 64, 6)[0]);
  requests[1].id = "long";
  const Status s = engine.Generate(requests, [](size_t, GenerationResult) {
    return Status::Cancelled("stopped by the caller");
  });
  EXPECT_EQ(s.code(), StatusCode::kCancelled);
  auto again = engine.Generate(std::span(&requests[1], 1));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(engine.stats().prefix_cached_tokens, 0);
  EXPECT_EQ((*again)[0].tokens, Alone(std::span(&requests[1], 1))[0]);
  EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
}

// A step that fails (a corrupt unit found mid-run) ends the call with its error, every block
// free again; the next call is served.
class FailingRunner : public LocalStepRunner {
 public:
  FailingRunner(ForwardBackend* backend, int fail_at) : LocalStepRunner(backend), left_(fail_at) {}
  Status Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
              std::span<const SampleSpec> sample) override {
    if (left_-- == 0) return Status::Corruption("model_layers_1.safetensors: a corrupt unit");
    return LocalStepRunner::Step(steps, greedy_only, out, sample);
  }

 private:
  int left_;
};

TEST_F(EnginePagingTest, AFailedStepLeavesEveryBlockFree) {
  CpuBackend backend(weights_, {});
  FailingRunner runner(&backend, 5);
  EngineOptions o;
  o.batch_size = 3;
  o.kv_tokens = 5 * 16;
  Engine engine(&runner, o);
  const std::vector<GenerationRequest> requests = Requests(6, 20, 12);
  auto failed = engine.Generate(requests);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("corrupt unit"), std::string::npos);
  EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
  EXPECT_EQ(engine.kv_blocks()->open_sequences(), 0);
  auto again = engine.Generate(std::span(requests).subspan(0, 2));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)[1].tokens.size(), 12u);
  EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
}

}  // namespace
}  // namespace df11
