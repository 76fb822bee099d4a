// SPDX-License-Identifier: Apache-2.0
// `df11-run generate`: loads a BF16 or DF11 model and generates, from one --prompt (printed with
// timings and memory) or from a JSONL batch (--input/--output, one result line per input line;
// resumable: custom_ids the output already holds are skipped, see worker/batch_generator.h).
// `df11-run serve`: the same model as a worker group of df11-coordinator: leases items, generates,
// reports results (worker/worker_agent.h). Both run on one process, or under mpirun/srun on a
// sharded model, where rank 0 leads and the other ranks follow its plans. --device cuda runs the
// forward pass on a GPU (CudaBackend; local rank % device count), --device cpu (default) on the
// CPU. `df11-run bench` and `df11-run logits`: see bench_command.h. `df11-run plan`:
// plan_command.h.
#include <glog/logging.h>
#include <unistd.h>
#include <xxhash.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>

#include "launcher/backend_select.h"
#include "launcher/batch/batch_io.h"
#include "launcher/bench_command.h"
#include "launcher/cli_flags.h"
#include "launcher/control/token_file.h"
#include "launcher/plan_command.h"
#include "launcher/run_flags.h"
#include "launcher/worker/batch_generator.h"
#include "launcher/worker/worker_agent.h"
#include "parallel/mpi_bootstrap.h"
#include "runtime/core/file_util.h"
#include "runtime/core/logging.h"
#include "runtime/engine/distributed_runner.h"
#include "runtime/engine/draft_model.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/shard_weights.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"

namespace df11 {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "df11-run: %s\n", s.ToString().c_str());
  return ExitCode(s);
}

int64_t PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmHWM:") {
      int64_t kb = 0;
      status >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

void PrintLoaded(const std::string& what, double seconds, const ModelWeights& w,
                 const Backend& b, const std::string& codec_line) {
  std::fprintf(stderr,
               "loaded %s in %.2f s on %s: weights %.1f MB (%.1f MB DF11-compressed), layer "
               "scratch %.1f MB\n%s%s",
               what.c_str(), seconds, b.device.c_str(), w.WeightBytes() / 1e6,
               w.CompressedBytes() / 1e6, b.forward->ScratchBytes() / 1e6, codec_line.c_str(),
               b.memory_plan.c_str());
}

// What the command line asks for: `generate` or `serve`, with the flags both take.
struct Command {
  RunFlags run;
  GenerateFlags generate;
  ServeFlags serve;
  bool serving = false;  // `serve`, else `generate`
  const char* name() const { return serving ? "serve" : "generate"; }
};

// What `serve` registers: the group's ranks, hosts and devices, and which model it serves.
struct GroupIdentity {
  std::vector<std::string> hosts;  // one per rank
  std::string manifest_hash;
};

// What the leader (the only process, or rank 0) works with once the model is loaded.
struct Leader {
  const ModelConfig* config = nullptr;
  StepRunner* runner = nullptr;
  StepRunner* keep_alive = nullptr;  // serve on a group: rank 0's runner, stepped while idle
  int64_t plan_kv_tokens = 0;        // the backend's KV budget (the smallest over the ranks)
  bool fixed_kv_pool = false;        // GPU: the budget is a pool allocated at start
  GroupIdentity id;                  // serve: what is registered
  BatchFiles* files = nullptr;       // generate --input/--output, opened before loading
};

// The model's identity: a sharded dir's manifest source hash, else the xxh64 of config.json.
StatusOr<std::string> ModelHash(const std::string& model) {
  if (IsShardedModelDir(model)) {
    DF11_ASSIGN_OR_RETURN(ShardLayout layout, ReadShardLayout(model));
    const nlohmann::json& m = layout.manifest;
    if (m.contains("source") && m["source"].contains("hash") && m["source"]["hash"].is_string()) {
      return m["source"]["hash"].get<std::string>();
    }
  }
  DF11_ASSIGN_OR_RETURN(std::string config, ReadFileToString(JoinPath(model, "config.json")));
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(XXH64(config.data(), config.size(), 0)));
  return std::string(hex);
}

