// SPDX-License-Identifier: Apache-2.0
// The CPU forward pass: a DF11 model's logits equal its BF16 original's bit for bit (prefill and
// decode steps), batching and the CPU level do not change a sequence's logits, steps create no
// threads, and a DF11 model holds only its compressed weights plus one layer of scratch.
#include "runtime/model/cpu_backend.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <nlohmann/json.hpp>

#include "kernels/common/cpu_features.h"
#include "kernels/sampling/sampling.h"
#include "runtime/convert/compress.h"
#include "runtime/formats/tiny_model.h"
#include "runtime/model/model_weights.h"
#include "tests/common/temp_files.h"
#include "tests/runtime/model/kv_plan_util.h"
#include "tests/runtime/model/model_test_util.h"

namespace df11 {
namespace {

class CpuBackendTest : public ::testing::Test {
 protected:
  // Makes a model and its DF11 copy; returns {bf16_dir, df11_dir}.
  std::pair<std::string, std::string> MakePair(TinyModelOptions o, const std::string& name) {
    return model_testing::MakeBf16AndDf11(dir_, o, name);
  }

  test_support::TempDir tmp_{"df11_cpu_backend_test"};
  const std::string dir_ = tmp_.path();
};

// Greedy generation of `steps` tokens, recording every step's logits.
std::vector<std::vector<float>> RunGreedy(CpuBackend& t, const std::vector<int32_t>& prompt,
                                          int steps) {
  KvCache cache = t.NewCache(static_cast<int64_t>(prompt.size()) + steps);
  std::vector<std::vector<float>> all;
  std::vector<int32_t> next = prompt;
  for (int i = 0; i < steps; ++i) {
    SequenceStep step{&cache, next};
    std::vector<float> logits;
    Status s = t.Forward(std::span<const SequenceStep>(&step, 1), i == 0, &logits);
    EXPECT_TRUE(s.ok()) << s.ToString();
    const int64_t vocab = t.weights().dims.vocab_rows;
    next = {ArgmaxRef(logits.data() + logits.size() - vocab, vocab)};
    all.push_back(std::move(logits));
  }
  return all;
}

TEST_F(CpuBackendTest, Df11LogitsAreBitIdenticalToBf16) {
  struct Case {
    const char* name;
    TinyModelOptions o;
  };
  std::vector<Case> cases(4);
  cases[0] = {"llama", {}};
  cases[1] = {"qwen2_tied", {}};
  cases[1].o.arch = "qwen2";
  cases[1].o.tie_embeddings = true;
  cases[2] = {"qwen3", {}};
  cases[2].o.arch = "qwen3";
  cases[2].o.head_dim = 32;
  cases[3] = {"mistral", {}};
  cases[3].o.arch = "mistral";
  cases[3].o.kv_heads = 1;
  for (Case& c : cases) {
    SCOPED_TRACE(c.name);
    c.o.hidden = 128;
    c.o.intermediate = 256;
    c.o.vocab = 1500;
    c.o.seed = 99;
    auto [bf16_dir, df11_dir] = MakePair(c.o, c.name);
    auto bf16 = LoadModelWeights(bf16_dir);
    auto df11 = LoadModelWeights(df11_dir);
    ASSERT_TRUE(bf16.ok()) << bf16.status().ToString();
    ASSERT_TRUE(df11.ok()) << df11.status().ToString();
    EXPECT_EQ(bf16->CompressedBytes(), 0);
    EXPECT_GT(df11->CompressedBytes(), 0);
    EXPECT_TRUE(df11->layers[0].q.compressed());
    CpuBackendOptions opts;
    opts.forward.threads = 2;
    CpuBackend tb(&*bf16, opts), td(&*df11, opts);
    const std::vector<int32_t> prompt = {1, 17, 400, 3, 1499, 250, 7, 7, 9};
    auto lb = RunGreedy(tb, prompt, 6);
    auto ld = RunGreedy(td, prompt, 6);
    ASSERT_EQ(lb.size(), ld.size());
    for (size_t i = 0; i < lb.size(); ++i) {
      ASSERT_EQ(lb[i].size(), ld[i].size());
      EXPECT_EQ(std::memcmp(lb[i].data(), ld[i].data(), 4 * lb[i].size()), 0) << "step " << i;
    }
  }
}

TEST_F(CpuBackendTest, ThreadsAndDecodeOverlapDoNotChangeLogits) {
  TinyModelOptions o;
  o.hidden = 128;
  o.intermediate = 256;
  o.vocab = 700;
  o.seed = 5;
  auto [bf16_dir, df11_dir] = MakePair(o, "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  CpuBackendOptions a, b;
  a.forward.threads = 1;
  a.forward.overlap_decode = false;
  b.forward.threads = 2;
  b.forward.overlap_decode = true;
  CpuBackend ta(&*w, a), tb(&*w, b);
  auto la = RunGreedy(ta, {5, 6, 7, 8}, 4);
  auto lb = RunGreedy(tb, {5, 6, 7, 8}, 4);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i;
}

// The whole forward pass (matmuls, attention, LM head) at every CPU level this machine has gives
// the scalar level's logits bit for bit, prefill and decode (an MLP width of 264 leaves a k tail).
TEST_F(CpuBackendTest, EveryCpuLevelGivesTheScalarLogits) {
  TinyModelOptions o;
  o.hidden = 128;
  o.intermediate = 264;
  o.vocab = 900;
  o.seed = 21;
  auto [bf16_dir, df11_dir] = MakePair(o, "levels");
  auto w = LoadModelWeights(bf16_dir);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  CpuBackendOptions opts;
  opts.forward.threads = 2;
  const std::vector<int32_t> prompt = {3, 800, 41, 41, 7, 123, 5, 600, 2, 19, 77, 1, 0, 899, 64,
                                       65, 66, 300, 12};
  const CpuLevel saved = ActiveCpuLevel();
  ASSERT_EQ(SetCpuLevel(CpuLevel::kScalar), CpuLevel::kScalar);
  CpuBackend scalar(&*w, opts);
  const auto want = RunGreedy(scalar, prompt, 5);
  for (int l = 1; l <= static_cast<int>(CpuLevel::kAvx512Bf16); ++l) {
    const CpuLevel level = static_cast<CpuLevel>(l);
    if (SetCpuLevel(level) != level) continue;
    SCOPED_TRACE(CpuLevelName(level));
    CpuBackend t(&*w, opts);
    const auto got = RunGreedy(t, prompt, 5);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got[i].size(), want[i].size());
      EXPECT_EQ(std::memcmp(got[i].data(), want[i].data(), 4 * want[i].size()), 0)
          << "step " << i;
    }
  }
  SetCpuLevel(saved);
}

std::set<std::string> ProcessThreads() {
  std::set<std::string> tids;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    tids.insert(e.path().filename().string());
  }
  return tids;
}

