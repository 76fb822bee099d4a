// SPDX-License-Identifier: Apache-2.0
// The key/value cache of one sequence, of which the first `length` positions are filled. On the
// CPU it is paged: K and V in BF16 live in the rank's KvPool (kv_pool.h), and `blocks` lists the
// sequence's blocks in position order (position p is row p % block_tokens of block
// blocks[p / block_tokens], in every layer; a sliding-window layer keeps its blocks and reads
// only its window); `host_blocks` gives them back to the pool with the last copy, or, for
// tables a block manager plans (runtime/engine/kv_blocks.h), is null. A GPU backend's cache
// lives on its device: per local layer, K and V as (slots, kv_heads, head_dim) FP32, a layer
// with full attention with a slot per position up to `capacity` (position j in slot j), a
// sliding-window layer a ring of min(window, capacity) slots (position j in slot j % window),
// since no query reads further back (`device_k`/`device_v` point into memory that
// `device_storage` owns and frees). Copies share the storage.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace df11 {

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

// Bytes of one budget token (KvCacheTokens over `model_windows`, every layer of the model) that a
// rank holding the layers `rank_windows` never exceeds, whatever the caches' capacities, with
// `row_bytes` per position and layer (K and V): the rank's memory for caches divided by it is a
// budget its caches fit in. With every layer, or no sliding window, it is row_bytes times the
// rank's layers.
double KvBytesPerBudgetToken(std::span<const int64_t> rank_windows,
                             std::span<const int64_t> model_windows, double row_bytes);

struct KvCache {
  int64_t length = 0;    // positions appended
  int64_t capacity = 0;  // positions the sequence may reach
  int64_t row = 0;       // values per position: kv_heads * head_dim
  int64_t slot = -1;     // distributed runs: the id under which every rank keeps this cache
  std::vector<int64_t> window;  // device: per local layer, its attention window (the ring), or 0
  int64_t block_tokens = 0;      // host: positions per block
  std::vector<int32_t> blocks;   // host: the block table, ceil(capacity / block_tokens) ids
  std::shared_ptr<void> host_blocks;     // host: gives `blocks` back to the pool, or null
  // host: block pairs (from, to) to copy before the next step writes (copy-on-write of a shared
  // block, planned with the table); the backend does them and clears the list.
  std::vector<std::pair<int32_t, int32_t>> block_copies;
  std::shared_ptr<void> device_storage;  // device: owner of the allocation, or null
  std::vector<float*> device_k, device_v;  // device: (layers) x (slots, kv_heads, head_dim)

  bool on_device() const { return device_storage != nullptr; }
  // Device: slots of layer `layer` (capacity, or its window's ring) and bytes of all layers.
  int64_t Slots(size_t layer) const { return KvSlots(window[layer], capacity); }
  int64_t Bytes() const { return 2 * KvSlotsOfLayers(window, capacity) * row * 4; }
};

}  // namespace df11