int Serve(const Command& c, const Leader& leader, BatchGenerator* generator) {
  WorkerOptions o = c.serve.worker;
  if (Status s = ParseHostPort(c.serve.coordinator, &o.control.host, &o.control.port); !s.ok()) {
    return Fail(s);
  }
  o.control.rpc_timeout_ms = static_cast<int32_t>(c.serve.rpc_timeout_s * 1000);
  o.control.connect_timeout_ms = std::min(o.control.rpc_timeout_ms, 5000);
  o.group.ranks = static_cast<int32_t>(leader.id.hosts.size());
  o.group.hosts = leader.id.hosts;
  for (const std::string& h : leader.id.hosts) {
    o.group.devices.push_back(h + ":" + c.run.backend.device);
  }
  o.group.manifest_hash = leader.id.manifest_hash;
  // With continuous batching a lease holds two batches, so places that short answers free are
  // refilled from it instead of waiting for the lease's longest answer.
  const EngineOptions& engine = generator->options().engine;
  const int64_t per_lease = engine.continuous ? 2 * engine.batch_size : engine.batch_size;
  o.lease_items = static_cast<int32_t>(std::min<int64_t>(per_lease, 1 << 20));
  // Followers wait for plans at most --collective-timeout: keep-alive steps well within it.
  o.keepalive_s = std::min(5.0, c.run.collective_timeout_s / 4);
  GeneratorItemProcessor processor(generator, leader.keep_alive);
  auto summary = RunWorker(o, &processor);
  if (!summary.ok()) return Fail(summary.status().WithContext("serve"));
  std::fprintf(stderr,
               "df11-run serve: group %s served %lld items (%lld failed, %lld dropped as "
               "cancelled), %lld tokens in %.1f s\n",
               summary->group_id.c_str(), static_cast<long long>(summary->items),
               static_cast<long long>(summary->failed), static_cast<long long>(summary->dropped),
               static_cast<long long>(summary->tokens), summary->seconds);
  return 0;
}

// `generate --prompt`: one request, its text on stdout.
int GeneratePrompt(const std::string& prompt, BatchGenerator* generator) {
  auto ids = generator->EncodePrompt(prompt);
  if (!ids.ok()) return Fail(ids.status().WithContext("--prompt"));
  BatchItem item;
  item.custom_id = "prompt";
  item.request =
      MakeRequest("prompt", std::move(ids).value(), generator->options().defaults.fields);
  auto results = generator->Generate({item});
  if (!results.ok()) return Fail(results.status());
  const GenerationResult& r0 = (*results)[0];
  if (!r0.error.empty()) return Fail(Status::InvalidArgument(r0.error));
  std::printf("%s\n", r0.text.c_str());
  return 0;
}

