// SPDX-License-Identifier: Apache-2.0
#include "launcher/bench_command.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>

#include "launcher/cli_flags.h"

#include "runtime/model/model_weights.h"

namespace df11 {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "df11-run: %s\n", s.ToString().c_str());
  return ExitCode(s);
}

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void AddSharedFlags(CLI::App* cmd, std::string* model, BackendFlags* b) {
  cmd->add_option("--model", *model, "model directory (BF16 or DF11, not sharded)")->required();
  AddBackendFlags(cmd, b);
  cmd->add_option("--threads", b->forward.threads, "CPU threads (0: all)")
      ->check(IntegerIn(0, std::numeric_limits<int>::max()));
  cmd->add_flag("--no-overlap{false}", b->forward.overlap_decode,
                "decode each layer's weights before it instead of during the previous layer");
  cmd->add_flag("--no-graph{false}", b->forward.cuda_graph, "launch every step's kernels (no CUDA graph)");
  cmd->add_option("--decode-grid-fraction", b->forward.decode_grid_fraction,
                  "cuda: share of the decode kernel's full grid used for decodes that overlap "
                  "the previous layer's compute (less leaves SMs to it)")
      ->check(NumberIn(0.01, 1.0))->capture_default_str();
}

// One greedy step over all sequences; returns the next token of each.
Status Step(ForwardBackend* f, std::vector<KvCache>* caches,
            const std::vector<std::vector<int32_t>>& tokens, std::vector<int32_t>* next) {
  std::vector<SequenceStep> steps;
  for (size_t i = 0; i < caches->size(); ++i) steps.push_back({&(*caches)[i], tokens[i]});
  return f->ForwardArgmax(steps, next);
}

// Seconds of one batch's prefill and of its decode steps, after a warm-up on throwaway caches.
struct BatchTiming {
  double prefill_s = 0, decode_s = 0;
  int64_t generated = 0;  // tokens of the decode steps
};

StatusOr<BatchTiming> TimeBatch(ForwardBackend* fb, const std::vector<std::vector<int32_t>>& prompts,
                                int64_t capacity, int64_t gen_tokens) {
  const size_t B = prompts.size();
  std::vector<int32_t> next;
  auto decode_steps = [&](std::vector<KvCache>* caches, int64_t steps) -> Status {
    for (int64_t g = 0; g < steps; ++g) {
      std::vector<std::vector<int32_t>> tok(B);
      for (size_t i = 0; i < B; ++i) tok[i] = {next[i]};
      DF11_RETURN_IF_ERROR(Step(fb, caches, tok, &next));
    }
    return Status::Ok();
  };
  {  // Warm-up: a prefill and up to two decode steps.
    std::vector<KvCache> caches;
    for (size_t i = 0; i < B; ++i) caches.push_back(fb->NewCache(capacity));
    DF11_RETURN_IF_ERROR(Step(fb, &caches, prompts, &next));
    DF11_RETURN_IF_ERROR(decode_steps(&caches, std::min<int64_t>(2, gen_tokens - 1)));
    fb->Synchronize();
  }
  std::vector<KvCache> caches;
  for (size_t i = 0; i < B; ++i) caches.push_back(fb->NewCache(capacity));
  fb->Synchronize();
  BatchTiming t;
  auto t0 = std::chrono::steady_clock::now();
  DF11_RETURN_IF_ERROR(Step(fb, &caches, prompts, &next));
  fb->Synchronize();
  t.prefill_s = Since(t0);
  // The prefill produced the first token; each decode step produces one more per sequence.
  t0 = std::chrono::steady_clock::now();
  DF11_RETURN_IF_ERROR(decode_steps(&caches, gen_tokens - 1));
  fb->Synchronize();
  t.decode_s = Since(t0);
  t.generated = static_cast<int64_t>(B) * (gen_tokens - 1);
  return t;
}

}  // namespace

CLI::App* AddBenchCommand(CLI::App* app, BenchFlags* f) {
  auto* cmd = app->add_subcommand("bench", "greedy generation throughput per batch size");
  AddSharedFlags(cmd, &f->model, &f->backend);
  cmd->add_option("--batch-sizes", f->batch_sizes, "sequences per batch, comma separated")
      ->delimiter(',')->check(IntegerIn(1))->capture_default_str();
  cmd->add_option("--prompt-tokens", f->prompt_tokens, "random prompt tokens per sequence")
      ->check(IntegerIn(1))->capture_default_str();
  cmd->add_option("--gen-tokens", f->gen_tokens, "tokens generated per sequence")
      ->check(IntegerIn(1))->capture_default_str();
  cmd->add_option("--seed", f->seed, "prompt seed")->check(Unsigned64())->capture_default_str();
  cmd->add_option("--json", f->json, "also append the JSON lines to this file");
  return cmd;
}

CLI::App* AddLogitsCommand(CLI::App* app, LogitsFlags* f) {
  auto* cmd = app->add_subcommand("logits", "write every position's logits (float32, raw)");
  AddSharedFlags(cmd, &f->model, &f->backend);
  cmd->add_option("--ids", f->ids, "prompt token ids, comma separated")
      ->delimiter(',')->required();
  cmd->add_option("--out", f->out, "output file: positions x vocab float32 little-endian")
      ->required();
  return cmd;
}

