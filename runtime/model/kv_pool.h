// SPDX-License-Identifier: Apache-2.0
// KvPool: the host storage of a paged BF16 KV cache, one per rank: per local layer, K and V as
// (blocks, block_tokens, kv_heads, head_dim) BF16. A sequence's KvCache lists its blocks
// (KvCache::blocks); position p is row p % block_tokens of block blocks[p / block_tokens], the
// same block ids in every layer, or for the sliding-window layers of a cache with
// KvCache::sliding_blocks, their own ids in their own storage (group 1; the full-attention
// layers are group 0). Blocks come from a free list; the pool grows when it is empty
// (host memory; what the caches may take is the KV budget's business). A cache made by NewCache
// gives its blocks back when its last copy goes. A pool of no layers only hands out block ids (the
// CUDA backend's free list over its device pool). Not thread-safe; pointers from k()/v() are
// valid until the pool grows.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/model/kv_cache.h"

namespace df11 {

class KvPool : public std::enable_shared_from_this<KvPool> {
 public:
  // `row`: kv_heads * head_dim; block_tokens >= 1; `windows`: per layer its attention window
  // (0: full attention; a layer with a window is in group 1).
  KvPool(std::span<const int64_t> windows, int64_t row, int64_t block_tokens);

  int64_t block_tokens() const { return block_tokens_; }
  int64_t row() const { return row_; }
  int64_t blocks() const { return blocks_; }
  // Bytes one position takes over every layer (K and V, BF16).
  int64_t BytesPerToken() const { return KvBytesPerToken(layers_, row_); }

  // A cache of `capacity` positions: ceil(capacity / block_tokens) blocks of this pool, given
  // back when the cache's last copy is destroyed (nothing happens if the pool is gone by then).
  // The pool must be owned by a shared_ptr.
  KvCache NewCache(int64_t capacity);
  // Makes blocks 0..count - 1 of group `group` exist, for tables planned elsewhere (they do not
  // join the free list NewCache takes from).
  void EnsureBlocks(int64_t count, int group);
  // Copies block `from` to block `to` in every layer of group `group` (copy-on-write).
  void CopyBlock(int32_t from, int32_t to, int group);
  // Whether layer `layer` is a sliding-window layer (group 1).
  bool sliding(size_t layer) const { return group_[layer] == 1; }

  uint16_t* k(size_t layer) { return k_[layer].data(); }
  uint16_t* v(size_t layer) { return v_[layer].data(); }

 private:
  // EnsureBlocks, the new blocks joining the free list.
  void Reserve(int64_t count);
  void Give(std::span<const int32_t> blocks);

  int64_t layers_, row_, block_tokens_;
  int64_t blocks_ = 0;                        // NewCache's blocks (both groups)
  int64_t group_blocks_[2] = {0, 0};          // blocks that exist per group
  std::vector<int> group_;                    // per layer
  std::vector<std::vector<uint16_t>> k_, v_;  // (layers) x (blocks, block_tokens, row)
  std::vector<int32_t> free_;
};

}  // namespace df11
