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
#include "launcher/worker/batch_generator.h"
#include "launcher/worker/worker_agent.h"
#include "parallel/mpi_bootstrap.h"
#include "runtime/core/file_util.h"
#include "runtime/core/logging.h"
#include "runtime/engine/distributed_runner.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/shard_weights.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"

namespace df11 {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string input, output;
  int64_t max_tokens = 128;
  float temperature = 0;
  int top_k = 0;
  float top_p = 1;
  float min_p = 0;
  float repeat_penalty = 1;
  uint64_t seed = 0;
  int64_t batch_size = 8;
  std::string batching = "continuous";
  int64_t kv_tokens = -1;  // -1: the backend's plan (the smallest over the ranks)
  bool chat = false;
  BackendFlags backend;
  double collective_timeout_s = 120;
  // serve
  bool serve = false;
  std::string coordinator;
  std::string token_file;
  bool allow_insecure_token = false;
  std::string token;  // read from token_file before the model is loaded
  int64_t max_items = 0;
  double heartbeat_s = 0;
  double idle_exit_s = 0;
  double rpc_timeout_s = 10;
};

int Fail(const Status& s) {
  std::fprintf(stderr, "df11-run: %s\n", s.ToString().c_str());
  return ExitCode(s);
}

// The sampling flags against the sampler's rules (as a request's fields are): 0, or exit 2
// naming the flag.
int CheckSamplingFlags(const GenerateFlags& f) {
  SamplingParams p;
  p.temperature = f.temperature;
  p.top_k = f.top_k;
  p.top_p = f.top_p;
  p.min_p = f.min_p;
  p.repetition_penalty = f.repeat_penalty;
  const char* rule = "";
  const char* flag = "";
  double value = 0;
  switch (InvalidSamplingField(p, &rule)) {
    case SamplingField::kNone:
      return 0;
    case SamplingField::kTemperature:
      flag = "--temp", value = p.temperature;
      break;
    case SamplingField::kTopK:
      flag = "--top-k", value = p.top_k;
      break;
    case SamplingField::kTopP:
      flag = "--top-p", value = p.top_p;
      break;
    case SamplingField::kMinP:
      flag = "--min-p", value = p.min_p;
      break;
    case SamplingField::kRepetitionPenalty:
      flag = "--repeat-penalty", value = p.repetition_penalty;
      break;
  }
  std::fprintf(stderr, "df11-run %s: %s %g: expected %s\n", f.serve ? "serve" : "generate", flag,
               value, rule);
  return 2;
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
                 const Backend& b) {
  std::fprintf(stderr,
               "loaded %s in %.2f s on %s: weights %.1f MB (%.1f MB DF11-compressed), layer "
               "scratch %.1f MB\n%s",
               what.c_str(), seconds, b.device.c_str(), w.WeightBytes() / 1e6,
               w.CompressedBytes() / 1e6, b.forward->ScratchBytes() / 1e6, b.memory_plan.c_str());
}

