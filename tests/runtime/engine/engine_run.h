// SPDX-License-Identifier: Apache-2.0
// One Engine::Generate call's outcome as the engine tests check it: results, statistics and the
// KV blocks each group still holds afterwards.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
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

}  // namespace df11::test_support
