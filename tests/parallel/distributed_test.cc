// SPDX-License-Identifier: Apache-2.0
// DistributedStepRunner under a real mpirun (ctest runs it with -np 4 and -np 2): rank 0 makes
// tiny models, their DF11 copies and shards for every tp x pp layout that fits the job; every rank
// loads only its shard, rank 0 drives steps and compares against one-rank Transformers on the
// unsharded BF16 model: greedy tokens identical, logits within kLogitAtol, and DF11 shards' logits
// bit-identical to BF16 shards' of the same layout. Besides make-tiny models, five of the models
// transformers wrote (tests/data/hf_models: windows on all or some layers, GELU, YaRN, Gemma 3's
// local and global layers alone and inside Gemma3ForConditionalGeneration), whose
// one-rank logits hf_models_test checks against transformers: a shard keeps the config, and a
// stage's layers use their global index for the window. The exit code is non-zero when any rank
// failed.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "parallel/mpi_bootstrap.h"
#include "runtime/convert/compress.h"
#include "runtime/convert/shard.h"
#include "runtime/engine/distributed_runner.h"
#include "runtime/engine/engine.h"
#include "runtime/formats/tiny_model.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/shard_weights.h"
#include "runtime/model/cpu_backend.h"

namespace df11 {
namespace {

// TP sums partial products in a different order than one rank does; FP32 logits of these models
// are O(1), so rounding differences stay ~1e-6, but a key or value that differs by such an amount
// next to a BF16 rounding boundary lands one BF16 step away in the KV cache, which moved a logit
// by 1.2e-4 (Gemma 3, TP 2). A wrong slice or order moves them by 1e-2 and more.
constexpr float kLogitAtol = 5e-4f;
constexpr int kSteps = 16;               // generated tokens per prompt
constexpr double kCollectiveTimeoutS = 120;

World g_world;
Communicator* g_comm = nullptr;  // MPI_COMM_WORLD, for the test's own agreement

std::string g_tmp;  // rank 0 creates it; every rank learns its path

// Rank 0's flag (true: go on) seen by every rank.
bool BroadcastOk(bool ok) {
  int32_t v = ok ? 1 : 0;
  g_comm->Broadcast(&v, sizeof(v), 0);
  return v != 0;
}

// True on every rank when every rank passed `ok`.
bool AllOk(bool ok) {
  float bad = ok ? 0.f : 1.f;
  g_comm->AllReduceSum(&bad, 1);
  return bad == 0.f;
}

struct Arch {
  std::string name;
  TinyModelOptions options;
  std::string source;  // a model directory to use instead of make-tiny's
};

// The models transformers wrote that run sharded, with their layer counts.
constexpr std::pair<const char*, int> kHfArchs[] = {{"mistral_sliding_window", 2},
                                                    {"qwen2_sliding_layers_gelu", 3},
                                                    {"qwen3_yarn", 2},
                                                    {"gemma3_text", 4},
                                                    {"gemma3_multimodal", 4}};

Arch MakeArch(const std::string& name) {
  for (auto [hf, layers] : kHfArchs) {
    if (name == hf) return {name, {}, std::string(DF11_TEST_DATA_DIR) + "/hf_models/models/" + hf};
  }
  TinyModelOptions o;
  o.layers = 4;
  o.hidden = 128;
  o.heads = 4;
  o.kv_heads = 2;  // fewer than tp 4: k/v heads are replicated
  o.intermediate = 256;
  o.vocab = 1000;
  o.seed = 7;
  o.threads = 1;
  if (name == "qwen3") {
    // head_dim != hidden / heads, q/k norms, tied embeddings, a vocabulary tp 4 cannot split
    // evenly (slices of 251, 251, 251, 249 rows).
    o.arch = "qwen3";
    o.head_dim = 64;
    o.vocab = 1002;
    o.tie_embeddings = true;
    o.seed = 11;
  } else if (name == "qwen2") {
    o.arch = "qwen2";  // q/k/v biases, cut by rows
    o.seed = 13;
  }
  return {name, o, ""};
}

// Token ids and per-step results of one driven batch.
struct Trace {
  std::vector<std::vector<int32_t>> tokens;  // (prompts, kSteps) greedy tokens
  std::vector<std::vector<float>> logits;    // (kSteps) x (prompts * vocab)
};

std::vector<std::vector<int32_t>> Prompts(int64_t vocab) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<int32_t>> prompts;
  for (int len : {5, 11, 1}) {
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (auto& t : p) t = id(rng);
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// Greedy decoding of `prompts` for kSteps tokens through `runner` (greedy_only: argmax only).
Status DriveGreedy(StepRunner* runner, const std::vector<std::vector<int32_t>>& prompts,
                   Trace* trace) {
  const size_t n = prompts.size();
  std::vector<KvCache> caches;
  for (const auto& p : prompts) caches.push_back(runner->NewCache(int64_t(p.size()) + kSteps));
  trace->tokens.assign(n, {});
  std::vector<std::vector<int32_t>> inputs = prompts;
  for (int step = 0; step < kSteps; ++step) {
    std::vector<SequenceStep> steps;
    for (size_t i = 0; i < n; ++i) steps.push_back({&caches[i], inputs[i]});
    StepOutput out;
    DF11_RETURN_IF_ERROR(runner->Step(steps, true, &out));
    if (out.tokens.size() != n) {
      return Status::Internal("token count " + std::to_string(out.tokens.size()));
    }
    for (size_t i = 0; i < n; ++i) {
      trace->tokens[i].push_back(out.tokens[i]);
      inputs[i] = {out.tokens[i]};
    }
  }
  return Status::Ok();
}

// Full logits (greedy_only false) of each step, feeding the given tokens (teacher forcing) so
// every runner sees the same inputs.
Status DriveLogits(StepRunner* runner, const std::vector<std::vector<int32_t>>& prompts,
                   const std::vector<std::vector<int32_t>>& feed, Trace* trace) {
  const size_t n = prompts.size();
  std::vector<KvCache> caches;
  for (const auto& p : prompts) caches.push_back(runner->NewCache(int64_t(p.size()) + kSteps));
  trace->logits.clear();
  for (int step = 0; step < kSteps; ++step) {
    std::vector<std::vector<int32_t>> inputs(n);
    for (size_t i = 0; i < n; ++i) {
      inputs[i] = step == 0 ? prompts[i] : std::vector<int32_t>{feed[i][step - 1]};
    }
    std::vector<SequenceStep> steps;
    for (size_t i = 0; i < n; ++i) steps.push_back({&caches[i], inputs[i]});
    StepOutput out;
    DF11_RETURN_IF_ERROR(runner->Step(steps, false, &out));
    if (out.logits.size() != n * static_cast<size_t>(runner->vocab_size())) {
      return Status::Internal("logits size " + std::to_string(out.logits.size()));
    }
    trace->logits.push_back(std::move(out.logits));
  }
  return Status::Ok();
}

// Rank 0's per-architecture files and the one-rank reference, made once.
struct ArchFiles {
  std::string bf16, df11;
  std::vector<std::vector<int32_t>> prompts;
  Trace reference;
};

Status PrepareArch(const Arch& arch, ArchFiles* f) {
  f->bf16 = arch.source.empty() ? g_tmp + "/" + arch.name : arch.source;
  f->df11 = g_tmp + "/" + arch.name + ".df11";
  if (arch.source.empty()) DF11_RETURN_IF_ERROR(MakeTinyModel(arch.options, f->bf16));
  CompressOptions copts;
  copts.threads = 1;
  copts.show_progress = false;
  auto summary = CompressModel(f->bf16, f->df11, copts);
  if (!summary.ok()) return summary.status();
  auto weights = LoadModelWeights(f->bf16);
  if (!weights.ok()) return weights.status();
  CpuBackendOptions topts;
  topts.forward.threads = 1;
  CpuBackend t(&*weights, topts);
  LocalStepRunner local(&t);
  f->prompts = Prompts(weights->config.vocab_size);
  DF11_RETURN_IF_ERROR(DriveGreedy(&local, f->prompts, &f->reference));
  return DriveLogits(&local, f->prompts, f->reference.tokens, &f->reference);
}

std::string ShardDir(const std::string& arch, const char* source, int tp, int pp) {
  return g_tmp + "/" + arch + "." + source + ".tp" + std::to_string(tp) + "pp" + std::to_string(pp);
}

struct Layout {
  std::string arch;
  int tp, pp;
};

std::string LayoutName(const ::testing::TestParamInfo<Layout>& info) {
  return info.param.arch + "_tp" + std::to_string(info.param.tp) + "_pp" +
         std::to_string(info.param.pp);
}

class Distributed : public ::testing::TestWithParam<Layout> {
 protected:
  // What one sharded run produced on rank 0.
  struct Run {
    Trace greedy, logits;
  };

  // Every rank: loads its shard of `dir`, checks what it holds, and serves; rank 0 drives the
  // prompts and fills `run`. Collective: every rank must call it.
  void RunSharded(const std::string& dir, const ArchFiles& files, Run* run) {
    const int rank = g_world.rank;
    auto layout = ReadShardLayout(dir);
    ASSERT_TRUE(AllOk(layout.ok())) << (layout.ok() ? "another rank" : layout.status().ToString());
    ASSERT_EQ(layout->world(), g_world.size);
    auto tp_comm = MpiSplitCommunicator(layout->Stage(rank), kCollectiveTimeoutS);
    ASSERT_EQ(tp_comm->size(), layout->tp);
    ASSERT_EQ(tp_comm->rank(), layout->TpRank(rank));

    auto weights = LoadShardWeights(dir, *layout, rank);
    EXPECT_TRUE(weights.ok()) << "rank " << rank << ": " << weights.status().ToString();
    // A rank maps only its own file, and holds (nearly) all of its tensors.
    char name[64];
    std::snprintf(name, sizeof(name), "rank-%05d.safetensors", rank);
    const bool one_file = weights.ok() && weights->checkpoints.size() == 1 &&
                          weights->checkpoints[0].files().size() == 1;
    EXPECT_TRUE(!weights.ok() || one_file) << "rank " << rank << " maps more than " << name;
    if (!AllOk(one_file)) return;
    // The file's tensor bytes: its size less the safetensors header (u64 length + JSON).
    uint64_t header = 0;
    if (std::FILE* f = std::fopen((dir + "/" + name).c_str(), "rb")) {
      if (std::fread(&header, sizeof(header), 1, f) != 1) header = 0;
      std::fclose(f);
    }
    const int64_t file_bytes =
        static_cast<int64_t>(std::filesystem::file_size(dir + "/" + name) - 8 - header);
    const int64_t held = weights->WeightBytes();
    EXPECT_LE(held, file_bytes) << "rank " << rank << " " << name;
    EXPECT_GE(held, file_bytes * 9 / 10) << "rank " << rank << " " << name;

    CpuBackendOptions topts;
    topts.forward.threads = 1;
    topts.tp_leader = layout->TpRank(rank) == 0;
    if (layout->tp > 1) {
      topts.all_reduce = [c = tp_comm.get()](float* d, int64_t n) { c->AllReduceSum(d, n); };
    }
    CpuBackend cpu(&*weights, topts);
    DistributedContext ctx{rank, *layout, g_comm, tp_comm.get()};
    DistributedStepRunner runner(&cpu, ctx);
    if (rank == 0) {
      EXPECT_EQ(static_cast<size_t>(runner.vocab_size()),
                files.reference.logits[0].size() / files.prompts.size());
      Status s = DriveGreedy(&runner, files.prompts, &run->greedy);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (s.ok()) {
        s = DriveLogits(&runner, files.prompts, files.reference.tokens, &run->logits);
        EXPECT_TRUE(s.ok()) << s.ToString();
      }
      runner.Shutdown();
    } else {
      Status s = runner.Serve();
      EXPECT_TRUE(s.ok()) << "rank " << rank << ": " << s.ToString();
    }
  }
};

std::map<std::string, ArchFiles>& Files() {
  static std::map<std::string, ArchFiles> files;
  return files;
}

TEST_P(Distributed, MatchesOneRank) {
  const Layout& p = GetParam();
  if (p.tp * p.pp != g_world.size) {
    GTEST_SKIP() << "tp " << p.tp << " x pp " << p.pp << " needs " << p.tp * p.pp << " ranks";
  }
  const Arch arch = MakeArch(p.arch);
  const std::string bf16_dir = ShardDir(p.arch, "bf16", p.tp, p.pp);
  const std::string df11_dir = ShardDir(p.arch, "df11", p.tp, p.pp);
  // Rank 0 makes the models (once per architecture) and this layout's shards from both sources.
  bool ok = true;
  if (g_world.rank == 0) {
    if (!Files().count(p.arch)) {
      ArchFiles f;
      Status s = PrepareArch(arch, &f);
      EXPECT_TRUE(s.ok()) << s.ToString();
      ok = s.ok();
      if (ok) Files()[p.arch] = std::move(f);
    }
    ShardOptions sopts;
    sopts.tp = p.tp;
    sopts.pp = p.pp;
    sopts.threads = 1;
    sopts.show_progress = false;
    const ArchFiles& f = Files()[p.arch];
    const std::vector<std::pair<std::string, std::string>> jobs = {{f.bf16, bf16_dir},
                                                                   {f.df11, df11_dir}};
    for (const auto& [src, out] : jobs) {
      if (!ok) break;
      auto summary = ShardModel(src, out, sopts);
      EXPECT_TRUE(summary.ok()) << src << ": " << summary.status().ToString();
      ok = summary.ok();
      if (ok) {
        EXPECT_EQ(summary->rank_bytes.size(), static_cast<size_t>(p.tp * p.pp));
      }
    }
  }
  if (!BroadcastOk(ok)) return;
  static const ArchFiles kNone;
  const ArchFiles& files = g_world.rank == 0 ? Files()[p.arch] : kNone;

  Run from_bf16, from_df11;
  RunSharded(bf16_dir, files, &from_bf16);
  if (!AllOk(!HasFatalFailure())) return;
  RunSharded(df11_dir, files, &from_df11);
  if (!AllOk(!HasFatalFailure()) || g_world.rank != 0) return;

  // (a) greedy tokens, found by the vocab-parallel argmax, equal the one-rank ones.
  const auto& ref = files.reference;
  EXPECT_EQ(from_bf16.greedy.tokens, ref.tokens) << "BF16 shards";
  EXPECT_EQ(from_df11.greedy.tokens, ref.tokens) << "DF11 shards";
  // (b) full logits within kLogitAtol of the one-rank ones.
  ASSERT_EQ(from_bf16.logits.logits.size(), ref.logits.size());
  ASSERT_EQ(from_df11.logits.logits.size(), ref.logits.size());
  float worst = 0;
  int reported = 0;
  for (size_t s = 0; s < ref.logits.size(); ++s) {
    const auto& got = from_bf16.logits.logits[s];
    ASSERT_EQ(got.size(), ref.logits[s].size());
    for (size_t i = 0; i < got.size(); ++i) {
      const float d = std::fabs(got[i] - ref.logits[s][i]);
      if (!(d <= kLogitAtol) && reported++ < 5) {
        ADD_FAILURE() << "step " << s << " logit " << i << ": one rank " << ref.logits[s][i]
                      << ", sharded " << got[i];
      }
      if (d > worst || std::isnan(d)) worst = d;
    }
  }
  EXPECT_LE(worst, kLogitAtol);
  RecordProperty("max_abs_logit_diff", std::to_string(worst));
  std::printf("[ rank 0 ] %s tp %d pp %d: max |logit - one-rank logit| = %.3g\n", p.arch.c_str(),
              p.tp, p.pp, worst);
  // (c) DF11 shards and BF16 shards of the same layout: bit-identical logits.
  for (size_t s = 0; s < ref.logits.size(); ++s) {
    const auto& a = from_bf16.logits.logits[s];
    const auto& b = from_df11.logits.logits[s];
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
        << "step " << s << ": DF11 shard logits differ from BF16 shard logits";
  }
}

std::vector<Layout> AllLayouts() {
  std::vector<Layout> all;
  for (const char* arch : {"llama", "qwen3", "qwen2"}) {
    const std::vector<std::pair<int, int>> layouts = {{4, 1}, {2, 2}, {1, 4}, {2, 1}, {1, 2}};
    for (auto [tp, pp] : layouts) all.push_back({arch, tp, pp});
  }
  // 2 or 3 layers: at most 2 stages. Qwen2's second stage holds windowed layer 2 only; with 4
  // stages each of Gemma's holds one layer, local or global.
  for (auto [arch, layers] : kHfArchs) {
    for (auto [tp, pp] : std::vector<std::pair<int, int>>{{4, 1}, {2, 2}, {2, 1}, {1, 2}, {1, 4}}) {
      if (pp <= layers) all.push_back({arch, tp, pp});
    }
  }
  return all;
}

INSTANTIATE_TEST_SUITE_P(Layouts, Distributed, ::testing::ValuesIn(AllLayouts()), LayoutName);

// Failures on ranks other than 0 (whose default printer is removed), prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[ rank %d ] %s:%d: failure\n%s\n", g_world.rank,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
  }
};

}  // namespace
}  // namespace df11

