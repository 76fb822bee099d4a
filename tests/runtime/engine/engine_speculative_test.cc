// SPDX-License-Identifier: Apache-2.0
// Speculative decoding by prompt lookup in the generation loop, on a tiny DF11 model and the
// CPU backend's paged cache: greedy requests get exactly the tokens they get without drafts, at
// batch 1 and 8, with drafts accepted (fewer steps) and rejected (their blocks given back);
// sampled requests get the same tokens with and without drafts for their seeds, and again on a
// second run; a batch that mixes drafting, opted-out, sampled and chunked-prefill sequences
// keeps every request's tokens; a runner that cannot verify drafts is refused by name. Draft
// models: the target itself (BF16 or DF11) has every greedy draft accepted, models of another
// seed or architecture (which disagree on every token) leave the greedy tokens exact; a draft
// model of another vocabulary or a sharded directory is refused naming it.
#include <gtest/gtest.h>

#include <optional>

#include "runtime/engine/draft_model.h"
#include "runtime/engine/engine.h"
#include "runtime/model/cpu_backend.h"
#include "runtime/model/model_weights.h"
#include "tests/common/temp_files.h"
#include "tests/runtime/engine/engine_run.h"
#include "tests/runtime/model/model_test_util.h"

namespace df11 {
namespace {

class EngineSpeculativeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_.emplace("df11_engine_speculative_test");
    TinyModelOptions o;
    o.vocab = 300;
    o.seed = 41;
    o.max_position_embeddings = 160;
    auto [bf16, df11] = model_testing::MakeBf16AndDf11(dir_->path(), o, "m");
    bf16_ = bf16;
    df11_ = df11;
    o.seed = 42;
    other_seed_ = model_testing::MakeBf16AndDf11(dir_->path(), o, "other").second;
    o.arch = "qwen3";
    o.layers = 1;
    other_arch_ = model_testing::MakeBf16AndDf11(dir_->path(), o, "qwen3").first;
    o.vocab = 320;
    other_vocab_ = model_testing::MakeBf16AndDf11(dir_->path(), o, "vocab320").first;
    auto w = LoadModelWeights(df11);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    weights_ = new ModelWeights(std::move(w).value());
  }
  static void TearDownTestSuite() {
    delete weights_;
    dir_.reset();
  }

  // n requests of 40 new tokens; prompts of 6..13 tokens that repeat a phrase, so that lookup
  // finds drafts from the first decode step.
  static std::vector<GenerationRequest> Requests(int n, float temperature = 0) {
    std::vector<GenerationRequest> r(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      r[i].id = "r" + std::to_string(i);
      for (int rep = 0; rep < 2; ++rep) {
        for (int j = 0; j < 3 + i % 4; ++j) r[i].prompt.push_back(7 + 13 * i + 5 * j);
      }
      r[i].prompt.push_back(200 + i);
      r[i].max_tokens = 40;
      r[i].sampling.temperature = temperature;
      r[i].seed = 1000 + i;
    }
    return r;
  }

  using Run = test_support::EngineRun;
  static Run Generate(std::span<const GenerationRequest> requests, EngineOptions o) {
    CpuBackend backend(weights_, {});
    LocalStepRunner runner(&backend);
    Engine engine(&runner, o);
    return test_support::RunEngine(engine, requests);
  }
  static EngineOptions Options(int64_t batch, bool speculative) {
    EngineOptions o;
    o.batch_size = batch;
    if (speculative) o.speculative.method = SpeculativeOptions::Method::kPromptLookup;
    return o;
  }

  // The requests through a draft model loaded from `dir`.
  static Run GenerateWithDraft(std::span<const GenerationRequest> requests, int64_t batch,
                               const std::string& dir) {
    auto drafter = DraftModelDrafter::Load(dir, weights_->config.vocab_size, {});
    EXPECT_TRUE(drafter.ok()) << drafter.status().ToString();
    if (!drafter.ok()) return {};
    EngineOptions o = Options(batch, false);
    o.speculative.method = SpeculativeOptions::Method::kDraftModel;
    o.speculative.draft_model = dir;
    CpuBackend backend(weights_, {});
    LocalStepRunner runner(&backend);
    Engine engine(&runner, o, {}, drafter->get());
    return test_support::RunEngine(engine, requests);
  }

