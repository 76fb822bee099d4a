// SPDX-License-Identifier: Apache-2.0
// The key/value cache of one sequence: per local layer, K and V as (slots, kv_heads, head_dim)
// FP32. A layer with full attention has a slot per position up to `capacity` (position j in slot
// j); a sliding-window layer keeps only its window, a ring of min(window, capacity) slots
// (position j in slot j % window), since no query reads further back. The first `length`
// positions have been appended. On the CPU the storage is `k`/`v`; a GPU backend's cache lives
// on its device instead (`device_k`/`device_v` point into memory that `device_storage` owns and
// frees; `k`/`v` stay empty). Copies share the device storage.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
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
  int64_t row = 0;       // floats per position: kv_heads * head_dim
  int64_t slot = -1;     // distributed runs: the id under which every rank keeps this cache
  std::vector<int64_t> window;  // per local layer: its attention window (the ring), 0 for none
  std::vector<std::vector<float>> k, v;  // host: (layers) x (slots, kv_heads, head_dim)
  std::shared_ptr<void> device_storage;  // device: owner of the allocation, or null
  std::vector<float*> device_k, device_v;  // device: (layers) x (slots, kv_heads, head_dim)

  KvCache() = default;
  // A host cache: one layer per entry of `windows`.
  KvCache(std::span<const int64_t> windows, int64_t capacity, int64_t kv_heads, int64_t head_dim)
      : capacity(capacity), row(kv_heads * head_dim), window(windows.begin(), windows.end()),
        k(windows.size()), v(windows.size()) {
    for (size_t l = 0; l < windows.size(); ++l) {
      k[l].resize(static_cast<size_t>(Slots(l) * row));
      v[l].resize(static_cast<size_t>(Slots(l) * row));
    }
  }
  bool on_device() const { return device_storage != nullptr; }
  // Slots of layer `layer`: capacity, or its window's ring.
  int64_t Slots(size_t layer) const { return KvSlots(window[layer], capacity); }
  int64_t Bytes() const { return 2 * KvSlotsOfLayers(window, capacity) * row * 4; }
};

}  // namespace df11
