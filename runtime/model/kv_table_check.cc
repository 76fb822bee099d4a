// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/kv_table_check.h"

#include <algorithm>
#include <cstdint>
#include <span>
#include <utility>

#include "kernels/paged_attention/paged_attention.h"

namespace df11 {
namespace {

constexpr int32_t kReleased = -1;  // a released entry of KvCache::sliding_blocks

// Every id of `table` within [0, blocks); released entries only before block `first_read` (the
// first one the step reads or writes) or past `last_read` (a prompt's later chunks, whose
// sliding blocks are not taken yet).
Status CheckIds(std::span<const int32_t> table, const char* group, int64_t blocks,
                int64_t first_read, const KvPoolGroups& pool, int64_t last_read = INT64_MAX) {
  for (size_t i = 0; i < table.size(); ++i) {
    const int32_t b = table[i];
    const int64_t at = static_cast<int64_t>(i);
    if (b == kReleased && (at < first_read || at > last_read)) continue;
    if (b < 0 || b >= blocks) {
      return Status::OutOfRange(
          std::string("a sequence's KV block table of the ") + group + " names block " +
          std::to_string(b) + " at entry " + std::to_string(i) +
          (b == kReleased ? " (released, but its window still reads it)" : "") +
          "; expected an id in [0, " + std::to_string(blocks) + "): the GPU's KV pool holds " +
          std::to_string(blocks) + " blocks of " + std::to_string(pool.block_tokens) +
          " positions for each of those layers (the memory plan's; --kv-tokens may not "
          "exceed it)");
    }
  }
  return Status::Ok();
}

// Both ids of every copy-on-write pair within [0, blocks).
Status CheckCopies(std::span<const std::pair<int32_t, int32_t>> copies, const char* group,
                   int64_t blocks) {
  for (const auto& [from, to] : copies) {
    if (from < 0 || from >= blocks || to < 0 || to >= blocks) {
      return Status::OutOfRange(std::string("a sequence's KV block copy of the ") + group +
                                " from block " + std::to_string(from) + " to block " +
                                std::to_string(to) + "; expected ids in [0, " +
                                std::to_string(blocks) + "), the GPU's KV pool of those layers");
    }
  }
  return Status::Ok();
}

}  // namespace

Status CheckKvTables(const KvCache& c, int64_t n, bool appends, const KvPoolGroups& pool) {
  if (c.block_tokens != pool.block_tokens) {
    return Status::InvalidArgument("a sequence's KV cache has blocks of " +
                                   std::to_string(c.block_tokens) +
                                   " positions but this CUDA backend's pool has blocks of " +
                                   std::to_string(pool.block_tokens) + " (--kv-block-tokens)");
  }
  const int64_t blocks = static_cast<int64_t>(c.blocks.size());
  if (appends && (c.length + n > c.capacity || c.length + n > blocks * pool.block_tokens)) {
    return Status::OutOfRange("a sequence needs " + std::to_string(c.length + n) +
                              " KV positions but its cache holds " +
                              std::to_string(std::min(c.capacity, blocks * pool.block_tokens)));
  }
  if (blocks > pool.table_stride) {
    return Status::OutOfRange("a sequence's KV block table has " + std::to_string(blocks) +
                              " blocks, more than the " + std::to_string(pool.table_stride) +
                              " of max_position_embeddings");
  }
  if (pool.full_layers || c.sliding_blocks.empty()) {
    DF11_RETURN_IF_ERROR(CheckIds(c.blocks, "full-attention layers", pool.blocks.full, 0, pool));
    DF11_RETURN_IF_ERROR(CheckCopies(c.block_copies, "full-attention layers", pool.blocks.full));
  }
  if (pool.window == 0) return Status::Ok();
  if (c.sliding_blocks.empty()) {
    DF11_RETURN_IF_ERROR(CheckCopies(c.block_copies, "sliding-window layers", pool.blocks.sliding));
    return CheckIds(c.blocks,
                    "sliding-window layers (none of their own: they read the "
                    "full-attention layers' table)",
                    pool.blocks.sliding, 0, pool);
  }
  DF11_RETURN_IF_ERROR(
      CheckCopies(c.sliding_block_copies, "sliding-window layers", pool.blocks.sliding));
  if (c.sliding_blocks.size() != c.blocks.size()) {
    return Status::InvalidArgument("a sequence's KV block table of the sliding-window layers has " +
                                   std::to_string(c.sliding_blocks.size()) +
                                   " entries; expected as many as its "
                                   "full-attention table's " +
                                   std::to_string(blocks));
  }
  // The step's first query sees from FirstVisiblePosition on; a step that only reads the cache
  // (no new positions) reads no block.
  const int64_t first =
      appends ? FirstVisiblePosition(c.length + n, std::max<int64_t>(n, 1), pool.window) /
                    pool.block_tokens
              : blocks;
  const int64_t last = appends ? (c.length + n - 1) / pool.block_tokens : -1;
  return CheckIds(c.sliding_blocks, "sliding-window layers", pool.blocks.sliding, first, pool,
                  last);
}

}  // namespace df11