  static std::optional<test_support::TempDir> dir_;
  static ModelWeights* weights_;
  static std::string bf16_, df11_, other_seed_, other_arch_, other_vocab_;
};
std::optional<test_support::TempDir> EngineSpeculativeTest::dir_;
ModelWeights* EngineSpeculativeTest::weights_ = nullptr;
std::string EngineSpeculativeTest::bf16_, EngineSpeculativeTest::df11_,
    EngineSpeculativeTest::other_seed_, EngineSpeculativeTest::other_arch_,
    EngineSpeculativeTest::other_vocab_;

TEST_F(EngineSpeculativeTest, GreedyTokensAreTheSameWithAndWithoutDraftsAtBatch1And8) {
  const std::vector<GenerationRequest> requests = Requests(8);
  const Run plain = Generate(requests, Options(8, false));
  for (const int64_t batch : {1, 8}) {
    const Run spec = Generate(requests, Options(batch, true));
    ASSERT_EQ(spec.results.size(), requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      EXPECT_TRUE(spec.results[i].error.empty()) << spec.results[i].error;
      EXPECT_EQ(spec.results[i].tokens, plain.results[i].tokens) << "batch " << batch << " "
                                                                 << requests[i].id;
      EXPECT_TRUE(spec.results[i].speculative);
      EXPECT_FALSE(plain.results[i].speculative);
    }
    // Drafts were both accepted and rejected, and accepted ones saved steps.
    EXPECT_GT(spec.stats.accepted_tokens, 0) << "batch " << batch;
    EXPECT_LT(spec.stats.accepted_tokens, spec.stats.draft_tokens) << "batch " << batch;
    EXPECT_GT(spec.stats.speculative_tokens, spec.stats.speculative_steps) << "batch " << batch;
    EXPECT_EQ(spec.stats.generated_tokens, plain.stats.generated_tokens);
    EXPECT_LT(spec.stats.decode_steps + spec.stats.prefill_steps,
              (batch == 1 ? 8 : 1) * (plain.stats.decode_steps + plain.stats.prefill_steps))
        << "batch " << batch;
    EXPECT_EQ(spec.used_after[kFullGroup], 0) << "batch " << batch;
  }
}

TEST_F(EngineSpeculativeTest, SampledTokensAreTheSameWithAndWithoutDraftsForASeed) {
  const std::vector<GenerationRequest> requests = Requests(6, 0.05f);
  const Run plain = Generate(requests, Options(6, false));
  const Run spec = Generate(requests, Options(6, true));
  const Run again = Generate(requests, Options(3, true));
  ASSERT_EQ(spec.results.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(spec.results[i].tokens, plain.results[i].tokens) << requests[i].id;
    EXPECT_EQ(again.results[i].tokens, spec.results[i].tokens) << requests[i].id;
  }
  EXPECT_GT(spec.stats.accepted_tokens, 0) << spec.stats.draft_tokens << " drafted";
  EXPECT_LT(spec.stats.accepted_tokens, spec.stats.draft_tokens);
  // Another seed gives other text (the seed, not the drafts, fixes it).
  std::vector<GenerationRequest> reseeded = requests;
  for (GenerationRequest& r : reseeded) r.seed += 77;
  const Run other = Generate(reseeded, Options(6, true));
  int differ = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    differ += other.results[i].tokens != spec.results[i].tokens ? 1 : 0;
  }
  EXPECT_GT(differ, 0);
}

TEST_F(EngineSpeculativeTest, AMixedBatchKeepsEveryRequestsTokens) {
  // Drafting, opted-out, sampled (with a repetition penalty, which sees the drafts) and long
  // prompts prefilled in chunks beside decoding sequences; small blocks so drafts cross them.
  std::vector<GenerationRequest> requests = Requests(8);
  for (size_t i = 0; i < requests.size(); ++i) {
    if (i % 4 == 1) requests[i].speculative = false;
    if (i % 4 == 2) {
      requests[i].sampling.temperature = 0.9f;
      requests[i].sampling.repetition_penalty = 1.3f;
    }
    if (i % 4 == 3) {
      for (int j = 0; j < 30; ++j) requests[i].prompt.push_back(100 + (j * 7) % 50);
    }
  }
  EngineOptions plain_options = Options(4, false);
  const Run plain = Generate(requests, plain_options);
  EngineOptions o = Options(4, true);
  o.max_step_tokens = 12;
  o.speculative.num_tokens = 6;
  o.speculative.ngram = 2;
  CpuBackendOptions small_blocks;
  small_blocks.forward.kv_block_tokens = 4;
  CpuBackend backend(weights_, small_blocks);
  LocalStepRunner runner(&backend);
  Engine engine(&runner, o);
  auto results = engine.Generate(requests);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerationResult& r = (*results)[i];
    EXPECT_EQ(r.tokens, plain.results[i].tokens) << requests[i].id;
    EXPECT_EQ(r.speculative, requests[i].speculative) << requests[i].id;
    if (!requests[i].speculative) {
      EXPECT_EQ(r.draft_tokens, 0) << requests[i].id;
    }
    EXPECT_LE(r.accepted_tokens, r.draft_tokens);
  }
  EXPECT_GT(engine.stats().accepted_tokens, 0);
  EXPECT_EQ(engine.kv_blocks()->used_blocks(), 0);
}

