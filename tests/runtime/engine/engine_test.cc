// SPDX-License-Identifier: Apache-2.0
// The generation loop on a tiny DF11 model: continuous batching gives every request the tokens it
// gets alone and in static batches, with fewer steps when lengths differ; no more than
// batch_size sequences run at once, every cache is released once; the KV budget holds requests
// back instead of failing them, and refuses the ones that can never fit; prompts longer than the
// step token budget are prefilled in chunks with the same results; results arrive as they
// finish, and a failing callback stops the run; waiting requests get their first token in
// earlier steps with continuous batching; a request the sampler cannot serve gets an error
// naming the field while the others are served; the CPU backend's KV budget is the memory it
// was given.
#include "runtime/engine/engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "runtime/model/model_weights.h"
#include "runtime/model/cpu_backend.h"
#include "tests/common/temp_files.h"
#include "tests/runtime/model/model_test_util.h"

namespace df11 {
namespace {

// The local runner, watched: how many sequences each step holds and which caches come back.
class WatchedRunner : public StepRunner {
 public:
  explicit WatchedRunner(ForwardBackend* backend) : inner_(backend) {}
  int64_t vocab_size() const override { return inner_.vocab_size(); }
  int64_t context_length() const override { return inner_.context_length(); }
  KvCache NewCache(int64_t capacity) override {
    KvCache c = inner_.NewCache(capacity);
    c.slot = next_slot_++;
    live_.insert(c.slot);
    reserved_ += capacity;
    peak_reserved_ = std::max(peak_reserved_, reserved_);
    return c;
  }
  Status Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
              std::span<const SampleSpec> sample) override {
    max_step_ = std::max(max_step_, static_cast<int64_t>(steps.size()));
    max_step_tokens_ = std::max(max_step_tokens_, TotalTokens(steps));
    for (const SequenceStep& s : steps) EXPECT_TRUE(live_.count(s.cache->slot)) << s.cache->slot;
    return inner_.Step(steps, greedy_only, out, sample);
  }
  void Release(const KvCache& cache) override {
    EXPECT_EQ(live_.erase(cache.slot), 1u) << "slot " << cache.slot << " released twice";
    reserved_ -= cache.capacity;
  }

  int64_t max_step_ = 0;
  int64_t max_step_tokens_ = 0;
  int64_t peak_reserved_ = 0;
  std::set<int64_t> live_;

 private:
  LocalStepRunner inner_;
  int64_t next_slot_ = 0;
  int64_t reserved_ = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_.emplace("df11_engine_test");
    TinyModelOptions o;
    o.vocab = 400;
    o.seed = 21;
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

  // Requests of different lengths; every third one sampled.
  static std::vector<GenerationRequest> Requests(int n) {
    std::vector<GenerationRequest> r(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      r[i].id = "r" + std::to_string(i);
      for (int j = 0; j <= i % 4; ++j) r[i].prompt.push_back(7 + 13 * i + j);
      r[i].max_tokens = 2 + (i * 7) % 11;
      if (i % 3 == 2) {
        r[i].sampling.temperature = 0.9f;
        r[i].sampling.top_p = 0.95f;
        r[i].seed = 100 + i;
      }
    }
    return r;
  }

  struct Run {
    std::vector<GenerationResult> results;
    EngineStats stats;
    int64_t max_step = 0, max_step_tokens = 0, peak_reserved = 0;
    size_t unreleased = 0;
  };
  static Run Generate(std::span<const GenerationRequest> requests, EngineOptions o) {
    CpuBackend t(weights_, {});
    WatchedRunner runner(&t);
    Engine engine(&runner, o);
    auto results = engine.Generate(requests);
    EXPECT_TRUE(results.ok()) << results.status().ToString();
    Run run;
    if (results.ok()) run.results = std::move(results).value();
    run.stats = engine.stats();
    run.max_step = runner.max_step_;
    run.max_step_tokens = runner.max_step_tokens_;
    run.peak_reserved = runner.peak_reserved_;
    run.unreleased = runner.live_.size();
    return run;
  }

