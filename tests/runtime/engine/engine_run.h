// SPDX-License-Identifier: Apache-2.0
// One Engine::Generate call's outcome as the engine tests check it: results, statistics and the
// KV blocks each group still holds afterwards.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/kv_blocks.h"

namespace df11::test_support {

struct EngineRun {
  std::vector<GenerationResult> results;
  EngineStats stats;
  int64_t used_after[2] = {-1, -1};  // per block group (kFullGroup, kSlidingGroup); -1: none
  int64_t sliding_total = 0;         // blocks of the sliding-window group's pool
};

// Runs `requests` through `engine`, expecting the call itself to succeed.
inline EngineRun RunEngine(Engine& engine, std::span<const GenerationRequest> requests) {
  auto results = engine.Generate(requests);
  EXPECT_TRUE(results.ok()) << results.status().ToString();
  EngineRun run;
  if (results.ok()) run.results = std::move(results).value();
  run.stats = engine.stats();
  if (const KvBlocks* blocks = engine.kv_blocks(); blocks != nullptr) {
    for (int g = 0; g < blocks->groups(); ++g) run.used_after[g] = blocks->used_blocks(g);
    if (blocks->groups() == 2) run.sliding_total = blocks->total_blocks(kSlidingGroup);
  }
  return run;
}

// n greedy requests: prompts of a prefix of `shared` tokens shared by all, then 2..9 tokens of
// their own.
inline std::vector<GenerationRequest> PrefixedRequests(int n, int shared, int64_t max_tokens) {
  std::vector<GenerationRequest> r(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    r[i].id = "r" + std::to_string(i);
    for (int j = 0; j < shared; ++j) r[i].prompt.push_back(300 + j);
    for (int j = 0; j < 2 + i % 8; ++j) r[i].prompt.push_back(5 + 11 * i + j);
    r[i].max_tokens = max_tokens;
  }
  return r;
}

}  // namespace df11::test_support
