// SPDX-License-Identifier: Apache-2.0
// Block tables planned by the engine's block manager (runtime/engine/kv_blocks.h) for a backend
// driven directly: what Engine does before and after each step of a sequence.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/engine/kv_blocks.h"
#include "runtime/formats/model_config.h"
#include "runtime/model/kv_cache.h"

namespace df11::model_testing {

// A block manager for the layers of `c`, its sliding-window layers in their own group.
inline KvBlocksOptions PlannedKvOptions(const ModelConfig& c, int64_t block_tokens, int64_t blocks,
                                        bool prefix_caching) {
  const int64_t window =
      c.layer_window.empty() ? 0 : *std::max_element(c.layer_window.begin(), c.layer_window.end());
  return {.blocks = blocks,
          .block_tokens = block_tokens,
          .prefix_caching = prefix_caching,
          .window = window,
          .sliding_blocks = window > 0 ? blocks : 0};
}

// Opens sequence `id` with `prompt`; `cache` starts at the cached prefix, which is returned.
inline int64_t OpenPlanned(KvBlocks* blocks, int64_t id, std::span<const int32_t> prompt,
                           KvCache* cache) {
  *cache = KvCache();
  cache->length = blocks->Open(id, prompt);
  cache->block_tokens = blocks->block_tokens();
  return cache->length;
}

// Makes `tokens` writable at cache->length and hands `cache` both tables and the copies to do
// first. False when the pool is dry.
inline bool PlacePlanned(KvBlocks* blocks, int64_t id, std::span<const int32_t> tokens,
                         KvCache* cache) {
  std::vector<KvBlockCopy> copies;
  if (blocks->length(id) < cache->length + static_cast<int64_t>(tokens.size()) &&
      !blocks->Write(id, tokens, &copies)) {
    return false;
  }
  for (const KvBlockCopy& c : copies) {
    (c.group == kSlidingGroup ? cache->sliding_block_copies : cache->block_copies)
        .emplace_back(c.from, c.to);
  }
  blocks->Slide(id, cache->length);
  const std::span<const KvBlockId> table = blocks->table(id);
  cache->blocks.assign(table.begin(), table.end());
  cache->capacity = static_cast<int64_t>(table.size()) * blocks->block_tokens();
  if (blocks->groups() == 2) {
    const std::span<const KvBlockId> sliding = blocks->sliding_table(id);
    cache->sliding_blocks.assign(sliding.begin(), sliding.end());
  }
  return true;
}

// Sliding-window blocks `cache` holds (entries not released).
inline int64_t HeldSlidingBlocks(const KvCache& cache) {
  return std::count_if(cache.sliding_blocks.begin(), cache.sliding_blocks.end(),
                       [](int32_t b) { return b != kReleasedBlock; });
}

}  // namespace df11::model_testing