  // The same requests with continuous batching and in static batches of batch_size.
  static std::pair<Run, Run> ContinuousAndStatic(std::span<const GenerationRequest> requests,
                                                 int64_t batch_size) {
    EngineOptions o;
    o.batch_size = batch_size;
    Run continuous = Generate(requests, o);
    o.continuous = false;
    return {std::move(continuous), Generate(requests, o)};
  }

  static std::optional<test_support::TempDir> dir_;
  static ModelWeights* weights_;
};
std::optional<test_support::TempDir> EngineTest::dir_;
ModelWeights* EngineTest::weights_ = nullptr;

TEST_F(EngineTest, ContinuousBatchingKeepsEveryRequestsTokensWithFewerSteps) {
  const std::vector<GenerationRequest> requests = Requests(10);
  auto [continuous, fixed] = ContinuousAndStatic(requests, 3);
  ASSERT_EQ(continuous.results.size(), requests.size());
  ASSERT_EQ(fixed.results.size(), requests.size());
  int64_t generated = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerationResult& c = continuous.results[i];
    EXPECT_EQ(c.id, requests[i].id);
    EXPECT_TRUE(c.error.empty()) << c.error;
    EXPECT_EQ(c.tokens, fixed.results[i].tokens) << c.id;
    EXPECT_EQ(c.finish_reason, fixed.results[i].finish_reason) << c.id;
    // Alone, one request at a time.
    EngineOptions alone;
    alone.batch_size = 1;
    Run one = Generate(std::span(requests).subspan(i, 1), alone);
    ASSERT_EQ(one.results.size(), 1u);
    EXPECT_EQ(c.tokens, one.results[0].tokens) << c.id;
    generated += static_cast<int64_t>(c.tokens.size());
  }
  EXPECT_GT(generated, 40);
  // Never more than three sequences in a step, and every cache came back.
  EXPECT_EQ(continuous.max_step, 3);
  EXPECT_EQ(fixed.max_step, 3);
  EXPECT_EQ(continuous.unreleased, 0u);
  EXPECT_EQ(fixed.unreleased, 0u);
  // Short requests no longer wait for long ones: fewer decode steps for the same tokens.
  EXPECT_EQ(continuous.stats.generated_tokens, fixed.stats.generated_tokens);
  EXPECT_LT(continuous.stats.decode_steps, fixed.stats.decode_steps)
      << "continuous " << continuous.stats.decode_steps << ", static " << fixed.stats.decode_steps;
  EXPECT_EQ(fixed.stats.prefill_steps, 4);  // ceil(10 / 3) batches
  EXPECT_GT(continuous.stats.prefill_steps, 4);
}

// Time to first token, counted from the start of the run (waiting for a place included): in
// static batches a request's first token comes in the step that admits its batch; continuous
// batching admits waiting requests as places free up, so they get it in earlier steps. Every
// served request is timed once in the stats, first token before finish.
TEST_F(EngineTest, ContinuousBatchingGivesWaitingRequestsTheirFirstTokenSooner) {
  const std::vector<GenerationRequest> requests = Requests(10);
  auto [continuous, fixed] = ContinuousAndStatic(requests, 3);
  int64_t continuous_steps = 0, fixed_steps = 0;
  for (const Run* run : {&continuous, &fixed}) {
    ASSERT_EQ(run->results.size(), requests.size());
    ASSERT_EQ(run->stats.first_token_seconds.size(), requests.size());
    ASSERT_EQ(run->stats.finish_seconds.size(), requests.size());
    for (const GenerationResult& r : run->results) {
      EXPECT_GE(r.first_token_step, 0) << r.id;
      EXPECT_GE(r.first_token_seconds, 0) << r.id;
      EXPECT_GE(r.finish_seconds, r.first_token_seconds) << r.id;
    }
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    if (i < 3) {  // the first batch: its prompts are the first step
      EXPECT_EQ(continuous.results[i].first_token_step, 0);
      EXPECT_EQ(fixed.results[i].first_token_step, 0);
    }
    EXPECT_LE(continuous.results[i].first_token_step, fixed.results[i].first_token_step)
        << requests[i].id;
    continuous_steps += continuous.results[i].first_token_step;
    fixed_steps += fixed.results[i].first_token_step;
  }
  EXPECT_LT(continuous_steps, fixed_steps);
  // A static batch starts in the step after the previous batch's last token.
  int64_t last_of_first_batch = 0;
  for (size_t i = 0; i < 3; ++i) {
    last_of_first_batch = std::max<int64_t>(
        last_of_first_batch, static_cast<int64_t>(fixed.results[i].tokens.size()) - 1);
  }
  EXPECT_GE(fixed.results[3].first_token_step, last_of_first_batch + 1);
  // A prompt prefilled 2 tokens a step gives its first token in the step of its last chunk.
  std::vector<GenerationRequest> one(1);
  one[0].prompt = {11, 12, 13, 14, 15};
  one[0].max_tokens = 3;
  EngineOptions chunked;
  chunked.batch_size = 1;
  chunked.max_step_tokens = 2;
  Run c = Generate(one, chunked);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].first_token_step, 2);  // chunks of 2, 2, 1
}