// A runner over a backend that returns one row of logits per sequence (a backend without
// ForwardBackend::VerifiesDrafts).
class OneRowRunner : public LocalStepRunner {
 public:
  using LocalStepRunner::LocalStepRunner;
  bool verifies_drafts() const override { return false; }
};

TEST_F(EngineSpeculativeTest, ARunnerThatCannotVerifyDraftsIsRefusedByName) {
  CpuBackend backend(weights_, {});
  OneRowRunner runner(&backend);
  Engine engine(&runner, Options(2, true));
  const std::vector<GenerationRequest> requests = Requests(1);
  auto results = engine.Generate(requests);
  ASSERT_FALSE(results.ok());
  EXPECT_EQ(results.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(results.status().message().find("--speculative"), std::string::npos)
      << results.status().message();
}

TEST_F(EngineSpeculativeTest, TheTargetAsDraftModelHasEveryGreedyDraftAccepted) {
  const std::vector<GenerationRequest> requests = Requests(8);
  const Run plain = Generate(requests, Options(8, false));
  for (const int64_t batch : {1, 8}) {
    for (const std::string& dir : {df11_, bf16_}) {
      const Run spec = GenerateWithDraft(requests, batch, dir);
      ASSERT_EQ(spec.results.size(), requests.size());
      for (size_t i = 0; i < requests.size(); ++i) {
        EXPECT_EQ(spec.results[i].tokens, plain.results[i].tokens) << dir << " " << requests[i].id;
      }
      EXPECT_GT(spec.stats.draft_tokens, 0) << dir;
      EXPECT_EQ(spec.stats.accepted_tokens, spec.stats.draft_tokens) << dir << " batch " << batch;
      EXPECT_EQ(spec.used_after[kFullGroup], 0);
    }
  }
}

TEST_F(EngineSpeculativeTest, DraftModelsThatDisagreeLeaveTheGreedyTokensExact) {
  std::vector<GenerationRequest> requests = Requests(8);
  requests[5].sampling.temperature = 0.05f;  // and a sampled one keeps its seed's tokens
  const Run plain = Generate(requests, Options(8, false));
  for (const std::string& dir : {other_seed_, other_arch_}) {
    const Run spec = GenerateWithDraft(requests, 8, dir);
    ASSERT_EQ(spec.results.size(), requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      EXPECT_EQ(spec.results[i].tokens, plain.results[i].tokens) << dir << " " << requests[i].id;
    }
    EXPECT_GT(spec.stats.draft_tokens, 100) << dir;
    EXPECT_EQ(spec.stats.accepted_tokens, 0) << dir;
    EXPECT_EQ(spec.used_after[kFullGroup], 0);
  }
}

TEST_F(EngineSpeculativeTest, ADraftModelOfAnotherVocabularyIsRefusedNamingIt) {
  auto drafter = DraftModelDrafter::Load(other_vocab_, weights_->config.vocab_size, {});
  ASSERT_FALSE(drafter.ok());
  EXPECT_EQ(drafter.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(drafter.status().message().find(other_vocab_), std::string::npos)
      << drafter.status().message();
  EXPECT_NE(drafter.status().message().find("vocab_size 320, the target model 300"),
            std::string::npos)
      << drafter.status().message();
  auto missing = DraftModelDrafter::Load(dir_->path() + "/none", 300, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--speculative draft:"), std::string::npos)
      << missing.status().message();
}

}  // namespace
}  // namespace df11
