// SPDX-License-Identifier: Apache-2.0
// The key/value cache of one sequence on the CPU: per local layer, K and V as
// (capacity, kv_heads, head_dim) FP32, of which the first `length` positions are filled.
#pragma once

#include <cstdint>
#include <vector>

namespace df11 {

struct KvCache {
  int64_t length = 0;    // positions filled
  int64_t capacity = 0;  // positions allocated
  int64_t row = 0;       // floats per position: kv_heads * head_dim
  int64_t slot = -1;     // distributed runs: the id under which every rank keeps this cache
  std::vector<std::vector<float>> k, v;  // (layers) x (capacity, kv_heads, head_dim)

  KvCache() = default;
  KvCache(int64_t layers, int64_t capacity, int64_t kv_heads, int64_t head_dim)
      : capacity(capacity), row(kv_heads * head_dim), k(layers), v(layers) {
    for (auto& x : k) x.resize(static_cast<size_t>(capacity * row));
    for (auto& x : v) x.resize(static_cast<size_t>(capacity * row));
  }
  int64_t Bytes() const { return 2 * static_cast<int64_t>(k.size()) * capacity * row * 4; }
};

}  // namespace df11
