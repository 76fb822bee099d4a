// SPDX-License-Identifier: Apache-2.0
// The key/value cache of one sequence, of which the first `length` positions are filled. It is
// paged on every backend: K and V in BF16 live in the rank's pool of blocks (host: KvPool,
// kv_pool.h; device: the CUDA backend's one allocation), and `blocks` lists the sequence's blocks
// in position order (position p is row p % block_tokens of block blocks[p / block_tokens], in
// every layer; a sliding-window layer keeps its blocks and reads only its window);
// `host_blocks` gives them back to the pool with the last copy, or, for tables a block manager
// plans (runtime/engine/kv_blocks.h), is null.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace df11 {

// Bytes one position takes in `layers` layers' K and V of `row` values each (kv_heads *
// head_dim): BF16, as every backend stores them.
inline int64_t KvBytesPerToken(int64_t layers, int64_t row) { return 2 * 2 * layers * row; }

// The slots a cache of `capacity` positions gives a layer whose attention window is `window`
// (0: full attention).
inline int64_t KvSlots(int64_t window, int64_t capacity) {
  return window > 0 ? std::min(window, capacity) : capacity;
}

// Slots over `windows` (one per layer) for a cache of `capacity` positions.
inline int64_t KvSlotsOfLayers(std::span<const int64_t> windows, int64_t capacity) {
  int64_t n = 0;
  for (int64_t w : windows) n += KvSlots(w, capacity);
  return n;
}

// The KV budget's unit is a token of the whole model: a cache of `capacity` positions over layers
// with these `windows` costs its slots over all layers divided by the layer count, rounded up
// (exactly `capacity` without sliding windows; less for a long sequence whose sliding-window
// layers keep only their window).
inline int64_t KvCacheTokens(std::span<const int64_t> windows, int64_t capacity) {
  if (windows.empty()) return capacity;
  const int64_t layers = static_cast<int64_t>(windows.size());
  return (KvSlotsOfLayers(windows, capacity) + layers - 1) / layers;
}

struct KvCache {
  int64_t length = 0;    // positions appended
  int64_t capacity = 0;  // positions the sequence may reach
  int64_t row = 0;       // values per position: kv_heads * head_dim
  int64_t slot = -1;     // distributed runs: the id under which every rank keeps this cache
  int64_t block_tokens = 0;      // positions per block
  std::vector<int32_t> blocks;   // the block table, ceil(capacity / block_tokens) ids
  std::shared_ptr<void> host_blocks;  // gives `blocks` back to the pool, or null
  // Block pairs (from, to) to copy before the next step writes (copy-on-write of a shared block,
  // planned with the table); the backend does them and clears the list.
  std::vector<std::pair<int32_t, int32_t>> block_copies;
};

}  // namespace df11
