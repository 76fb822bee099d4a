// SPDX-License-Identifier: Apache-2.0
// Helpers of the KV block manager's tests: token runs, pools, and a prefill as the engine does it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "runtime/engine/kv_blocks.h"

namespace df11::kv_test {

inline std::vector<int32_t> Tokens(int32_t first, int64_t count) {
  std::vector<int32_t> t(static_cast<size_t>(count));
  std::iota(t.begin(), t.end(), first);
  return t;
}

inline std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline std::vector<int32_t> One(int32_t token) { return {token}; }

// A pool; step_tokens: the most positions a step writes per sequence (0: no limit).
inline KvBlocks Pool(int64_t blocks, int64_t block_tokens = 16, bool prefix_caching = true,
                     int64_t window = 0, int64_t sliding_blocks = 0, int64_t step_tokens = 0) {
  return KvBlocks({.blocks = blocks,
                   .block_tokens = block_tokens,
                   .prefix_caching = prefix_caching,
                   .window = window,
                   .sliding_blocks = sliding_blocks,
                   .step_tokens = step_tokens});
}

inline int64_t Held(std::span<const KvBlockId> table) {
  return std::count_if(table.begin(), table.end(), [](KvBlockId b) { return b != kReleasedBlock; });
}

// Opens `id` with `prompt`, writes the rest of it and commits, as a finished prefill does.
inline void Prefill(KvBlocks* pool, int64_t id, const std::vector<int32_t>& prompt) {
  const int64_t cached = pool->Open(id, prompt);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(pool->Write(id, std::span(prompt).subspan(static_cast<size_t>(cached)), &copies));
  pool->Commit(id);
}

}  // namespace df11::kv_test