// Past EngineOptions::latency_samples requests the stats keep a sample of that many (pairs of
// one request's first-token and finish times), however many are served.
TEST_F(EngineTest, LatencyStatsStayBoundedAsASampleOfTheRequests) {
  const std::vector<GenerationRequest> requests = Requests(10);
  EngineOptions o;
  o.batch_size = 3;
  o.latency_samples = 4;
  Run run = Generate(requests, o);
  ASSERT_EQ(run.results.size(), requests.size());
  EXPECT_EQ(run.stats.served_requests, 10);
  ASSERT_EQ(run.stats.first_token_seconds.size(), 4u);
  ASSERT_EQ(run.stats.finish_seconds.size(), 4u);
  std::set<std::pair<double, double>> served;
  for (const GenerationResult& r : run.results) {
    served.insert({r.first_token_seconds, r.finish_seconds});
  }
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(served.count({run.stats.first_token_seconds[i], run.stats.finish_seconds[i]}))
        << "sample " << i << " is not one request's pair";
  }
}

TEST(EngineQuantile, NearestRank) {
  EXPECT_EQ(Quantile({}, 0.5), 0);
  EXPECT_EQ(Quantile({3, 1, 2, 4}, 0.5), 2);
  EXPECT_EQ(Quantile({3, 1, 2, 4}, 0.9), 4);
  EXPECT_EQ(Quantile({3, 1, 2, 4}, 0), 1);
  EXPECT_EQ(Quantile({5}, 1), 5);
}

TEST_F(EngineTest, KvBudgetHoldsRequestsBackAndRefusesOnesThatCannotFit) {
  std::vector<GenerationRequest> requests = Requests(6);
  for (auto& r : requests) r.max_tokens = 10;  // each needs prompt (1-4) + 10 KV tokens
  GenerationRequest huge;
  huge.id = "huge";
  huge.prompt = {5, 6, 7};
  huge.max_tokens = 40;  // 43 > the budget
  requests.insert(requests.begin() + 2, huge);
  EngineOptions o;
  o.batch_size = 8;
  o.kv_tokens = 30;  // room for two requests at a time
  Run limited = Generate(requests, o);
  ASSERT_EQ(limited.results.size(), requests.size());
  const GenerationResult& refused = limited.results[2];
  EXPECT_EQ(refused.id, "huge");
  EXPECT_NE(refused.error.find("needs 43 KV cache tokens"), std::string::npos) << refused.error;
  EXPECT_NE(refused.error.find("KV budget of 30 tokens"), std::string::npos) << refused.error;
  EXPECT_LE(limited.peak_reserved, 30);
  EXPECT_LE(limited.stats.peak_kv_tokens, 30);
  EXPECT_EQ(limited.max_step, 2);
  // The others were served in full, as without a budget.
  o.kv_tokens = 0;
  Run free = Generate(requests, o);
  EXPECT_EQ(free.max_step, 7);
  EXPECT_GT(free.stats.peak_kv_tokens, 30);
  for (size_t i = 0; i < requests.size(); ++i) {
    if (i == 2) continue;
    EXPECT_TRUE(limited.results[i].error.empty()) << limited.results[i].error;
    EXPECT_EQ(limited.results[i].tokens, free.results[i].tokens) << requests[i].id;
  }
  EXPECT_EQ(free.results[2].tokens.size(), 40u);
}

