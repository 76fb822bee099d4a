// SPDX-License-Identifier: Apache-2.0
// CudaBackend on tiny models made here (skips without a CUDA device): DF11 logits equal the BF16
// model's bit for bit; greedy tokens follow the CPU CpuBackend's; logits are close to the CPU's;
// decode overlap and CUDA graphs change nothing; device sampling draws what SampleRef draws from
// the same logits; a corrupt DF11 stream is an error Status; served as ew4 (fused GEMV steps,
// tensor-core GEMM steps of 9-256 tokens, decode-to-scratch prefills above), BF16 and DF11
// sources give bit-identical logits, close to BF16's (equal to them above 256 tokens).
#include "runtime/model/cuda_backend.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <tuple>

#include "kernels/sampling/sampling.h"
#include "runtime/convert/compress.h"
#include "runtime/formats/tiny_model.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/cpu_backend.h"
#include "runtime/model/weight_transcode.h"
#include "tests/common/temp_files.h"
#include "tests/runtime/model/model_test_util.h"

namespace df11 {
namespace {

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      GTEST_SKIP() << "no CUDA device";
    }
  }

  // Makes a model and its DF11 copy; returns {bf16_dir, df11_dir}.
  std::pair<std::string, std::string> MakePair(TinyModelOptions o, const std::string& name) {
    return model_testing::MakeBf16AndDf11(dir_, o, name);
  }

  static std::unique_ptr<CudaBackend> Cuda(const ModelWeights& w, bool overlap = true,
                                           bool graph = true, double decode_grid_fraction = 1.0,
                                           int64_t max_step_tokens = 64) {
    CudaBackendOptions o;
    o.forward.overlap_decode = overlap;
    o.forward.decode_grid_fraction = decode_grid_fraction;
    o.forward.cuda_graph = graph;
    o.forward.max_step_tokens = max_step_tokens;
    o.lm_head_chunk = 256;  // several chunks for a vocab of 700 or more
    o.forward.gpu_memory_fraction = 0.1;  // a KV pool per backend, several backends at once
    auto b = CudaBackend::Create(&w, o);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(b).value() : nullptr;
  }

  test_support::TempDir tmp_{"df11_cuda_backend_test"};
  const std::string dir_ = tmp_.path();
};

TinyModelOptions Small(uint64_t seed) {
  TinyModelOptions o;
  o.layers = 3;
  o.hidden = 128;
  o.intermediate = 256;
  o.vocab = 700;
  o.seed = seed;
  return o;
}

// Greedy decoding of a batch: step 0 prefills every prompt (logits of all positions when
// all_tokens), then `steps` - 1 decode steps. Returns every step's logits.
std::vector<std::vector<float>> RunGreedy(ForwardBackend& f,
                                          const std::vector<std::vector<int32_t>>& prompts,
                                          int steps, bool all_tokens = false) {
  std::vector<KvCache> caches;
  for (const auto& p : prompts) caches.push_back(f.NewCache(static_cast<int64_t>(p.size()) + steps));
  std::vector<std::vector<int32_t>> next = prompts;
  std::vector<std::vector<float>> all;
  const int64_t V = f.weights().dims.vocab_rows;
  for (int i = 0; i < steps; ++i) {
    std::vector<SequenceStep> batch;
    for (size_t s = 0; s < prompts.size(); ++s) batch.push_back({&caches[s], next[s]});
    std::vector<float> logits;
    Status st = f.Forward(batch, all_tokens && i == 0, &logits);
    EXPECT_TRUE(st.ok()) << st.ToString();
    if (!st.ok()) break;
    // The last row of each sequence's block picks its next token.
    int64_t row = 0;
    for (size_t s = 0; s < prompts.size(); ++s) {
      row += all_tokens && i == 0 ? static_cast<int64_t>(next[s].size()) : 1;
      next[s] = {ArgmaxRef(logits.data() + (row - 1) * V, V)};
    }
    all.push_back(std::move(logits));
  }
  return all;
}