// The end-of-run summary of `generate` on stderr: throughput, steps, KV use and latencies.
void PrintStats(const EngineStats& s, const EngineOptions& engine) {
  std::fprintf(stderr,
               "prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s "
               "(%.1f tokens/s); peak memory %.1f MB\n",
               static_cast<long long>(s.prompt_tokens), s.prefill_seconds,
               s.prefill_seconds > 0 ? s.prompt_tokens / s.prefill_seconds : 0.0,
               static_cast<long long>(s.decode_tokens), s.decode_seconds,
               s.decode_seconds > 0 ? s.decode_tokens / s.decode_seconds : 0.0,
               PeakRssBytes() / 1e6);
  // Reservations (a backend that does not page its cache), or blocks (next line).
  const std::string reservation =
      s.peak_kv_blocks > 0 || s.peak_kv_tokens == 0
          ? ""
          : "; peak KV reservation " + std::to_string(s.peak_kv_tokens) + " tokens" +
                (engine.kv_tokens > 0 ? " of " + std::to_string(engine.kv_tokens) : "");
  std::fprintf(stderr, "steps: %lld prefill, %lld decode (%s batching, batch size %lld); %lld "
                       "tokens generated%s\n",
               static_cast<long long>(s.prefill_steps), static_cast<long long>(s.decode_steps),
               engine.continuous ? "continuous" : "static",
               static_cast<long long>(engine.batch_size),
               static_cast<long long>(s.generated_tokens), reservation.c_str());
  if (s.peak_kv_blocks > 0) {
    const int64_t prompts = s.prompt_tokens + s.prefix_cached_tokens;
    // The sliding-window layers' own blocks, where they keep them apart.
    const std::string sliding =
        s.peak_kv_sliding_blocks > 0
            ? " (+ " + std::to_string(s.peak_kv_sliding_blocks) + " of the sliding-window layers)"
            : "";
    std::fprintf(stderr, "KV cache: peak %lld blocks in use%s; prefix cache hit rate %.1f%% (%lld "
                         "of %lld prompt tokens not computed); %lld preemption%s (%lld generated "
                         "tokens recomputed)\n",
                 static_cast<long long>(s.peak_kv_blocks), sliding.c_str(),
                 prompts > 0 ? 100.0 * s.prefix_cached_tokens / prompts : 0.0,
                 static_cast<long long>(s.prefix_cached_tokens), static_cast<long long>(prompts),
                 static_cast<long long>(s.preemptions), s.preemptions == 1 ? "" : "s",
                 static_cast<long long>(s.recomputed_tokens));
  }
  if (engine.speculative.method != SpeculativeOptions::Method::kNone) {
    std::fprintf(stderr, "speculative decoding: %lld of %lld drafted tokens accepted (%.1f%%); "
                         "%.2f tokens per sequence and decode step\n",
                 static_cast<long long>(s.accepted_tokens), static_cast<long long>(s.draft_tokens),
                 s.draft_tokens > 0 ? 100.0 * s.accepted_tokens / s.draft_tokens : 0.0,
                 s.speculative_steps > 0
                     ? static_cast<double>(s.speculative_tokens) / s.speculative_steps : 0.0);
  }
  if (!s.first_token_seconds.empty()) {
    std::fprintf(stderr,
                 "latency from the start, over %lld request%s: first token median %.3f s, p90 "
                 "%.3f s; finished median %.3f s, p90 %.3f s\n",
                 static_cast<long long>(s.served_requests), s.served_requests == 1 ? "" : "s",
                 Quantile(s.first_token_seconds, 0.5),
                 Quantile(s.first_token_seconds, 0.9), Quantile(s.finish_seconds, 0.5),
                 Quantile(s.finish_seconds, 0.9));
  }
}

