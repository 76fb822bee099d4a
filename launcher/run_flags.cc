// SPDX-License-Identifier: Apache-2.0
#include "launcher/run_flags.h"

#include <limits>
#include <string>
#include <string_view>

#include "launcher/cli_flags.h"
#include "launcher/control/token_file.h"

namespace df11 {

void AddRunFlags(CLI::App* cmd, RunFlags* f) {
  RequestFields& defaults = f->generator.defaults.fields;
  EngineOptions& engine = f->generator.engine;
  cmd->add_option("--model", f->model, "model directory (BF16, DF11, or sharded)")->required();
  // As "max_tokens" in a request: at least 1 (0 would generate nothing, as vLLM refuses).
  cmd->add_option("-n,--max-tokens", defaults.max_tokens, "maximum new tokens per request (>= 1)")
      ->check(IntegerIn(1))->capture_default_str();
  // Sampling flags: finite numbers here; their ranges are the sampler's (RunFlagsError).
  SamplingParams& s = defaults.sampling;
  cmd->add_option("--temp", s.temperature, "sampling temperature; 0 is greedy")
      ->check(FiniteNumber())->capture_default_str();
  cmd->add_option("--top-k", s.top_k, "keep the k most likely tokens; 0 is off")
      ->check(IntegerIn(0, std::numeric_limits<int>::max()))->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "nucleus sampling mass in (0, 1]; 1 is off")
      ->check(FiniteNumber())->capture_default_str();
  cmd->add_option("--min-p", s.min_p, "drop tokens below min-p times the top probability")
      ->check(FiniteNumber())->capture_default_str();
  cmd->add_option("--repeat-penalty", s.repetition_penalty, "repetition penalty; 1 is off")
      ->check(FiniteNumber())->capture_default_str();
  cmd->add_option("--seed", defaults.seed,
                  "sampling seed (per request unless a line sets its own)")
      ->check(Unsigned64())->capture_default_str();
  cmd->add_option("--batch-size", engine.batch_size, "most sequences running at once")
      ->check(IntegerIn(1))->capture_default_str();
  cmd->add_option_function<std::string>(
         "--batching", [&engine](const std::string& v) { engine.continuous = v == "continuous"; },
         "continuous: a finished sequence's place goes to the next request at once; static: a "
         "new batch starts when the whole batch has finished")
      ->check(CLI::IsMember({"continuous", "static"}))->default_str("continuous");
  cmd->add_option("--max-step-tokens", f->backend.forward.max_step_tokens,
                  "most tokens one forward step takes (decoding sequences plus prompt chunks: "
                  "longer prompts are prefilled over several steps); the GPU's activations are "
                  "sized for it")
      ->check(IntegerIn(1, int64_t{1} << 24))->capture_default_str();
  cmd->add_option_function<int64_t>(
         "--kv-tokens", [f](int64_t v) { f->kv_tokens = v; },
         "KV cache budget in tokens over the running sequences: a pool of BF16 blocks that "
         "sequences take as they grow; requests wait for room. 0: no limit (CPU only); default: "
         "the pool the memory plan allocates (GPU, also the most allowed) or 90 % of the "
         "available host memory (CPU)")
      ->check(IntegerIn(0));
  cmd->add_option("--kv-block-tokens", f->backend.forward.kv_block_tokens,
                  "positions per block of the paged KV cache")
      ->check(IntegerIn(1, 4096))->capture_default_str();
  cmd->add_flag_function(
      "--no-prefix-cache", [&engine](int64_t) { engine.prefix_caching = false; },
      "do not share the KV blocks of equal prompt prefixes between requests");
  SpeculativeOptions& spec = engine.speculative;
  cmd->add_option_function<std::string>(
         "--speculative",
         [&spec](const std::string& v) {
           if (v == "prompt-lookup") {
             spec.method = SpeculativeOptions::Method::kPromptLookup;
           } else {
             spec.method = SpeculativeOptions::Method::kDraftModel;
             spec.draft_model = v.substr(std::string_view("draft:").size());
           }
         },
         "speculative decoding: prompt-lookup drafts the tokens that followed the latest earlier "
         "occurrence of each sequence's last tokens in its prompt and output; draft:DIR drafts "
         "with the model in DIR (BF16 or DF11, the target's tokenizer; run on the leader); the "
         "target checks the drafts in one step (the same output, fewer steps when drafts are "
         "accepted; CPU backend)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v == "prompt-lookup" || (v.rfind("draft:", 0) == 0 && v.size() > 6)) return "";
            return "expected prompt-lookup or draft:DIR, got \"" + v + "\"";
          },
          "prompt-lookup|draft:DIR"));
  cmd->add_option("--num-speculative-tokens", spec.num_tokens,
                  "most drafted tokens per sequence and step (--speculative)")
      ->check(IntegerIn(1, 64))->capture_default_str();
  cmd->add_option("--speculative-ngram", spec.ngram,
                  "prompt lookup: the longest tail of a sequence searched for, in tokens (shorter "
                  "ones are tried when it does not recur)")
      ->check(IntegerIn(1, 64))->capture_default_str();
  cmd->add_flag("--chat", f->generator.defaults.chat, "wrap prompts in the model's chat template");
  cmd->add_option("--threads", f->backend.forward.threads, "CPU threads (0: all)")
      ->check(IntegerIn(0, std::numeric_limits<int>::max()));
  AddBackendFlags(cmd, &f->backend);
  cmd->add_option("--collective-timeout", f->collective_timeout_s,
                  "seconds a rank waits in a collective before ending the job")
      ->check(NumberIn(0, 1e6, /*lo_open=*/true))->capture_default_str();
}