TEST_F(CudaBackendTest, Df11LogitsAreBitIdenticalToBf16) {
  struct Case {
    const char* name;
    TinyModelOptions o;
  };
  std::vector<Case> cases(4, {"", Small(99)});
  cases[0].name = "llama";
  cases[1].name = "qwen2_tied";
  cases[1].o.arch = "qwen2";
  cases[1].o.tie_embeddings = true;
  cases[2].name = "qwen3";
  cases[2].o.arch = "qwen3";
  cases[2].o.head_dim = 32;
  cases[3].name = "mistral";
  cases[3].o.arch = "mistral";
  cases[3].o.kv_heads = 1;
  for (Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto [bf16_dir, df11_dir] = MakePair(c.o, c.name);
    auto bf16 = LoadModelWeights(bf16_dir);
    auto df11 = LoadModelWeights(df11_dir);
    ASSERT_TRUE(bf16.ok() && df11.ok());
    ASSERT_TRUE(df11->layers[0].q.compressed());
    auto gb = Cuda(*bf16), gd = Cuda(*df11);
    ASSERT_TRUE(gb && gd);
    const std::vector<std::vector<int32_t>> prompts = {{1, 17, 400, 3, 699, 250, 7, 7, 9}, {5, 6}};
    auto lb = RunGreedy(*gb, prompts, 6, true);
    auto ld = RunGreedy(*gd, prompts, 6, true);
    ASSERT_EQ(lb.size(), ld.size());
    for (size_t i = 0; i < lb.size(); ++i) {
      ASSERT_EQ(lb[i].size(), ld[i].size());
      EXPECT_EQ(std::memcmp(lb[i].data(), ld[i].data(), 4 * lb[i].size()), 0) << "step " << i;
    }
    EXPECT_EQ(gd->ScratchBytes() > 0, true);
  }
}

TEST_F(CudaBackendTest, Ew4FromBf16AndFromDf11GiveBitIdenticalLogits) {
  TinyModelOptions o = Small(41);
  o.arch = "qwen2";
  o.tie_embeddings = true;  // an ew4 embedding rows decoded and an ew4 LM head, one storage
  o.intermediate = 320;
  o.vocab = 1500;
  auto [bf16_dir, df11_dir] = MakePair(o, "ew4");
  auto as_ew4 = [](const std::string& dir) {
    auto w = LoadModelWeights(dir);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    TranscodeReport report;
    EXPECT_TRUE(TranscodeWeights(&*w, WeightCodec::kEw4, 2, &report).ok());
    EXPECT_TRUE(report.kept.empty()) << report.Format();
    return std::move(w).value();
  };
  const ModelWeights from_bf16 = as_ew4(bf16_dir), from_df11 = as_ew4(df11_dir);
  auto plain = LoadModelWeights(bf16_dir);
  ASSERT_TRUE(plain.ok());
  ASSERT_EQ(from_df11.layers[0].q.codec, WeightCodec::kEw4);
  // Steps of up to 320 tokens, so a prefill can go past the tensor-core GEMM's 256.
  auto ga = Cuda(from_bf16, true, true, 1.0, 320), gb = Cuda(from_df11, true, true, 1.0, 320);
  auto gp = Cuda(*plain, true, true, 1.0, 320);
  ASSERT_TRUE(ga && gb && gp);
  std::vector<int32_t> long_prompt(300), short_prompt(30);
  for (size_t i = 0; i < long_prompt.size(); ++i) {
    long_prompt[i] = static_cast<int32_t>(i * 7 % 1500);
  }
  for (size_t i = 0; i < short_prompt.size(); ++i) {
    short_prompt[i] = static_cast<int32_t>(i * 13 % 1500);
  }
  // A 302-token prefill (decode to scratch + cuBLAS, as BF16 multiplies) or a 33-token one (the
  // tensor-core GEMM), then a batch of 2 decoding (the fused GEMV).
  for (const auto& prompts : {std::vector<std::vector<int32_t>>{long_prompt, {5, 6}},
                              std::vector<std::vector<int32_t>>{short_prompt, {5, 6, 8}}}) {
    const bool past_256 = prompts[0].size() > 256;
    SCOPED_TRACE(past_256 ? "302-token prefill" : "33-token prefill");
    const auto la = RunGreedy(*ga, prompts, 6, true), lb = RunGreedy(*gb, prompts, 6, true);
    const auto lp = RunGreedy(*gp, prompts, 6, true);
    ASSERT_EQ(la.size(), lb.size());
    ASSERT_EQ(la.size(), lp.size());
    for (size_t i = 0; i < la.size(); ++i) {
      ASSERT_EQ(la[i].size(), lb[i].size());
      EXPECT_EQ(std::memcmp(la[i].data(), lb[i].data(), 4 * la[i].size()), 0) << "step " << i;
    }
    if (past_256) {
      EXPECT_EQ(std::memcmp(la[0].data(), lp[0].data(), 4 * la[0].size()), 0) << "prefill";
    }
    for (size_t i = past_256 ? 1 : 0; i < la.size(); ++i) {
      float scale = 0, diff = 0;
      for (size_t j = 0; j < la[i].size(); ++j) {
        scale = std::max(scale, std::fabs(lp[i][j]));
        diff = std::max(diff, std::fabs(la[i][j] - lp[i][j]));
      }
      EXPECT_LT(diff, 1e-3f * scale) << "step " << i;
    }
  }
}