int RunBench(const BenchFlags& f) {
  const auto load_start = std::chrono::steady_clock::now();
  auto w = LoadModelWeights(f.model);
  if (!w.ok()) return Fail(w.status());
  BenchFlags flags = f;
  int64_t max_batch = 1;
  for (int64_t b : f.batch_sizes) max_batch = std::max(max_batch, b);
  flags.backend.forward.max_step_tokens =
      std::max(flags.backend.forward.max_step_tokens, max_batch * f.prompt_tokens);
  flags.backend.forward.context = f.prompt_tokens + f.gen_tokens;
  BackendGroup group;
  group.local_rank = LocalRankFromEnvironment();
  auto codec_line = ApplyWeightCodec(flags.backend, group, nullptr, &*w);
  if (!codec_line.ok()) return Fail(codec_line.status());
  auto backend = MakeBackend(flags.backend, &*w, group);
  if (!backend.ok()) return Fail(backend.status());
  // Reading the files, any transcoding and the backend's set-up (a GPU's uploads included).
  const double load_s = Since(load_start);
  ForwardBackend* fb = backend->forward.get();
  std::fprintf(stderr, "%s%sloaded in %.3f s\n", codec_line->c_str(), backend->memory_plan.c_str(),
               load_s);
  const std::string format = w->CodecSummary();
  const int64_t vocab = w->dims.vocab_rows;
  std::ofstream json;
  if (!f.json.empty()) {
    json.open(f.json, std::ios::app);
    if (!json) return Fail(Status::IoError("cannot open --json " + f.json));
  }
  for (int64_t B : f.batch_sizes) {
    std::mt19937_64 rng(f.seed * 1000003 + static_cast<uint64_t>(B));
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
    std::vector<std::vector<int32_t>> prompts(B);
    for (auto& p : prompts) {
      for (int64_t i = 0; i < f.prompt_tokens; ++i) p.push_back(id(rng));
    }
    auto timing = TimeBatch(fb, prompts, f.prompt_tokens + f.gen_tokens, f.gen_tokens);
    if (!timing.ok()) return Fail(timing.status());
    const auto [prefill_s, decode_s, generated] = *timing;
    const double prefill_tok_s = B * f.prompt_tokens / std::max(prefill_s, 1e-9);
    const double decode_tok_s = generated > 0 ? generated / std::max(decode_s, 1e-9) : 0.0;
    std::fprintf(stderr, "batch %lld: prefill %.1f tokens/s (%.3f s), decode %.1f tokens/s (%lld tokens in %.3f s)\n",
                 static_cast<long long>(B), prefill_tok_s, prefill_s, decode_tok_s,
                 static_cast<long long>(generated), decode_s);
    char line[512];
    std::snprintf(line, sizeof(line),
                  "{\"bench\":\"generate\",\"device\":\"%s\",\"format\":\"%s\",\"batch\":%lld,"
                  "\"prompt_tokens\":%lld,\"gen_tokens\":%lld,\"prefill_tok_s\":%.3f,"
                  "\"decode_tok_s\":%.3f,\"weight_bytes\":%lld,\"scratch_bytes\":%lld,"
                  "\"overlap\":%s,\"graph\":%s,\"decode_grid_fraction\":%.3f,\"load_s\":%.3f}",
                  backend->device.c_str(), format.c_str(), static_cast<long long>(B),
                  static_cast<long long>(f.prompt_tokens), static_cast<long long>(f.gen_tokens),
                  prefill_tok_s, decode_tok_s, static_cast<long long>(w->WeightBytes()),
                  static_cast<long long>(fb->ScratchBytes()),
                  f.backend.forward.overlap_decode ? "true" : "false",
                  f.backend.forward.cuda_graph && f.backend.device == "cuda" ? "true" : "false",
                  f.backend.forward.decode_grid_fraction, load_s);
    std::printf("%s\n", line);
    std::fflush(stdout);
    if (json.is_open()) json << line << "\n" << std::flush;
  }
  return 0;
}

int RunLogits(const LogitsFlags& f) {
  auto w = LoadModelWeights(f.model);
  if (!w.ok()) return Fail(w.status());
  const int64_t vocab = w->dims.vocab_rows;
  for (int32_t id : f.ids) {
    if (id < 0 || id >= vocab) {
      return Fail(Status::InvalidArgument("--ids: " + std::to_string(id) +
                                          " is outside the vocabulary [0, " +
                                          std::to_string(vocab) + ")"));
    }
  }
  LogitsFlags flags = f;
  flags.backend.forward.max_step_tokens = std::max<int64_t>(flags.backend.forward.max_step_tokens,
                                                    static_cast<int64_t>(f.ids.size()));
  BackendGroup group;
  group.local_rank = LocalRankFromEnvironment();
  auto codec_line = ApplyWeightCodec(flags.backend, group, nullptr, &*w);
  if (!codec_line.ok()) return Fail(codec_line.status());
  std::fprintf(stderr, "%s", codec_line->c_str());
  auto backend = MakeBackend(flags.backend, &*w, group);
  if (!backend.ok()) return Fail(backend.status());
  KvCache cache = backend->forward->NewCache(static_cast<int64_t>(f.ids.size()));
  SequenceStep step{&cache, f.ids};
  std::vector<float> logits;
  if (Status s = backend->forward->Forward(std::span<const SequenceStep>(&step, 1), true, &logits);
      !s.ok()) {
    return Fail(s);
  }
  std::ofstream out(f.out, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(logits.data()),
            static_cast<std::streamsize>(4 * logits.size()));
  if (!out) return Fail(Status::IoError("cannot write --out " + f.out));
  std::fprintf(stderr, "wrote %zu positions x %lld logits (%s) to %s\n", f.ids.size(),
               static_cast<long long>(vocab), backend->device.c_str(), f.out.c_str());
  return 0;
}

}  // namespace df11