// Forward steps reuse the thread pool and the background decode thread: a thread sampling
// /proc/self/task while 40 steps run sees no thread it did not see before them.
TEST_F(CpuBackendTest, StepsCreateNoThreads) {
  TinyModelOptions o;
  o.layers = 4;
  o.hidden = 128;
  o.intermediate = 256;
  o.vocab = 700;
  auto [bf16_dir, df11_dir] = MakePair(o, "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  CpuBackendOptions options;
  options.forward.threads = 2;
  options.forward.overlap_decode = true;
  CpuBackend t(&*w, options);
  RunGreedy(t, {5, 6, 7, 8}, 2);  // the pool and the background thread exist from here on
  std::atomic<bool> stop{false};
  std::set<std::string> seen;
  std::thread sampler([&] {
    while (!stop.load()) {
      for (const std::string& tid : ProcessThreads()) seen.insert(tid);
    }
  });
  while (seen.empty()) std::this_thread::yield();
  const std::set<std::string> before = ProcessThreads();
  RunGreedy(t, {5, 6, 7, 8}, 40);
  stop = true;
  sampler.join();
  std::vector<std::string> created;
  for (const std::string& tid : seen) {
    if (!before.count(tid)) created.push_back(tid);
  }
  EXPECT_TRUE(created.empty()) << created.size() << " threads appeared during 40 steps";
}

TEST_F(CpuBackendTest, BatchingDoesNotChangeASequencesLogits) {
  TinyModelOptions o;
  o.hidden = 128;
  o.intermediate = 256;
  o.vocab = 700;
  o.seed = 6;
  auto [bf16_dir, df11_dir] = MakePair(o, "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  CpuBackend t(&*w, {});
  const std::vector<int32_t> p1 = {3, 4, 5, 6, 7, 8, 9}, p2 = {100, 200};
  auto alone1 = RunGreedy(t, p1, 5);
  auto alone2 = RunGreedy(t, p2, 5);
  // Both together: prefill in one step, then decode together.
  KvCache c1 = t.NewCache(16), c2 = t.NewCache(16);
  std::vector<int32_t> n1 = p1, n2 = p2;
  const int64_t V = w->dims.vocab_rows;
  for (int i = 0; i < 5; ++i) {
    SequenceStep steps[] = {{&c1, n1}, {&c2, n2}};
    std::vector<float> logits;
    ASSERT_TRUE(t.Forward(steps, false, &logits).ok());
    ASSERT_EQ(static_cast<int64_t>(logits.size()), 2 * V);
    const auto& a1 = alone1[i];
    const auto& a2 = alone2[i];
    // Bit-identical: a row's matmuls, norms and attention never depend on the rows beside it.
    for (int64_t j = 0; j < V; ++j) {
      ASSERT_EQ(logits[j], a1[a1.size() - V + j]) << "step " << i << " token " << j;
      ASSERT_EQ(logits[V + j], a2[a2.size() - V + j]) << "step " << i << " token " << j;
    }
    n1 = {ArgmaxRef(logits.data(), V)};
    n2 = {ArgmaxRef(logits.data() + V, V)};
    EXPECT_EQ(n1[0], ArgmaxRef(a1.data() + a1.size() - V, V));
    EXPECT_EQ(n2[0], ArgmaxRef(a2.data() + a2.size() - V, V));
  }
}

// The KV cache is paged BF16: K/V rows of several sequences spread over blocks of 4 positions,
// ids out of order (blocks given back by dropped caches are reused), give the same logits bit
// for bit as one block per sequence (a contiguous BF16 cache), through prompt chunks that end
// inside and on block edges and decode steps of a batch; with a sliding window too.
TEST_F(CpuBackendTest, PagedKvCacheGivesTheLogitsOfAContiguousBf16Cache) {
  for (const char* arch : {"llama", "mistral"}) {
    SCOPED_TRACE(arch);
    TinyModelOptions o;
    o.arch = arch;
    o.vocab = 300;
    o.seed = 21;
    auto [bf16_dir, df11_dir] = MakePair(o, std::string("paged_") + arch);
    auto w = LoadModelWeights(df11_dir);
    ASSERT_TRUE(w.ok());
    if (std::string(arch) == "mistral") w->config.layer_window.assign(w->layers.size(), 5);
    CpuBackendOptions paged_options, contiguous_options;
    paged_options.forward.kv_block_tokens = 4;
    contiguous_options.forward.kv_block_tokens = 1 << 20;
    CpuBackend paged(&*w, paged_options), contiguous(&*w, contiguous_options);
    {  // Leaves a free list of the 30 blocks in a scrambled order (i * 7 mod 30).
      std::vector<KvCache> dropped;
      for (int i = 0; i < 30; ++i) dropped.push_back(paged.NewCache(4));
      for (size_t i = 0; i < 30; ++i) dropped[i * 7 % 30] = KvCache();
    }
    const int64_t capacity = 40;
    KvCache p[] = {paged.NewCache(capacity), paged.NewCache(capacity), paged.NewCache(capacity)};
    KvCache c[] = {contiguous.NewCache(capacity), contiguous.NewCache(capacity),
                   contiguous.NewCache(capacity)};
    ASSERT_EQ(p[0].blocks.size(), 10u);
    ASSERT_EQ(c[0].blocks.size(), 1u);
    for (const KvCache& cache : p) {
      EXPECT_NE(cache.blocks[1], cache.blocks[0] + 1) << "consecutive block ids: nothing tested";
    }
    // Step by step: (tokens of sequence 0, 1, 2).
    const std::vector<std::vector<std::vector<int32_t>>> steps = {
        {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10}, {11}},
        {{12, 13}, {14, 15, 16, 17, 18, 19, 20, 21, 22}, {23}},
        {{24}, {25}, {26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38}},
        {{39}, {40}, {41}},
        {{42}, {43}, {44}},
    };
    for (size_t i = 0; i < steps.size(); ++i) {
      SequenceStep ps[] = {{&p[0], steps[i][0]}, {&p[1], steps[i][1]}, {&p[2], steps[i][2]}};
      SequenceStep cs[] = {{&c[0], steps[i][0]}, {&c[1], steps[i][1]}, {&c[2], steps[i][2]}};
      std::vector<float> pl, cl;
      ASSERT_TRUE(paged.Forward(ps, true, &pl).ok());
      ASSERT_TRUE(contiguous.Forward(cs, true, &cl).ok());
      ASSERT_EQ(pl.size(), cl.size());
      EXPECT_EQ(std::memcmp(pl.data(), cl.data(), 4 * pl.size()), 0) << "step " << i;
    }
  }
}

// Gemma 3 (windows of 8 on layers 0-2, layer 3 global) with the tables the block manager plans:
// the sliding-window layers' own table, its blocks before the window released as the sequences
// grow (more than 3x the window) and a prompt prefix shared in both groups, give the last-token
// logits of a contiguous BF16 cache bit for bit, step by step over a batch of two.
TEST_F(CpuBackendTest, PagedKvCacheWithASlidingWindowGroupGivesTheLogitsOfAContiguousCache) {
  auto w = LoadModelWeights(std::string(DF11_TEST_DATA_DIR) + "/hf_models/models/gemma3_text");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  CpuBackendOptions paged_options, contiguous_options;
  paged_options.forward.kv_block_tokens = 4;
  contiguous_options.forward.kv_block_tokens = 1 << 20;
  CpuBackend paged(&*w, paged_options), contiguous(&*w, contiguous_options);
  KvBlocks blocks(model_testing::PlannedKvOptions(w->config, 4, 64, /*prefix_caching=*/true));
  ASSERT_EQ(blocks.groups(), 2);
  ASSERT_EQ(blocks.window(), 8);
  const int64_t V = w->config.vocab_size;
  std::vector<int32_t> prompts[2];
  for (int32_t t = 0; t < 14; ++t) prompts[0].push_back(3 + 5 * t);
  prompts[1].assign(prompts[0].begin(), prompts[0].begin() + 12);  // 3 blocks shared
  prompts[1].insert(prompts[1].end(), {200, 201, 202});
  KvCache p[2], c[2] = {contiguous.NewCache(80), contiguous.NewCache(80)};
  auto last_logits = [&](std::span<SequenceStep> steps, CpuBackend& b) {
    std::vector<float> logits;
    EXPECT_TRUE(b.Forward(steps, false, &logits).ok());
    return logits;
  };
  // The prompts one after the other, so the second finds the first's blocks.
  for (int64_t i = 0; i < 2; ++i) {
    const std::vector<int32_t>& prompt = prompts[i];
    const int64_t cached = model_testing::OpenPlanned(&blocks, i, prompt, &p[i]);
    EXPECT_EQ(cached, i == 0 ? 0 : 12);
    const std::span<const int32_t> rest = std::span(prompt).subspan(static_cast<size_t>(cached));
    ASSERT_TRUE(model_testing::PlacePlanned(&blocks, i, rest, &p[i]));
    SequenceStep ps{&p[i], rest}, cs{&c[i], prompt};
    const std::vector<float> pl = last_logits(std::span(&ps, 1), paged);
    const std::vector<float> cl = last_logits(std::span(&cs, 1), contiguous);
    ASSERT_EQ(pl.size(), static_cast<size_t>(V));
    EXPECT_EQ(std::memcmp(pl.data(), cl.data(), 4 * pl.size()), 0) << "prompt " << i;
    blocks.Commit(i);
  }
  for (int step = 0; step < 30; ++step) {
    const std::vector<int32_t> tokens[2] = {{(7 * step + 1) % 500}, {(11 * step + 2) % 500}};
    std::vector<SequenceStep> ps, cs;
    for (int64_t i = 0; i < 2; ++i) {
      ASSERT_TRUE(model_testing::PlacePlanned(&blocks, i, tokens[i], &p[i]));
      ps.push_back({&p[i], tokens[i]});
      cs.push_back({&c[i], tokens[i]});
    }
    const std::vector<float> pl = last_logits(ps, paged), cl = last_logits(cs, contiguous);
    ASSERT_EQ(pl.size(), cl.size());
    EXPECT_EQ(std::memcmp(pl.data(), cl.data(), 4 * pl.size()), 0) << "step " << step;
    for (int64_t i = 0; i < 2; ++i) blocks.Commit(i);
  }
  for (const KvCache& cache : p) {
    EXPECT_EQ(static_cast<int64_t>(cache.blocks.size()), blocks.BlocksFor(cache.length));
    EXPECT_LE(model_testing::HeldSlidingBlocks(cache), blocks.BlocksFor(8) + 1);
    EXPECT_EQ(cache.sliding_blocks.front(), kReleasedBlock);
  }
  blocks.Free(0);
  blocks.Free(1);
  EXPECT_EQ(blocks.used_blocks(kFullGroup) + blocks.used_blocks(kSlidingGroup), 0);
}

// The greedy fast path of the ForwardBackend interface returns each step's argmax.
TEST_F(CpuBackendTest, ForwardArgmaxReturnsEachSequencesArgmax) {
  TinyModelOptions o;
  o.vocab = 300;
  o.seed = 12;
  auto [bf16_dir, df11_dir] = MakePair(o, "m");
  auto w = LoadModelWeights(df11_dir);
  ASSERT_TRUE(w.ok());
  CpuBackend a(&*w, {}), b(&*w, {});
  KvCache ca[] = {a.NewCache(8), a.NewCache(8)}, cb[] = {b.NewCache(8), b.NewCache(8)};
  const std::vector<int32_t> p1 = {1, 2, 3}, p2 = {4};
  SequenceStep sa[] = {{&ca[0], p1}, {&ca[1], p2}}, sb[] = {{&cb[0], p1}, {&cb[1], p2}};
  std::vector<float> logits;
  ASSERT_TRUE(a.Forward(sa, false, &logits).ok());
  std::vector<int32_t> ids;
  ASSERT_TRUE(b.ForwardArgmax(sb, &ids).ok());
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], ArgmaxRef(logits.data(), 300));
  EXPECT_EQ(ids[1], ArgmaxRef(logits.data() + 300, 300));
  EXPECT_EQ(cb[0].length, 3);
  EXPECT_EQ(cb[1].length, 1);
}