TEST_F(CudaBackendTest, GreedyTokensFollowTheCpu) {
  auto [bf16_dir, df11_dir] = MakePair(Small(7), "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  auto gpu = Cuda(*w);
  ASSERT_TRUE(gpu);
  CpuBackend cpu(&*w, {});
  const std::vector<std::vector<int32_t>> prompts = {{3, 4, 5, 6, 7, 8, 9}, {100, 200}};
  const int steps = 16;
  const int64_t V = w->dims.vocab_rows;
  std::vector<KvCache> gc, cc;
  for (const auto& p : prompts) {
    gc.push_back(gpu->NewCache(static_cast<int64_t>(p.size()) + steps));
    cc.push_back(cpu.NewCache(static_cast<int64_t>(p.size()) + steps));
  }
  // The GPU decodes greedily; the CPU is fed the same tokens. The GPU rounds activations to BF16
  // before its GEMMs, so a token may differ only where the CPU's top two logits nearly tie.
  std::vector<std::vector<int32_t>> next = prompts;
  int differ = 0;
  for (int i = 0; i < steps; ++i) {
    std::vector<SequenceStep> gs, cs;
    for (size_t s = 0; s < prompts.size(); ++s) {
      gs.push_back({&gc[s], next[s]});
      cs.push_back({&cc[s], next[s]});
    }
    std::vector<int32_t> ids;
    ASSERT_TRUE(gpu->ForwardArgmax(gs, &ids).ok());
    std::vector<float> logits;
    ASSERT_TRUE(cpu.Forward(cs, false, &logits).ok());
    ASSERT_EQ(ids.size(), prompts.size());
    for (size_t s = 0; s < prompts.size(); ++s) {
      const float* row = logits.data() + s * V;
      const int32_t want = ArgmaxRef(row, V);
      if (ids[s] != want) {
        ++differ;
        float scale = 0;
        for (int64_t j = 0; j < V; ++j) scale = std::max(scale, std::fabs(row[j]));
        EXPECT_LE(row[want] - row[ids[s]], 1e-2f * scale)
            << "step " << i << " sequence " << s << ": GPU " << ids[s] << ", CPU " << want;
      }
      next[s] = {ids[s]};
    }
  }
  EXPECT_LE(differ, 2) << "near-ties should be rare";
}

TEST_F(CudaBackendTest, LogitsAreCloseToTheCpu) {
  for (const char* arch : {"llama", "qwen2", "qwen3"}) {
    SCOPED_TRACE(arch);
    TinyModelOptions o = Small(11);
    o.arch = arch;
    auto [bf16_dir, df11_dir] = MakePair(o, arch);
    auto w = LoadModelWeights(df11_dir);
    ASSERT_TRUE(w.ok());
    auto gpu = Cuda(*w);
    ASSERT_TRUE(gpu);
    CpuBackend cpu(&*w, {});
    const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {42}};
    auto lg = RunGreedy(*gpu, prompts, 4, true);
    auto lc = RunGreedy(cpu, prompts, 1, true);
    ASSERT_FALSE(lg.empty());
    ASSERT_EQ(lg[0].size(), lc[0].size());
    double max_err = 0, max_ref = 0;
    for (size_t j = 0; j < lc[0].size(); ++j) {
      max_err = std::max(max_err, std::fabs(static_cast<double>(lg[0][j]) - lc[0][j]));
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(lc[0][j])));
    }
    EXPECT_LT(max_err, 2e-2 * max_ref) << "max |gpu - cpu| " << max_err << ", max |cpu| " << max_ref;
  }
}