void AddGenerateFlags(CLI::App* cmd, GenerateFlags* f) {
  auto* prompt = cmd->add_option("--prompt", f->prompt, "one prompt; prints the response");
  auto* input = cmd->add_option("--input", f->input, "JSONL requests, one per line (- reads standard input)");
  auto* output = cmd->add_option(
      "--output", f->output,
      "JSONL results (a file), one per input line; appended to: custom_ids already there are "
      "skipped");
  prompt->excludes(input);
  input->needs(output);
  output->needs(input);
}

void AddServeFlags(CLI::App* cmd, ServeFlags* f) {
  cmd->add_option("--coordinator", f->coordinator, "HOST:PORT of df11-coordinator")->required();
  cmd->add_option("--token-file", f->token_file, "file holding the coordinator's token")
      ->required()->check(CLI::ExistingFile);
  cmd->add_flag(kAllowInsecureTokenFlag, f->allow_insecure_token, kAllowInsecureTokenHelp);
  cmd->add_option("--max-items", f->worker.max_items,
                  "exit after serving this many items (0: no limit)")
      ->check(IntegerIn(0))->capture_default_str();
  cmd->add_option("--heartbeat-seconds", f->worker.heartbeat_s,
                  "heartbeat period (0: a third of the coordinator's lease)")
      ->check(NumberIn(0, 1e6))->capture_default_str();
  cmd->add_option("--idle-exit-seconds", f->worker.idle_exit_s,
                  "exit 0 after this long without work (0: never)")
      ->check(NumberIn(0, 1e9))->capture_default_str();
  cmd->add_option("--rpc-timeout", f->rpc_timeout_s, "seconds to wait for each coordinator call")
      ->check(NumberIn(0.1, 60.0))->capture_default_str();
}

namespace {

// The sampling flags against the sampler's rules (as a request's fields are): "" or the message
// naming the flag.
std::string SamplingFlagsError(const SamplingParams& p) {
  const char* rule = "";
  const char* flag = "";
  double value = 0;
  switch (InvalidSamplingField(p, &rule)) {
    case SamplingField::kNone:
      return "";
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
  char line[256];
  std::snprintf(line, sizeof(line), "%s %g: expected %s", flag, value, rule);
  return line;
}

}  // namespace

std::string RunFlagsError(const RunFlags& f, const char* command) {
  const std::string prefix = std::string("df11-run ") + command + ": ";
  if (std::string e = SamplingFlagsError(f.generator.defaults.fields.sampling); !e.empty()) {
    return prefix + e;
  }
  // Every running sequence puts a token into each step, so a step can hold a full batch only if
  // --max-step-tokens allows it (the GPU's activations are sized by it).
  const int64_t batch = f.generator.engine.batch_size, step = f.backend.forward.max_step_tokens;
  if (batch > step) {
    return prefix + "--batch-size " + std::to_string(batch) + " is larger than --max-step-tokens " +
           std::to_string(step) + ": every running sequence adds a token to each step; raise "
           "--max-step-tokens or lower --batch-size";
  }
  return "";
}

GeneratorOptions ResolveGeneratorOptions(const RunFlags& f, int64_t plan_kv_tokens) {
  GeneratorOptions g = f.generator;
  g.engine.max_step_tokens = f.backend.forward.max_step_tokens;
  g.engine.kv_tokens = f.kv_tokens.value_or(plan_kv_tokens);
  return g;
}

}  // namespace df11