int main(int argc, char** argv) {
  using namespace df11;
  g_world = MpiInit(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (g_world.rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter);
  }
  int rc = 0;
  {
    auto world = MpiWorldCommunicator(kCollectiveTimeoutS);
    g_comm = world.get();
    char path[512] = {0};
    if (g_world.rank == 0) {
      char tmpl[] = "/tmp/df11_distributed_test_XXXXXX";
      if (mkdtemp(tmpl) != nullptr) std::snprintf(path, sizeof(path), "%s", tmpl);
    }
    world->Broadcast(path, sizeof(path), 0);
    g_tmp = path;
    if (g_tmp.empty()) {
      std::fprintf(stderr, "rank %d: cannot create a temporary directory\n", g_world.rank);
      rc = 1;
    } else {
      rc = RUN_ALL_TESTS();
    }
    // Every rank exits non-zero when any rank failed.
    if (!AllOk(rc == 0)) {
      if (rc == 0 && g_world.rank == 0) {
        std::fprintf(stderr, "distributed_test: failed on another rank (its [ rank N ] lines)\n");
      }
      rc = 1;
    }
    world->Barrier();
    if (g_world.rank == 0 && !g_tmp.empty()) std::filesystem::remove_all(g_tmp);
    g_comm = nullptr;
  }
  MpiFinalize();
  return rc;
}