// The leader's part: requests in, generation through leader.runner, results out.
int Lead(const Command& c, const Leader& leader) {
  const GeneratorOptions options = ResolveGeneratorOptions(c.run, leader.plan_kv_tokens);
  if (leader.fixed_kv_pool &&
      (options.engine.kv_tokens < 1 || options.engine.kv_tokens > leader.plan_kv_tokens)) {
    return Fail(Status::InvalidArgument(
        "--kv-tokens " + std::to_string(options.engine.kv_tokens) + ": expected 1 to " +
        std::to_string(leader.plan_kv_tokens) +
        " on the GPU (the KV cache pool the memory plan allocated)"));
  }
  // The draft model runs whole on the leader, which owns the token stream.
  std::unique_ptr<DraftModelDrafter> drafter;
  const SpeculativeOptions& spec = options.engine.speculative;
  if (spec.method == SpeculativeOptions::Method::kDraftModel) {
    CpuBackendOptions draft_options;
    draft_options.forward = c.run.backend.forward;
    const auto start = std::chrono::steady_clock::now();
    auto loaded = DraftModelDrafter::Load(spec.draft_model, leader.config->vocab_size,
                                          draft_options);
    if (!loaded.ok()) return Fail(loaded.status());
    drafter = std::move(loaded).value();
    std::fprintf(stderr, "loaded draft model %s in %.2f s\n", spec.draft_model.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  auto generator =
      BatchGenerator::Create(c.run.model, options, *leader.config, leader.runner, drafter.get());
  if (!generator.ok()) return Fail(generator.status());
  if (c.serving) return Serve(c, leader, generator->get());
  if (!c.generate.prompt.empty()) {
    if (const int rc = GeneratePrompt(c.generate.prompt, generator->get()); rc != 0) return rc;
  } else {
    auto summary = RunBatchFile(generator->get(), leader.files);
    if (!summary.ok()) return Fail(summary.status());
  }
  PrintStats((*generator)->stats(), options.engine);
  return 0;
}

// --input and --output, opened (and the output locked) before the model loads, so that a wrong
// path or a second run on the same output is refused at once.
StatusOr<BatchFiles> OpenFlagFiles(const Command& c) {
  if (c.serving || c.generate.input.empty()) return BatchFiles{};
  return OpenBatchFiles(c.generate.input, c.generate.output);
}

int RunSingle(const Command& c) {
  const RunFlags& f = c.run;
  auto files = OpenFlagFiles(c);
  if (!files.ok()) return Fail(files.status());
  const auto start = std::chrono::steady_clock::now();
  auto weights = LoadModelWeights(f.model);
  if (!weights.ok()) return Fail(weights.status());
  BackendGroup group;
  group.local_rank = LocalRankFromEnvironment();
  auto codec_line = ApplyWeightCodec(f.backend, group, nullptr, &*weights);
  if (!codec_line.ok()) return Fail(codec_line.status());
  auto backend = MakeBackend(f.backend, &*weights, group);
  if (!backend.ok()) return Fail(backend.status());
  PrintLoaded(f.model, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
              *weights, *backend, *codec_line);
  LocalStepRunner runner(backend->forward.get());
  Leader leader;
  leader.config = &weights->config;
  leader.runner = &runner;
  leader.plan_kv_tokens = backend->forward->KvTokenBudget();
  leader.fixed_kv_pool = backend->device.starts_with("cuda");
  leader.files = &*files;
  if (c.serving) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    leader.id.hosts = {host};
    auto hash = ModelHash(f.model);
    if (!hash.ok()) return Fail(hash.status());
    leader.id.manifest_hash = *hash;
  }
  return Lead(c, leader);
}

// The KV budget every rank can hold: the smallest non-zero budget over the ranks (0: none has
// one). A collective: every rank calls it.
int64_t GroupKvTokenBudget(Communicator* world, int64_t mine) {
  std::vector<int64_t> all(static_cast<size_t>(world->size()));
  world->AllGather(&mine, all.data(), sizeof(mine));
  int64_t budget = 0;
  for (int64_t b : all) {
    if (b > 0) budget = budget == 0 ? b : std::min(budget, b);
  }
  return budget;
}

// Every rank learns whether any rank failed, and all exit with the first failure's message and
// exit code (ExitCode). Returns 0 when every rank succeeded.
int AgreeOnErrors(Communicator* world, int rank, const Status& status) {
  constexpr int64_t kLen = 512;  // [exit code][message, NUL-terminated]
  std::vector<char> mine(kLen, 0), all(kLen * world->size(), 0);
  if (!status.ok()) {
    mine[0] = static_cast<char>(ExitCode(status));
    const std::string text = "rank " + std::to_string(rank) + ": " + status.ToString();
    std::copy_n(text.begin(), std::min<size_t>(text.size(), kLen - 2), mine.begin() + 1);
  }
  world->AllGather(mine.data(), all.data(), kLen);
  for (int r = 0; r < world->size(); ++r) {
    if (all[r * kLen] != 0) {
      std::fprintf(stderr, "df11-run: %s\n", &all[r * kLen + 1]);
      return all[r * kLen];
    }
  }
  return 0;
}

// Every rank's host name, in rank order (a collective: every rank calls it).
std::vector<std::string> GatherHosts(Communicator* world, const std::string& host) {
  constexpr int64_t kLen = 256;
  std::vector<char> mine(kLen, 0), all(kLen * world->size(), 0);
  std::copy_n(host.begin(), std::min<size_t>(host.size(), kLen - 1), mine.begin());
  world->AllGather(mine.data(), all.data(), kLen);
  std::vector<std::string> hosts;
  for (int r = 0; r < world->size(); ++r) hosts.emplace_back(&all[r * kLen]);
  return hosts;
}

// Rank `world.rank`'s part of a sharded run, between MPI's set-up and its end: each rank loads
// only its shard; rank 0 leads, the others follow its plans. Every rank returns the same exit
// status for a failure any rank finds before generation starts.
int RunRank(const Command& c, const World& world, const ShardLayout& layout,
            Communicator* world_comm, Communicator* tp_comm) {
  const RunFlags& f = c.run;
  // Rank 0 reads the input and writes the output.
  StatusOr<BatchFiles> files =
      world.rank == 0 ? OpenFlagFiles(c) : StatusOr<BatchFiles>(BatchFiles{});
  if (const int rc = AgreeOnErrors(world_comm, world.rank, files.status()); rc != 0) return rc;
  const auto start = std::chrono::steady_clock::now();
  auto weights = LoadShardWeights(f.model, layout, world.rank);
  if (const int rc = AgreeOnErrors(world_comm, world.rank, weights.status()); rc != 0) return rc;
  BackendGroup group;
  group.tp = layout.tp > 1 ? tp_comm : nullptr;
  group.tp_leader = layout.TpRank(world.rank) == 0;
  group.local_rank = world.local_rank;
  group.local_size = world.local_size;
  group.collective_timeout_s = f.collective_timeout_s;
  auto codec_line = ApplyWeightCodec(f.backend, group, world_comm, &*weights);
  if (const int rc = AgreeOnErrors(world_comm, world.rank, codec_line.status()); rc != 0) return rc;
  auto backend = MakeBackend(f.backend, &*weights, group);
  if (const int rc = AgreeOnErrors(world_comm, world.rank, backend.status()); rc != 0) return rc;
  LOG(INFO) << "rank " << world.rank << " on " << world.host << ": stage "
            << layout.Stage(world.rank) << ", tp rank " << layout.TpRank(world.rank)
            << ", layers [" << weights->first_layer << ", "
            << weights->first_layer + static_cast<int64_t>(weights->layers.size())
            << "), weights " << weights->WeightBytes() << " bytes, device " << backend->device;
  if (!backend->memory_plan.empty()) LOG(INFO) << backend->memory_plan;
  DistributedContext ctx{world.rank, layout, world_comm, tp_comm};
  DistributedStepRunner runner(backend->forward.get(), ctx);
  const int64_t kv_budget = GroupKvTokenBudget(world_comm, backend->forward->KvTokenBudget());
  int rc = 0;
  if (world.rank == 0) {
    PrintLoaded(f.model + " (rank 0 of " + std::to_string(world.size) + ")",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                *weights, *backend, *codec_line);
    Leader leader;
    leader.config = &weights->config;
    leader.runner = &runner;
    leader.keep_alive = c.serving ? &runner : nullptr;
    leader.plan_kv_tokens = kv_budget;
    leader.fixed_kv_pool = backend->device.starts_with("cuda");
    leader.files = &*files;
    leader.id.hosts = GatherHosts(world_comm, world.host);
    if (c.serving) {
      auto hash = ModelHash(f.model);
      if (!hash.ok()) {
        rc = Fail(hash.status());
      } else {
        leader.id.manifest_hash = *hash;
      }
    }
    if (rc == 0) rc = Lead(c, leader);
    runner.Shutdown();
  } else {
    GatherHosts(world_comm, world.host);
    Status s = runner.Serve();
    if (!s.ok()) rc = Fail(s);
  }
  backend->forward.reset();  // before the communicators it calls and MPI go away
  backend->keep_alive.reset();
  return rc;
}

// mpirun/srun on a sharded model.
int RunDistributed(const Command& c, int argc, char** argv) {
  World world = MpiInit(&argc, &argv);
  LoggingOptions logging;
  logging.rank = world.rank;
  InitLogging(argv[0], logging);
  auto layout = ReadShardLayout(c.run.model);
  int rc = 0;
  if (!layout.ok()) {
    rc = Fail(layout.status());
  } else if (layout->world() != world.size) {
    rc = Fail(Status::InvalidArgument(
        c.run.model + "/manifest.json is laid out for " + std::to_string(layout->world()) +
        " ranks (tp " + std::to_string(layout->tp) + " x pp " + std::to_string(layout->pp) +
        ") but the job has " + std::to_string(world.size) + "; launch with -np " +
        std::to_string(layout->world())));
  } else {
    auto world_comm = MpiWorldCommunicator(c.run.collective_timeout_s);
    auto tp_comm = MpiSplitCommunicator(layout->Stage(world.rank), c.run.collective_timeout_s);
    rc = RunRank(c, world, *layout, world_comm.get(), tp_comm.get());
  }
  MpiFinalize();
  return rc;
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) {
  using namespace df11;
  CLI::App app{"df11-run: generate text with a BF16 or DF11 model"};
  app.require_subcommand(1);
  Command c;
  auto* gen = app.add_subcommand("generate", "generate from a prompt or a JSONL batch");
  auto* serve = app.add_subcommand(
      "serve", "serve jobs of a df11-coordinator as one worker group (one process, or the ranks "
               "of an mpirun on a sharded model)");
  for (CLI::App* cmd : {gen, serve}) AddRunFlags(cmd, &c.run);
  AddGenerateFlags(gen, &c.generate);
  AddServeFlags(serve, &c.serve);
  PlanFlags plan_flags;
  CLI::App* plan = AddPlanCommand(&app, &plan_flags);
  BenchFlags bench_flags;
  CLI::App* bench = AddBenchCommand(&app, &bench_flags);
  LogitsFlags logits_flags;
  CLI::App* logits = AddLogitsCommand(&app, &logits_flags);
  if (std::optional<int> exit = ParseFlags(&app, argc, argv)) return *exit;
  if (plan->parsed()) return RunPlan(plan_flags);
  if (bench->parsed() || logits->parsed()) {
    InitLogging(argv[0], LoggingOptions{});
    return bench->parsed() ? RunBench(bench_flags) : RunLogits(logits_flags);
  }
  c.serving = serve->parsed();
  if (std::string e = RunFlagsError(c.run, c.name()); !e.empty()) {
    std::fprintf(stderr, "%s\n", e.c_str());
    return 2;
  }
  if (!c.serving && c.generate.prompt.empty() && c.generate.input.empty()) {
    std::fprintf(stderr,
                 "df11-run generate: give --prompt TEXT or --input IN.jsonl --output OUT.jsonl\n");
    return 2;
  }
  if (c.serving) {  // a bad token file is refused before any weight is read
    StatusOr<std::string> token =
        ReadTokenFile(c.serve.token_file, c.serve.allow_insecure_token);
    if (!token.ok()) return Fail(token.status());
    c.serve.worker.control.token = std::move(token).value();
  }
  InitLogging(argv[0], LoggingOptions{});
  if (IsShardedModelDir(c.run.model)) return RunDistributed(c, argc, argv);
  return RunSingle(c);
}
