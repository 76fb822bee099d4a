// SPDX-License-Identifier: Apache-2.0
// The checks a fixed paged KV pool (the CUDA backend's device pool) makes on a step's caches
// before its kernels read them: the block size, the room for the new positions, the tables'
// lengths, and every block id within its group's pool (kv_cache.h: the full-attention layers
// read `blocks`, the sliding-window layers `sliding_blocks` or, where it is empty, `blocks`). A
// released sliding entry (-1) is refused where the step's window still reads it, and so is a
// copy-on-write pair naming a block outside its group's pool.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/status.h"
#include "runtime/model/kv_cache.h"

namespace df11 {

struct KvPoolGroups {
  int64_t block_tokens = 16;  // positions per block (--kv-block-tokens)
  int64_t table_stride = 1;   // most blocks one table may have (max_position_embeddings')
  KvGroupBlocks blocks;       // ids each group's pool holds
  bool full_layers = true;    // whether the pool holds full-attention layers
  int64_t window = 0;         // its sliding-window layers' window (0: it holds none)
};

// OK, or OutOfRange / InvalidArgument naming the table (the group's) and what was expected.
// `new_tokens` positions are appended after cache.length when `appends`.
Status CheckKvTables(const KvCache& cache, int64_t new_tokens, bool appends,
                     const KvPoolGroups& pool);

}  // namespace df11
