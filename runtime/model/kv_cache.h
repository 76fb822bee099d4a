// SPDX-License-Identifier: Apache-2.0
// The key/value cache of one sequence: per local layer, K and V as (capacity, kv_heads, head_dim)
// FP32, of which the first `length` positions are filled. On the CPU the storage is `k`/`v`; a
// GPU backend's cache lives on its device instead (`device_k`/`device_v` point into memory that
// `device_storage` owns and frees; `k`/`v` stay empty). Copies share the device storage.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

namespace df11 {

struct KvCache {
  int64_t length = 0;    // positions filled
  int64_t capacity = 0;  // positions allocated
  int64_t row = 0;       // floats per position: kv_heads * head_dim
  int64_t slot = -1;     // distributed runs: the id under which every rank keeps this cache
  std::vector<std::vector<float>> k, v;  // host: (layers) x (capacity, kv_heads, head_dim)
  std::shared_ptr<void> device_storage;  // device: owner of the allocation, or null
  std::vector<float*> device_k, device_v;  // device: (layers) x (capacity, kv_heads, head_dim)

  KvCache() = default;
  KvCache(int64_t layers, int64_t capacity, int64_t kv_heads, int64_t head_dim)
      : capacity(capacity), row(kv_heads * head_dim), k(layers), v(layers) {
    for (auto& x : k) x.resize(static_cast<size_t>(capacity * row));
    for (auto& x : v) x.resize(static_cast<size_t>(capacity * row));
  }
  bool on_device() const { return device_storage != nullptr; }
  int64_t Bytes() const {
    const int64_t layers = static_cast<int64_t>(std::max(k.size(), device_k.size()));
    return 2 * layers * capacity * row * 4;
  }
};

}  // namespace df11
