// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/kv_pool.h"

#include <algorithm>

#include "kernels/common/check.h"

namespace df11 {

KvPool::KvPool(std::span<const int64_t> windows, int64_t row, int64_t block_tokens)
    : layers_(static_cast<int64_t>(windows.size())),
      row_(row),
      block_tokens_(block_tokens),
      k_(windows.size()),
      v_(windows.size()) {
  DF11_CHECK(row >= 1 && block_tokens >= 1);
  for (int64_t w : windows) group_.push_back(w > 0 ? 1 : 0);
}

void KvPool::EnsureBlocks(int64_t count, int group) {
  if (count <= group_blocks_[group]) return;
  const size_t size = static_cast<size_t>(count * block_tokens_ * row_);
  for (size_t l = 0; l < k_.size(); ++l) {
    if (group_[l] != group) continue;
    k_[l].resize(size);
    v_[l].resize(size);
  }
  group_blocks_[group] = count;
}

void KvPool::Reserve(int64_t count) {
  const int64_t old = blocks_;
  EnsureBlocks(count, 0);
  EnsureBlocks(count, 1);
  blocks_ = std::max(blocks_, count);
  for (int64_t b = blocks_ - 1; b >= old; --b) free_.push_back(static_cast<int32_t>(b));
}

KvCache KvPool::NewCache(int64_t capacity) {
  DF11_CHECK(capacity >= 0);
  const int64_t need = (capacity + block_tokens_ - 1) / block_tokens_;
  const int64_t missing = need - static_cast<int64_t>(free_.size());
  if (missing > 0) Reserve(blocks_ + std::max(missing, blocks_ / 2));  // amortised growth
  KvCache cache;
  cache.capacity = capacity;
  cache.row = row_;
  cache.block_tokens = block_tokens_;
  cache.blocks.assign(free_.end() - need, free_.end());
  std::reverse(cache.blocks.begin(), cache.blocks.end());  // lowest ids first on a fresh pool
  free_.resize(free_.size() - static_cast<size_t>(need));
  // Called with the last copy's end (shared_ptr calls its deleter for a null pointer too).
  cache.host_blocks = std::shared_ptr<void>(
      static_cast<void*>(nullptr), [pool = weak_from_this(), blocks = cache.blocks](void*) {
        if (auto p = pool.lock()) p->Give(blocks);
      });
  return cache;
}

void KvPool::Give(std::span<const int32_t> blocks) {
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) free_.push_back(*b);
}

void KvPool::CopyBlock(int32_t from, int32_t to, int group) {
  const int64_t n = block_tokens_ * row_;
  for (size_t l = 0; l < k_.size(); ++l) {
    if (group_[l] != group) continue;
    std::copy_n(k_[l].begin() + from * n, n, k_[l].begin() + to * n);
    std::copy_n(v_[l].begin() + from * n, n, v_[l].begin() + to * n);
  }
}

}  // namespace df11