// What `serve` registers: the group's ranks, hosts and devices, and which model it serves.
struct GroupIdentity {
  std::vector<std::string> hosts;  // one per rank
  std::string manifest_hash;
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

int Serve(const GenerateFlags& f, const GroupIdentity& id, BatchGenerator* generator,
          StepRunner* keep_alive) {
  WorkerOptions o;
  if (Status s = ParseHostPort(f.coordinator, &o.control.host, &o.control.port); !s.ok()) {
    return Fail(s);
  }
  o.control.token = f.token;
  o.control.rpc_timeout_ms = static_cast<int32_t>(f.rpc_timeout_s * 1000);
  o.control.connect_timeout_ms = std::min(o.control.rpc_timeout_ms, 5000);
  o.group.ranks = static_cast<int32_t>(id.hosts.size());
  o.group.hosts = id.hosts;
  for (const std::string& h : id.hosts) o.group.devices.push_back(h + ":" + f.backend.device);
  o.group.manifest_hash = id.manifest_hash;
  // With continuous batching a lease holds two batches, so places that short answers free are
  // refilled from it instead of waiting for the lease's longest answer.
  const int64_t per_lease = f.batching == "continuous" ? 2 * f.batch_size : f.batch_size;
  o.lease_items = static_cast<int32_t>(std::min<int64_t>(per_lease, 1 << 20));
  o.max_items = f.max_items;
  o.heartbeat_s = f.heartbeat_s;
  o.idle_exit_s = f.idle_exit_s;
  // Followers wait for plans at most --collective-timeout: keep-alive steps well within it.
  o.keepalive_s = std::min(5.0, f.collective_timeout_s / 4);
  GeneratorItemProcessor processor(generator, keep_alive);
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

// The leader's part: requests in, generation through `runner`, results out (`files`: the
// opened --input and --output, or null).
int Lead(const GenerateFlags& f, const ModelConfig& config, StepRunner* runner,
         const GroupIdentity& id, StepRunner* keep_alive, BatchFiles* files) {
  GeneratorOptions g;
  g.model = f.model;
  g.batch_size = f.batch_size;
  g.continuous = f.batching == "continuous";
  g.max_step_tokens = f.backend.max_tokens;
  g.kv_tokens = std::max<int64_t>(0, f.kv_tokens);
  g.defaults.max_tokens = f.max_tokens;
  g.defaults.sampling.temperature = f.temperature;
  g.defaults.sampling.top_k = f.top_k;
  g.defaults.sampling.top_p = f.top_p;
  g.defaults.sampling.min_p = f.min_p;
  g.defaults.sampling.repetition_penalty = f.repeat_penalty;
  g.defaults.seed = f.seed;
  g.defaults.chat = f.chat;
  auto generator = BatchGenerator::Create(g, config, runner);
  if (!generator.ok()) return Fail(generator.status());
  if (f.serve) return Serve(f, id, generator->get(), keep_alive);

  if (!f.prompt.empty()) {
    BatchItem item;
    item.custom_id = "prompt";
    auto ids = (*generator)->EncodePrompt(f.prompt);
    if (!ids.ok()) return Fail(ids.status().WithContext("--prompt"));
    GenerationRequest r;
    r.id = "prompt";
    r.prompt = std::move(ids).value();
    r.max_tokens = f.max_tokens;
    r.sampling = g.defaults.sampling;
    r.seed = f.seed;
    item.request = std::move(r);
    auto results = (*generator)->Generate({item});
    if (!results.ok()) return Fail(results.status());
    const GenerationResult& r0 = (*results)[0];
    if (!r0.error.empty()) return Fail(Status::InvalidArgument(r0.error));
    std::printf("%s\n", r0.text.c_str());
  } else {
    auto summary = RunBatchFile(generator->get(), files);
    if (!summary.ok()) return Fail(summary.status());
  }
  const EngineStats& s = (*generator)->stats();
  std::fprintf(stderr,
               "prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s "
               "(%.1f tokens/s); peak memory %.1f MB\n",
               static_cast<long long>(s.prompt_tokens), s.prefill_seconds,
               s.prefill_seconds > 0 ? s.prompt_tokens / s.prefill_seconds : 0.0,
               static_cast<long long>(s.decode_tokens), s.decode_seconds,
               s.decode_seconds > 0 ? s.decode_tokens / s.decode_seconds : 0.0,
               PeakRssBytes() / 1e6);
  std::fprintf(stderr, "steps: %lld prefill, %lld decode (%s batching, batch size %lld); %lld "
                       "tokens generated; peak KV reservation %lld tokens%s\n",
               static_cast<long long>(s.prefill_steps), static_cast<long long>(s.decode_steps),
               f.batching.c_str(), static_cast<long long>(f.batch_size),
               static_cast<long long>(s.generated_tokens), static_cast<long long>(s.peak_kv_tokens),
               f.kv_tokens > 0 ? (" of " + std::to_string(f.kv_tokens)).c_str() : "");
  if (!s.first_token_seconds.empty()) {
    std::fprintf(stderr,
                 "latency from the start, over %lld request%s: first token median %.3f s, p90 "
                 "%.3f s; finished median %.3f s, p90 %.3f s\n",
                 static_cast<long long>(s.served_requests), s.served_requests == 1 ? "" : "s",
                 Quantile(s.first_token_seconds, 0.5),
                 Quantile(s.first_token_seconds, 0.9), Quantile(s.finish_seconds, 0.5),
                 Quantile(s.finish_seconds, 0.9));
  }
  return 0;
}

// --input and --output, opened (and the output locked) before the model loads, so that a wrong
// path or a second run on the same output is refused at once.
StatusOr<BatchFiles> OpenFlagFiles(const GenerateFlags& f) {
  if (f.serve || f.input.empty()) return BatchFiles{};
  return OpenBatchFiles(f.input, f.output);
}

int RunSingle(const GenerateFlags& f) {
  auto files = OpenFlagFiles(f);
  if (!files.ok()) return Fail(files.status());
  const auto start = std::chrono::steady_clock::now();
  auto weights = LoadModelWeights(f.model);
  if (!weights.ok()) return Fail(weights.status());
  BackendGroup group;
  group.local_rank = LocalRankFromEnvironment();
  auto backend = MakeBackend(f.backend, &*weights, group);
  if (!backend.ok()) return Fail(backend.status());
  PrintLoaded(f.model, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
              *weights, *backend);
  LocalStepRunner runner(backend->forward.get());
  GenerateFlags resolved = f;
  if (resolved.kv_tokens < 0) resolved.kv_tokens = backend->forward->KvTokenBudget();
  GroupIdentity id;
  if (f.serve) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    id.hosts = {host};
    auto hash = ModelHash(f.model);
    if (!hash.ok()) return Fail(hash.status());
    id.manifest_hash = *hash;
  }
  return Lead(resolved, weights->config, &runner, id, nullptr, &*files);
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

// mpirun/srun: each rank loads only its shard; rank 0 leads, the others follow its plans.
int RunDistributed(const GenerateFlags& f, int argc, char** argv) {
  World world = MpiInit(&argc, &argv);
  LoggingOptions logging;
  logging.rank = world.rank;
  InitLogging(argv[0], logging);
  auto layout = ReadShardLayout(f.model);
  if (!layout.ok()) {
    const int rc = Fail(layout.status());
    MpiFinalize();
    return rc;
  }
  if (layout->world() != world.size) {
    const int rc = Fail(Status::InvalidArgument(
        f.model + "/manifest.json is laid out for " + std::to_string(layout->world()) +
        " ranks (tp " + std::to_string(layout->tp) + " x pp " + std::to_string(layout->pp) +
        ") but the job has " + std::to_string(world.size) + "; launch with -np " +
        std::to_string(layout->world())));
    MpiFinalize();
    return rc;
  }
  auto world_comm = MpiWorldCommunicator(f.collective_timeout_s);
  auto tp_comm = MpiSplitCommunicator(layout->Stage(world.rank), f.collective_timeout_s);
  // Rank 0 reads the input and writes the output.
  StatusOr<BatchFiles> files =
      world.rank == 0 ? OpenFlagFiles(f) : StatusOr<BatchFiles>(BatchFiles{});
  if (const int rc = AgreeOnErrors(world_comm.get(), world.rank, files.status()); rc != 0) {
    world_comm.reset();
    tp_comm.reset();
    MpiFinalize();
    return rc;
  }
  const auto start = std::chrono::steady_clock::now();
  auto weights = LoadShardWeights(f.model, *layout, world.rank);
  if (const int rc = AgreeOnErrors(world_comm.get(), world.rank, weights.status()); rc != 0) {
    world_comm.reset();
    tp_comm.reset();
    MpiFinalize();
    return rc;
  }
  BackendGroup group;
  group.tp = layout->tp > 1 ? tp_comm.get() : nullptr;
  group.tp_leader = layout->TpRank(world.rank) == 0;
  group.local_rank = world.local_rank;
  group.local_size = world.local_size;
  group.collective_timeout_s = f.collective_timeout_s;
  auto backend = MakeBackend(f.backend, &*weights, group);
  if (const int rc = AgreeOnErrors(world_comm.get(), world.rank, backend.status()); rc != 0) {
    world_comm.reset();
    tp_comm.reset();
    MpiFinalize();
    return rc;
  }
  LOG(INFO) << "rank " << world.rank << " on " << world.host << ": stage "
            << layout->Stage(world.rank) << ", tp rank " << layout->TpRank(world.rank)
            << ", layers [" << weights->first_layer << ", "
            << weights->first_layer + static_cast<int64_t>(weights->layers.size())
            << "), weights " << weights->WeightBytes() << " bytes, device " << backend->device;
  if (!backend->memory_plan.empty()) LOG(INFO) << backend->memory_plan;
  DistributedContext ctx{world.rank, *layout, world_comm.get(), tp_comm.get()};
  DistributedStepRunner runner(backend->forward.get(), ctx);
  const int64_t kv_budget = GroupKvTokenBudget(world_comm.get(), backend->forward->KvTokenBudget());
  GenerateFlags resolved = f;
  if (resolved.kv_tokens < 0) resolved.kv_tokens = kv_budget;
  int rc = 0;
  if (world.rank == 0) {
    PrintLoaded(f.model + " (rank 0 of " + std::to_string(world.size) + ")",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                *weights, *backend);
    GroupIdentity id{GatherHosts(world_comm.get(), world.host), ""};
    if (f.serve) {
      auto hash = ModelHash(f.model);
      if (!hash.ok()) {
        rc = Fail(hash.status());
      } else {
        id.manifest_hash = *hash;
      }
    }
    if (rc == 0) {
      rc = Lead(resolved, weights->config, &runner, id, f.serve ? &runner : nullptr, &*files);
    }
    runner.Shutdown();
  } else {
    GatherHosts(world_comm.get(), world.host);
    Status s = runner.Serve();
    if (!s.ok()) rc = Fail(s);
  }
  backend->forward.reset();  // before the communicators it calls and MPI go away
  backend->keep_alive.reset();
  world_comm.reset();
  tp_comm.reset();
  MpiFinalize();
  return rc;
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) {
  using namespace df11;
  CLI::App app{"df11-run: generate text with a BF16 or DF11 model"};
  app.require_subcommand(1);
  GenerateFlags f;
  auto* gen = app.add_subcommand("generate", "generate from a prompt or a JSONL batch");
  auto* serve = app.add_subcommand(
      "serve", "serve jobs of a df11-coordinator as one worker group (one process, or the ranks "
               "of an mpirun on a sharded model)");
  // The model and generation flags both commands share.
  for (CLI::App* cmd : {gen, serve}) {
    cmd->add_option("--model", f.model, "model directory (BF16, DF11, or sharded)")->required();
    // As "max_tokens" in a request: at least 1 (0 would generate nothing, as vLLM refuses).
    cmd->add_option("-n,--max-tokens", f.max_tokens, "maximum new tokens per request (>= 1)")
        ->check(IntegerIn(1))->capture_default_str();
    // Sampling flags: finite numbers here; their ranges are the sampler's (CheckSamplingFlags).
    cmd->add_option("--temp", f.temperature, "sampling temperature; 0 is greedy")
        ->check(FiniteNumber())->capture_default_str();
    cmd->add_option("--top-k", f.top_k, "keep the k most likely tokens; 0 is off")
        ->check(IntegerIn(0, std::numeric_limits<int>::max()))->capture_default_str();
    cmd->add_option("--top-p", f.top_p, "nucleus sampling mass in (0, 1]; 1 is off")
        ->check(FiniteNumber())->capture_default_str();
    cmd->add_option("--min-p", f.min_p, "drop tokens below min-p times the top probability")
        ->check(FiniteNumber())->capture_default_str();
    cmd->add_option("--repeat-penalty", f.repeat_penalty, "repetition penalty; 1 is off")
        ->check(FiniteNumber())->capture_default_str();
    cmd->add_option("--seed", f.seed, "sampling seed (per request unless a line sets its own)")
        ->check(Unsigned64())->capture_default_str();
    cmd->add_option("--batch-size", f.batch_size, "most sequences running at once")
        ->check(IntegerIn(1))->capture_default_str();
    cmd->add_option("--batching", f.batching,
                    "continuous: a finished sequence's place goes to the next request at once; "
                    "static: a new batch starts when the whole batch has finished")
        ->check(CLI::IsMember({"continuous", "static"}))->capture_default_str();
    cmd->add_option("--max-step-tokens", f.backend.max_tokens,
                    "most tokens one forward step takes (decoding sequences plus prompt chunks: "
                    "longer prompts are prefilled over several steps); the GPU's activations are "
                    "sized for it")
        ->check(IntegerIn(1, int64_t{1} << 24))->capture_default_str();
    cmd->add_option("--kv-tokens", f.kv_tokens,
                    "KV cache budget in tokens over the running sequences (each counts prompt + "
                    "max new tokens); requests wait for room. 0: no limit; default: what the "
                    "memory plan leaves (GPU) or 90 % of the available host memory (CPU)")
        ->check(IntegerIn(0));
    cmd->add_flag("--chat", f.chat, "wrap prompts in the model's chat template");
    cmd->add_option("--threads", f.backend.threads, "CPU threads (0: all)")
        ->check(IntegerIn(0, std::numeric_limits<int>::max()));
    AddBackendFlags(cmd, &f.backend);
    cmd->add_option("--collective-timeout", f.collective_timeout_s,
                    "seconds a rank waits in a collective before ending the job")
        ->check(NumberIn(0, 1e6, /*lo_open=*/true))->capture_default_str();
  }
  auto* prompt = gen->add_option("--prompt", f.prompt, "one prompt; prints the response");
  auto* input = gen->add_option("--input", f.input, "JSONL requests, one per line");
  auto* output = gen->add_option(
      "--output", f.output,
      "JSONL results, one per input line; appended to: custom_ids already there are skipped");
  prompt->excludes(input);
  input->needs(output);
  output->needs(input);

  serve->add_option("--coordinator", f.coordinator, "HOST:PORT of df11-coordinator")->required();
  serve->add_option("--token-file", f.token_file, "file holding the coordinator's token")
      ->required()->check(CLI::ExistingFile);
  serve->add_flag(kAllowInsecureTokenFlag, f.allow_insecure_token, kAllowInsecureTokenHelp);
  serve->add_option("--max-items", f.max_items, "exit after serving this many items (0: no limit)")
      ->check(IntegerIn(0))->capture_default_str();
  serve->add_option("--heartbeat-seconds", f.heartbeat_s,
                    "heartbeat period (0: a third of the coordinator's lease)")
      ->check(NumberIn(0, 1e6))->capture_default_str();
  serve->add_option("--idle-exit-seconds", f.idle_exit_s,
                    "exit 0 after this long without work (0: never)")
      ->check(NumberIn(0, 1e9))->capture_default_str();
  serve->add_option("--rpc-timeout", f.rpc_timeout_s, "seconds to wait for each coordinator call")
      ->check(NumberIn(0.1, 60.0))->capture_default_str();
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
  f.serve = serve->parsed();
  if (int rc = CheckSamplingFlags(f); rc != 0) return rc;
  // Every running sequence puts a token into each step, so a step can hold a full batch only if
  // --max-step-tokens allows it (the GPU's activations are sized by it).
  if (f.batch_size > f.backend.max_tokens) {
    std::fprintf(stderr,
                 "df11-run %s: --batch-size %lld is larger than --max-step-tokens %lld: every "
                 "running sequence adds a token to each step; raise --max-step-tokens or lower "
                 "--batch-size\n",
                 f.serve ? "serve" : "generate", static_cast<long long>(f.batch_size),
                 static_cast<long long>(f.backend.max_tokens));
    return 2;
  }
  if (!f.serve && f.prompt.empty() && f.input.empty()) {
    std::fprintf(stderr, "df11-run generate: give --prompt TEXT or --input IN.jsonl --output OUT.jsonl\n");
    return 2;
  }
  if (f.serve) {  // a bad token file is refused before any weight is read
    StatusOr<std::string> token = ReadTokenFile(f.token_file, f.allow_insecure_token);
    if (!token.ok()) return Fail(token.status());
    f.token = std::move(token).value();
  }
  InitLogging(argv[0], LoggingOptions{});
  if (IsShardedModelDir(f.model)) return RunDistributed(f, argc, argv);
  return RunSingle(f);
}
