// SPDX-License-Identifier: Apache-2.0
// `df11-run generate`: loads a BF16 or DF11 model and generates, from one --prompt (printed with
// timings and memory) or from a JSONL batch (--input/--output, one result line per input line).
#include <CLI/CLI.hpp>
#include <glog/logging.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include "launcher/batch/batch_io.h"
#include "runtime/core/logging.h"
#include "runtime/engine/engine.h"
#include "parallel/mpi_bootstrap.h"
#include "runtime/engine/distributed_runner.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/shard_weights.h"
#include "runtime/model/transformer.h"
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
  bool chat = false;
  int threads = 0;
  double collective_timeout_s = 120;
};

int Fail(const Status& s) {
  std::fprintf(stderr, "df11-run: %s\n", s.ToString().c_str());
  return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
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

std::string JsonLine(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void PrintLoaded(const std::string& what, double seconds, const ModelWeights& w,
                 const Transformer& t) {
  std::fprintf(stderr,
               "loaded %s in %.2f s: weights %.1f MB (%.1f MB DF11-compressed), layer scratch "
               "%.1f MB\n",
               what.c_str(), seconds, w.WeightBytes() / 1e6, w.CompressedBytes() / 1e6,
               t.ScratchBytes() / 1e6);
}

// The leader's part: requests in, generation through `runner`, results out.
int ServeRequests(const GenerateFlags& f, const ModelConfig& config, StepRunner* runner) {
  auto tokenizer = Tokenizer::FromDirectory(f.model);
  if (!tokenizer.ok()) return Fail(tokenizer.status().WithContext("tokenizer of " + f.model));
  std::optional<ChatTemplate> chat;
  if (auto c = ChatTemplate::FromDirectory(f.model); c.ok()) chat = std::move(c).value();

  BatchDefaults defaults;
  defaults.max_tokens = f.max_tokens;
  defaults.sampling.temperature = f.temperature;
  defaults.sampling.top_k = f.top_k;
  defaults.sampling.top_p = f.top_p;
  defaults.sampling.min_p = f.min_p;
  defaults.sampling.repetition_penalty = f.repeat_penalty;
  defaults.seed = f.seed;
  defaults.chat = f.chat;

  EngineOptions eopts;
  eopts.batch_size = f.batch_size;
  eopts.tokenizer = &*tokenizer;
  for (int64_t id : config.eos_token_ids) eopts.eos_ids.push_back(static_cast<int32_t>(id));
  if (tokenizer->eos_id()) eopts.eos_ids.push_back(*tokenizer->eos_id());
  if (chat) {
    for (int32_t id : chat->StopTokenIds(*tokenizer)) eopts.eos_ids.push_back(id);
  }
  Engine engine(runner, eopts);

  // Requests from --prompt or from the input file; per-line errors are kept in order.
  std::vector<BatchItem> items;
  if (!f.prompt.empty()) {
    BatchItem item;
    item.custom_id = "prompt";
    auto ids = EncodePrompt(f.prompt, f.chat, *tokenizer, chat ? &*chat : nullptr);
    if (!ids.ok()) return Fail(ids.status().WithContext("--prompt"));
    GenerationRequest r;
    r.id = "prompt";
    r.prompt = std::move(ids).value();
    r.max_tokens = f.max_tokens;
    r.sampling = defaults.sampling;
    r.seed = f.seed;
    item.request = std::move(r);
    items.push_back(std::move(item));
  } else {
    std::ifstream in(f.input);
    if (!in) return Fail(Status::NotFound("--input " + f.input + ": cannot open"));
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      items.push_back(ParseBatchLine(line, n, defaults, *tokenizer, chat ? &*chat : nullptr));
    }
  }
  std::vector<GenerationRequest> requests;
  for (const BatchItem& it : items) {
    if (it.request) requests.push_back(*it.request);
  }
  auto results = engine.Generate(requests);
  if (!results.ok()) return Fail(results.status());

  const EngineStats& s = engine.stats();
  if (!f.prompt.empty()) {
    const GenerationResult& r = (*results)[0];
    if (!r.error.empty()) return Fail(Status::InvalidArgument(r.error));
    std::printf("%s\n", r.text.c_str());
  } else {
    std::ofstream out(f.output, std::ios::trunc);
    if (!out) return Fail(Status::IoError("--output " + f.output + ": cannot create"));
    size_t next = 0;
    for (const BatchItem& it : items) {
      out << JsonLine(it.request ? ResultToJson((*results)[next++]) : ErrorToJson(it.custom_id, it.error));
    }
    if (!out.flush()) return Fail(Status::IoError("--output " + f.output + ": write failed"));
  }
  std::fprintf(stderr,
               "prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s "
               "(%.1f tokens/s); peak memory %.1f MB\n",
               static_cast<long long>(s.prompt_tokens), s.prefill_seconds,
               s.prefill_seconds > 0 ? s.prompt_tokens / s.prefill_seconds : 0.0,
               static_cast<long long>(s.generated_tokens), s.decode_seconds,
               s.decode_seconds > 0 ? s.generated_tokens / s.decode_seconds : 0.0,
               PeakRssBytes() / 1e6);
  return 0;
}

int RunSingle(const GenerateFlags& f) {
  const auto start = std::chrono::steady_clock::now();
  auto weights = LoadModelWeights(f.model);
  if (!weights.ok()) return Fail(weights.status());
  TransformerOptions topts;
  topts.threads = f.threads;
  Transformer transformer(&*weights, topts);
  PrintLoaded(f.model, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
              *weights, transformer);
  LocalStepRunner runner(&transformer);
  return ServeRequests(f, weights->config, &runner);
}

// Every rank learns whether any rank failed, and all exit with the first failure's message.
bool AgreeOnErrors(Communicator* world, int rank, const Status& status) {
  constexpr int64_t kLen = 512;
  std::vector<char> mine(kLen, 0), all(kLen * world->size(), 0);
  if (!status.ok()) {
    const std::string text = "rank " + std::to_string(rank) + ": " + status.ToString();
    std::copy_n(text.begin(), std::min<size_t>(text.size(), kLen - 1), mine.begin());
  }
  world->AllGather(mine.data(), all.data(), kLen);
  for (int r = 0; r < world->size(); ++r) {
    if (all[r * kLen] != 0) {
      std::fprintf(stderr, "df11-run: %s\n", &all[r * kLen]);
      return false;
    }
  }
  return true;
}

// mpirun/srun: each rank loads only its shard; rank 0 leads, the others follow its plans.
int RunDistributed(const GenerateFlags& f, int argc, char** argv) {
  World world = MpiInit(&argc, &argv);
  LoggingOptions logging;
  logging.rank = world.rank;
  InitLogging(argv[0], logging);
  auto layout = ReadShardLayout(f.model);
  if (!layout.ok()) {
    Fail(layout.status());
    MpiFinalize();
    return 1;
  }
  if (layout->world_size != world.size) {
    Fail(Status::InvalidArgument(
        f.model + "/manifest.json is laid out for " + std::to_string(layout->world_size) +
        " ranks (tp " + std::to_string(layout->tp) + " x pp " + std::to_string(layout->pp) +
        ") but the job has " + std::to_string(world.size) + "; launch with -np " +
        std::to_string(layout->world_size)));
    MpiFinalize();
    return 1;
  }
  auto world_comm = MpiWorldCommunicator(f.collective_timeout_s);
  auto tp_comm = MpiSplitCommunicator(layout->Stage(world.rank), f.collective_timeout_s);
  const auto start = std::chrono::steady_clock::now();
  auto weights = LoadShardWeights(f.model, *layout, world.rank);
  if (!AgreeOnErrors(world_comm.get(), world.rank, weights.status())) {
    world_comm.reset();
    tp_comm.reset();
    MpiFinalize();
    return 1;
  }
  TransformerOptions topts;
  topts.threads = f.threads;
  topts.tp_leader = layout->TpRank(world.rank) == 0;
  if (layout->tp > 1) {
    topts.all_reduce = [c = tp_comm.get()](float* d, int64_t n) { c->AllReduceSum(d, n); };
  }
  Transformer transformer(&*weights, topts);
  LOG(INFO) << "rank " << world.rank << " on " << world.host << ": stage "
            << layout->Stage(world.rank) << ", tp rank " << layout->TpRank(world.rank)
            << ", layers [" << weights->first_layer << ", "
            << weights->first_layer + static_cast<int64_t>(weights->layers.size())
            << "), weights " << weights->WeightBytes() << " bytes";
  DistributedContext ctx{world.rank, *layout, world_comm.get(), tp_comm.get()};
  DistributedStepRunner runner(&transformer, ctx);
  int rc = 0;
  if (world.rank == 0) {
    PrintLoaded(f.model + " (rank 0 of " + std::to_string(world.size) + ")",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                *weights, transformer);
    rc = ServeRequests(f, weights->config, &runner);
    runner.Shutdown();
  } else {
    Status s = runner.Serve();
    if (!s.ok()) rc = Fail(s);
  }
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
  gen->add_option("--model", f.model, "model directory (BF16 or DF11)")->required();
  auto* prompt = gen->add_option("--prompt", f.prompt, "one prompt; prints the response");
  auto* input = gen->add_option("--input", f.input, "JSONL requests, one per line");
  auto* output = gen->add_option("--output", f.output, "JSONL results, one per input line");
  prompt->excludes(input);
  input->needs(output);
  output->needs(input);
  gen->add_option("-n,--max-tokens", f.max_tokens, "maximum new tokens per request")
      ->check(CLI::PositiveNumber)->capture_default_str();
  gen->add_option("--temp", f.temperature, "sampling temperature; 0 is greedy")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  gen->add_option("--top-k", f.top_k, "keep the k most likely tokens; 0 is off")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  gen->add_option("--top-p", f.top_p, "nucleus sampling mass; 1 is off")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  gen->add_option("--min-p", f.min_p, "drop tokens below min-p times the top probability")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  gen->add_option("--repeat-penalty", f.repeat_penalty, "repetition penalty; 1 is off")
      ->check(CLI::Range(1e-6, 100.0))->capture_default_str();
  gen->add_option("--seed", f.seed, "sampling seed (per request unless a line sets its own)")
      ->capture_default_str();
  gen->add_option("--batch-size", f.batch_size, "sequences decoded together")
      ->check(CLI::PositiveNumber)->capture_default_str();
  gen->add_flag("--chat", f.chat, "wrap prompts in the model's chat template");
  gen->add_option("--threads", f.threads, "CPU threads (0: all)")->check(CLI::NonNegativeNumber);
  gen->add_option("--collective-timeout", f.collective_timeout_s,
                  "seconds a rank waits in a collective before ending the job")
      ->check(CLI::PositiveNumber)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (f.prompt.empty() && f.input.empty()) {
    std::fprintf(stderr, "df11-run generate: give --prompt TEXT or --input IN.jsonl --output OUT.jsonl\n");
    return 2;
  }
  InitLogging(argv[0], LoggingOptions{});
  if (IsShardedModelDir(f.model)) return RunDistributed(f, argc, argv);
  return RunSingle(f);
}