TEST_F(CudaBackendTest, OverlapAndGraphsDoNotChangeLogits) {
  auto [bf16_dir, df11_dir] = MakePair(Small(5), "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7, 8}, {9, 10, 11}};
  std::vector<std::vector<float>> reference;
  // (overlap, graph, share of the decode grid for overlapped decodes): one CUDA block is enough.
  const std::vector<std::tuple<bool, bool, double>> configs = {
      {false, false, 1.0}, {false, true, 1.0}, {true, false, 1.0}, {true, true, 1.0},
      {true, true, 1e-6}};
  for (const auto& [overlap, graph, fraction] : configs) {
    {
      SCOPED_TRACE(std::string("overlap ") + (overlap ? "on" : "off") + ", graph " +
                   (graph ? "on" : "off") + ", decode grid fraction " + std::to_string(fraction));
      auto gpu = Cuda(*w, overlap, graph, fraction);
      ASSERT_TRUE(gpu);
      auto logits = RunGreedy(*gpu, prompts, 8);
      if (graph) {
        EXPECT_GT(gpu->graph_replays(), 0) << "steady decode steps should replay a graph";
      } else {
        EXPECT_EQ(gpu->graph_replays(), 0);
      }
      if (reference.empty()) {
        reference = logits;
        continue;
      }
      ASSERT_EQ(logits.size(), reference.size());
      for (size_t i = 0; i < logits.size(); ++i) {
        ASSERT_EQ(logits[i].size(), reference[i].size());
        EXPECT_EQ(std::memcmp(logits[i].data(), reference[i].data(), 4 * logits[i].size()), 0)
            << "step " << i;
      }
    }
  }
}

// Continuous batching replaces a finished sequence by a new one: the decode steps after the swap
// have the old shape (one token per sequence), so they replay the graph captured before it, and
// the batched attention must then read the new sequence's cache. Same logits as without graphs.
TEST_F(CudaBackendTest, GraphServesTheBatchAfterASequenceIsReplaced) {
  auto [bf16_dir, df11_dir] = MakePair(Small(12), "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  auto run = [&](CudaBackend& f) {
    KvCache a = f.NewCache(32), b = f.NewCache(32), c = f.NewCache(32);
    std::vector<std::vector<float>> all;
    // One step of two sequences with their new tokens.
    auto step = [&](KvCache* x, std::vector<int32_t> xt, KvCache* y, std::vector<int32_t> yt) {
      const std::vector<SequenceStep> batch = {{x, xt}, {y, yt}};
      std::vector<float> logits;
      const Status st = f.Forward(batch, false, &logits);
      EXPECT_TRUE(st.ok()) << st.ToString();
      all.push_back(std::move(logits));
    };
    step(&a, {1, 2, 3, 4}, &b, {9, 8});
    for (int32_t t : {11, 12, 13}) step(&a, {t}, &b, {t + 100});
    step(&a, {14}, &c, {600, 601, 602});  // b finished; c's prompt rides along
    for (int32_t t : {15, 16, 17}) step(&a, {t}, &c, {t + 200});
    EXPECT_EQ(a.length, 4 + 3 + 1 + 3);
    EXPECT_EQ(c.length, 3 + 3);
    return all;
  };
  auto graphed = Cuda(*w, true, true), plain = Cuda(*w, true, false);
  ASSERT_TRUE(graphed && plain);
  const auto expected = run(*plain);
  const auto got = run(*graphed);
  // Decode steps 2-3 before the swap and all three after it replay the one captured graph.
  EXPECT_EQ(graphed->graph_captures(), 1);
  EXPECT_EQ(graphed->graph_replays(), 5);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), expected[i].size());
    EXPECT_EQ(std::memcmp(got[i].data(), expected[i].data(), 4 * got[i].size()), 0) << "step " << i;
  }
}

TEST_F(CudaBackendTest, GreedyFastPathMatchesLogits) {
  auto [bf16_dir, df11_dir] = MakePair(Small(8), "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  auto a = Cuda(*w), b = Cuda(*w);
  ASSERT_TRUE(a && b);
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4}, {5, 6}};
  auto logits = RunGreedy(*a, prompts, 6);
  std::vector<KvCache> caches;
  for (const auto& p : prompts) caches.push_back(b->NewCache(static_cast<int64_t>(p.size()) + 6));
  std::vector<std::vector<int32_t>> next = prompts;
  const int64_t V = w->dims.vocab_rows;
  for (int i = 0; i < 6; ++i) {
    std::vector<SequenceStep> steps;
    for (size_t s = 0; s < prompts.size(); ++s) steps.push_back({&caches[s], next[s]});
    std::vector<int32_t> ids;
    ASSERT_TRUE(b->ForwardArgmax(steps, &ids).ok());
    ASSERT_EQ(ids.size(), prompts.size());
    for (size_t s = 0; s < prompts.size(); ++s) {
      EXPECT_EQ(ids[s], ArgmaxRef(logits[i].data() + s * V, V)) << "step " << i;
      next[s] = {ids[s]};
    }
  }
}

