// SPDX-License-Identifier: Apache-2.0
// `df11-run bench`: greedy generation throughput of one model on one device per batch size
// (random seeded prompts; a warm-up step first; prefill and decode timed with device sync), one
// JSON line per batch size. `df11-run logits`: the float32 logits of every position of one
// prompt, raw little-endian (positions x vocab), so two runs compare with `cmp`.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "launcher/backend_select.h"

namespace df11 {

struct BenchFlags {
  std::string model;
  BackendFlags backend;
  std::vector<int64_t> batch_sizes = {1, 8, 64};
  int64_t prompt_tokens = 32;
  int64_t gen_tokens = 64;
  uint64_t seed = 1;
  std::string json;  // appends the JSON lines here too
};

struct LogitsFlags {
  std::string model;
  BackendFlags backend;
  std::vector<int32_t> ids;
  std::string out;
};

CLI::App* AddBenchCommand(CLI::App* app, BenchFlags* flags);
CLI::App* AddLogitsCommand(CLI::App* app, LogitsFlags* flags);
// Exit status 0, 1 on a failure, 2 for bad input.
int RunBench(const BenchFlags& flags);
int RunLogits(const LogitsFlags& flags);

}  // namespace df11
