// SPDX-License-Identifier: Apache-2.0
// The flags of `df11-run generate` and `df11-run serve`: the model and generation flags both
// take (RunFlags), and each command's own (GenerateFlags, ServeFlags). Flags are read straight
// into the option structs they set (GeneratorOptions, BackendFlags, WorkerOptions), which are
// handed down whole.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "launcher/backend_select.h"
#include "launcher/worker/batch_generator.h"
#include "launcher/worker/worker_agent.h"

namespace df11 {

struct RunFlags {
  std::string model;             // --model: BF16, DF11 or sharded directory
  BackendFlags backend;          // --device, --threads, --max-step-tokens, ...
  double collective_timeout_s = 120;
  // --max-tokens, sampling, --seed, --chat (defaults.fields); --batch-size, --batching
  // (engine). The engine's KV budget and tokens per step are resolved after the backend is
  // built (ResolveGeneratorOptions).
  GeneratorOptions generator;
  std::optional<int64_t> kv_tokens;  // --kv-tokens; unset: the backend's memory plan
};

struct GenerateFlags {
  std::string prompt;         // --prompt: one prompt, printed response
  std::string input, output;  // --input/--output: JSONL batch files
};

struct ServeFlags {
  std::string coordinator;  // HOST:PORT
  std::string token_file;
  bool allow_insecure_token = false;
  double rpc_timeout_s = 10;
  WorkerOptions worker;  // --max-items, --heartbeat-seconds, --idle-exit-seconds
};

// Adds the flags to `cmd`; the structs must outlive parsing.
void AddRunFlags(CLI::App* cmd, RunFlags* flags);
void AddGenerateFlags(CLI::App* cmd, GenerateFlags* flags);
void AddServeFlags(CLI::App* cmd, ServeFlags* flags);

// Checks what single flags cannot: the sampling flags against the sampler's rules and
// --batch-size against --max-step-tokens. "" or the message (naming the flags; `command` is
// "generate" or "serve").
std::string RunFlagsError(const RunFlags& flags, const char* command);

// The generator's options with what the backend decides: the engine schedules within the step
// tokens the backend was sized for, and with the KV budget of its memory plan (`plan_kv_tokens`,
// 0: none) unless --kv-tokens was given.
GeneratorOptions ResolveGeneratorOptions(const RunFlags& flags, int64_t plan_kv_tokens);

}  // namespace df11