TEST_F(CudaBackendTest, DeviceSamplingMatchesSamplingTheLogits) {
  // The device sampler (SampleCuda) against SampleRef on the same backend's logits, step by
  // step with the same inputs; every request's RNG state advances the same way.
  auto [bf16_dir, df11_dir] = MakePair(Small(9), "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  auto a = Cuda(*w), b = Cuda(*w);
  ASSERT_TRUE(a && b);
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4}, {5, 6}, {7, 8, 9, 10}};
  const SamplingParams params[] = {
      {0.9f, 0, 1.0f, 0.0f, 1.0f}, {0.7f, 20, 0.9f, 0.0f, 1.2f}, {0.0f, 0, 1.0f, 0.0f, 1.3f},
      {1.3f, 0, 0.8f, 0.05f, 1.0f}};
  const int steps = 8;
  std::vector<KvCache> ca, cb;
  for (const auto& p : prompts) {
    ca.push_back(a->NewCache(static_cast<int64_t>(p.size()) + steps));
    cb.push_back(b->NewCache(static_cast<int64_t>(p.size()) + steps));
  }
  std::vector<std::vector<int32_t>> next = prompts, history = prompts;
  std::vector<uint64_t> rng = {11, 22, 33, 44};
  const int64_t V = w->dims.vocab_rows;
  int differ = 0, drawn = 0;
  for (int i = 0; i < steps; ++i) {
    std::vector<SequenceStep> sa, sb;
    std::vector<SampleSpec> specs;
    for (size_t s = 0; s < prompts.size(); ++s) {
      sa.push_back({&ca[s], next[s]});
      sb.push_back({&cb[s], next[s]});
      specs.push_back({params[s], rng[s], history[s]});
    }
    std::vector<float> logits;
    ASSERT_TRUE(a->Forward(sa, false, &logits).ok());
    std::vector<int32_t> tokens;
    std::vector<uint64_t> after;
    ASSERT_TRUE(b->ForwardSample(sb, specs, &tokens, &after).ok());
    ASSERT_EQ(tokens.size(), prompts.size());
    for (size_t s = 0; s < prompts.size(); ++s) {
      uint64_t state = rng[s];
      const int32_t expected =
          SampleRef(logits.data() + s * V, V, params[s], history[s].data(),
                    static_cast<int64_t>(history[s].size()), &state);
      EXPECT_EQ(after[s], state) << "step " << i << " sequence " << s << ": RNG state";
      differ += tokens[s] != expected;
      drawn += state != rng[s];
      // Both continue with the reference token so the inputs stay the same.
      next[s] = {expected};
      history[s].push_back(expected);
      rng[s] = state;
    }
  }
  EXPECT_LE(differ, 1) << "tokens may differ only within rounding of a threshold";
  EXPECT_EQ(drawn, 3 * steps) << "three of the four sequences sample";
}

TEST_F(CudaBackendTest, CorruptUnitIsAnErrorNamingTheLayer) {
  auto [bf16_dir, df11_dir] = MakePair(Small(3), "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  const Df11Unit* target = w->layers[1].q.unit;
  ASSERT_NE(target, nullptr);
  // Flip the lowest bit of window 1's gap in a copy of the unit's gaps (passes validation; the
  // decoder finds the mismatch).
  std::vector<uint8_t> gaps;
  for (auto& u : w->units) {
    if (u.get() != target) continue;
    gaps.assign(u->view.gaps, u->view.gaps + u->view.n_gap_bytes);
    const int64_t bit = 1 * kDf11GapBits + kDf11GapBits - 1;
    gaps[bit >> 3] ^= static_cast<uint8_t>(0x80 >> (bit & 7));
    u->view.gaps = gaps.data();
  }
  ASSERT_FALSE(gaps.empty());
  for (bool graph : {false, true}) {
    auto gpu = Cuda(*w, true, graph);
    ASSERT_TRUE(gpu);
    KvCache cache = gpu->NewCache(8);
    const std::vector<int32_t> prompt = {1, 2, 3};
    SequenceStep step{&cache, prompt};
    std::vector<float> logits;
    Status s = gpu->Forward(std::span<const SequenceStep>(&step, 1), false, &logits);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kCorruption);
    EXPECT_NE(s.message().find("layer 1"), std::string::npos) << s.ToString();
  }
}

}  // namespace
}  // namespace df11