TEST_F(EngineTest, LongPromptsArePrefilledInChunksWithinTheStepTokenBudget) {
  std::vector<GenerationRequest> requests = Requests(7);
  for (int i = 0; i < 7; ++i) {  // prompts of 9 to 39 tokens
    requests[i].prompt.clear();
    for (int j = 0; j < 9 + 5 * i; ++j) requests[i].prompt.push_back(11 + (7 * i + 3 * j) % 380);
  }
  EngineOptions o;
  o.batch_size = 3;
  Run whole = Generate(requests, o);
  o.max_step_tokens = 8;
  Run chunked = Generate(requests, o);
  EXPECT_GT(whole.max_step_tokens, 8);
  EXPECT_LE(chunked.max_step_tokens, 8);
  EXPECT_EQ(chunked.unreleased, 0u);
  EXPECT_GT(chunked.stats.prefill_steps, whole.stats.prefill_steps);
  EXPECT_EQ(chunked.stats.prompt_tokens, whole.stats.prompt_tokens);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(chunked.results[i].error.empty()) << chunked.results[i].error;
    // The same tokens, sampled ones included: a chunk's step draws nothing for its sequence.
    EXPECT_EQ(chunked.results[i].tokens, whole.results[i].tokens) << requests[i].id;
  }
}

TEST_F(EngineTest, ResultsArriveAsTheyFinishAndACallbackErrorStopsTheRun) {
  std::vector<GenerationRequest> requests = Requests(4);
  requests[0].max_tokens = 12;
  requests[1].max_tokens = 2;
  requests[2].prompt.clear();  // refused at once
  requests[3].max_tokens = 5;
  CpuBackend t(weights_, {});
  LocalStepRunner runner(&t);
  EngineOptions o;
  o.batch_size = 4;
  Engine engine(&runner, o);
  std::vector<std::string> order;
  Status s = engine.Generate(requests, [&](size_t i, GenerationResult r) {
    EXPECT_EQ(r.id, requests[i].id);
    order.push_back(r.id);
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(order, (std::vector<std::string>{"r2", "r1", "r3", "r0"}));

  int delivered = 0;
  s = engine.Generate(requests, [&](size_t, GenerationResult) {
    return ++delivered == 2 ? Status::Internal("disk full") : Status::Ok();
  });
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("disk full"), std::string::npos);
  EXPECT_EQ(delivered, 2);
}

TEST_F(EngineTest, RequestsTheSamplerCannotServeGetAnErrorAndTheOthersAreServed) {
  const std::vector<GenerationRequest> good = Requests(4);
  std::vector<GenerationRequest> requests = good;
  auto bad = [&](const std::string& id, auto set) {
    GenerationRequest r = good[0];
    r.id = id;
    set(&r);
    requests.insert(requests.begin() + 1, r);
  };
  bad("top_p", [](GenerationRequest* r) {
    r->sampling.temperature = 0.7f;
    r->sampling.top_p = 0;
  });
  bad("temperature", [](GenerationRequest* r) { r->sampling.temperature = std::nanf(""); });
  bad("repetition_penalty", [](GenerationRequest* r) {
    r->sampling.repetition_penalty = std::numeric_limits<float>::infinity();
  });
  bad("top_k", [](GenerationRequest* r) { r->sampling.top_k = -3; });
  bad("min_p", [](GenerationRequest* r) { r->sampling.min_p = -0.5f; });
  bad("max_tokens", [](GenerationRequest* r) { r->max_tokens = 0; });
  EngineOptions o;
  o.batch_size = 3;
  Run run = Generate(requests, o);
  Run alone = Generate(good, o);
  ASSERT_EQ(run.results.size(), requests.size());
  size_t served = 0;
  for (const GenerationResult& r : run.results) {
    if (served < good.size() && r.id == good[served].id) {
      EXPECT_TRUE(r.error.empty()) << r.id << ": " << r.error;
      EXPECT_EQ(r.tokens, alone.results[served++].tokens) << r.id;
      continue;
    }
    EXPECT_TRUE(r.tokens.empty()) << r.id;
    EXPECT_EQ(r.error.rfind("\"" + r.id + "\" = ", 0), 0u) << r.id << ": " << r.error;
  }
  EXPECT_EQ(served, good.size());
  EXPECT_EQ(run.unreleased, 0u);
}

TEST_F(EngineTest, CpuKvBudgetIsTheMemoryItWasGiven) {
  CpuBackendOptions options;
  EXPECT_EQ(CpuBackend(weights_, options).KvTokenBudget(), 0);  // no limit given
  const ModelConfig& c = weights_->config;
  const int64_t per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 2;
  options.kv_memory_bytes = 50 * per_token + per_token / 2;
  CpuBackend t(weights_, options);
  EXPECT_EQ(t.KvTokenBudget(), 50);
  LocalStepRunner runner(&t);
  EngineOptions o;
  o.kv_tokens = t.KvTokenBudget();
  GenerationRequest r = Requests(1)[0];
  r.max_tokens = 1'000'000'000;  // clamped to the context (96), more than 50 tokens of memory
  auto results = Engine(&runner, o).Generate(std::vector<GenerationRequest>{r});
  ASSERT_TRUE(results.ok());
  // The pool holds whole blocks of 16 positions: 3 of them.
  EXPECT_NE((*results)[0].error.find("more than the KV budget of 48 tokens (3 blocks of 16)"),
            std::string::npos)
      << (*results)[0].error;
}

}  // namespace
}  // namespace df11