TEST_F(CpuBackendTest, Df11ModelHoldsCompressedWeightsAndOneLayerOfScratch) {
  TinyModelOptions o;
  o.layers = 4;
  o.hidden = 256;
  o.intermediate = 512;
  o.vocab = 2000;
  auto [bf16_dir, df11_dir] = MakePair(o, "m");
  auto b = LoadModelWeights(bf16_dir);
  auto d = LoadModelWeights(df11_dir);
  ASSERT_TRUE(b.ok() && d.ok());
  EXPECT_LT(d->WeightBytes(), 0.70 * b->WeightBytes());
  const int64_t layer_elements = d->layers[0].ScratchElements();
  EXPECT_EQ(d->MaxLayerScratch(), layer_elements);
  CpuBackend t(&*d, {});
  EXPECT_EQ(t.ScratchBytes(), 2 * 2 * layer_elements);  // two BF16 buffers (double-buffered)
}

TEST_F(CpuBackendTest, MismatchedWeightsAreRejected) {
  TinyModelOptions o;
  auto [bf16_dir, df11_dir] = MakePair(o, "m");
  // Claim a larger hidden size than the weights have.
  std::string config_path = bf16_dir + "/config.json";
  auto j = nlohmann::json::parse(std::ifstream(config_path));
  j["intermediate_size"] = 200;
  std::ofstream(config_path) << j.dump();
  auto w = LoadModelWeights(bf16_dir);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("mlp.gate_proj.weight"), std::string::npos)
      << w.status().ToString();
  std::filesystem::remove(df11_dir + "/model_layers_1.safetensors");
  auto missing = LoadModelWeights(df11_dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("model.layers.1"), std::string::npos)
      << missing.status().ToString();
}

}  // namespace
}  // namespace df11