namespace df11 {
namespace {

// Gemma 3 (tests/data/hf_models/gemma3_text: windows of 8 on layers 0-2, layer 3 global): a
// sequence of 60 positions keeps 3 x 8 + 60 slots, 21 budget tokens, so a budget of 25 serves
// requests of 30 + 30 tokens one at a time (it would refuse them if every layer kept every
// position), with the tokens of an unlimited run; 26 + 80 positions (33 tokens) is refused,
// the message saying why it counts fewer than its positions. This is the reservation path of the
// runners whose caches are not paged (the CUDA backend's rings, distributed groups); the CPU's
// paged caches keep every position's blocks (engine_paging_test).
class ReservingRunner : public LocalStepRunner {
 public:
  using LocalStepRunner::LocalStepRunner;
  int64_t kv_block_tokens() const override { return 0; }
};

TEST(EngineWindowTest, KvBudgetCountsSlidingWindowLayersByTheirWindow) {
  auto w = LoadModelWeights(std::string(DF11_TEST_DATA_DIR) + "/hf_models/models/gemma3_text");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  CpuBackend backend(&*w, {});
  ReservingRunner runner(&backend);
  EXPECT_EQ(runner.KvTokens(60), 21);
  std::vector<GenerationRequest> requests(3);
  for (int i = 0; i < 3; ++i) {
    requests[i].id = "r" + std::to_string(i);
    for (int j = 0; j < 30; ++j) requests[i].prompt.push_back(3 + (17 * i + 5 * j) % 500);
    requests[i].max_tokens = 30;
  }
  GenerationRequest too_long = requests[0];
  too_long.id = "long";
  too_long.prompt.resize(26);
  too_long.max_tokens = 80;
  requests.push_back(too_long);
  EngineOptions o;
  o.batch_size = 4;
  o.kv_tokens = 25;
  auto limited = Engine(&runner, o).Generate(requests);
  ASSERT_TRUE(limited.ok()) << limited.status().ToString();
  o.kv_tokens = 0;
  auto free = Engine(&runner, o).Generate(requests);
  ASSERT_TRUE(free.ok()) << free.status().ToString();
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE((*limited)[i].error.empty()) << (*limited)[i].error;
    EXPECT_FALSE((*limited)[i].tokens.empty());
    EXPECT_EQ((*limited)[i].tokens, (*free)[i].tokens) << requests[i].id;
  }
  const std::string& error = (*limited)[3].error;
  EXPECT_NE(error.find("needs 33 KV cache tokens (prompt 26 + max_tokens 80, sliding-window "
                       "layers keeping only their window)"),
            std::string::npos)
      << error;
}

}  // namespace
}  // namespace df11
