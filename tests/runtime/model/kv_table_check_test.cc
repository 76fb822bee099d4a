// SPDX-License-Identifier: Apache-2.0
// The checks a fixed paged pool (the CUDA backend's device pool) makes on a step's tables, with
// sliding-window layers in their own group: ids within each group's pool, the sliding table as
// long as the full one, released sliding entries only where the step's window no longer reads
// (before it, or past the step's positions while a prompt is prefilled in chunks), the block
// size, copy-on-write pairs within their group's pool; each refusal names the group's table and
// what was expected.
#include "runtime/model/kv_table_check.h"

#include <gtest/gtest.h>

#include <string>

namespace df11 {
namespace {

// Blocks of 4 positions; 10 full-attention and 6 sliding blocks per layer; a window of 8.
KvPoolGroups Pool() {
  KvPoolGroups p;
  p.block_tokens = 4;
  p.table_stride = 32;
  p.blocks = {10, 6};
  p.window = 8;
  return p;
}

// 12 positions written in blocks {0, 1, 2, 3}; the sliding layers in {5, 4, 3, 2}.
KvCache Cache() {
  KvCache c;
  c.length = 12;
  c.capacity = 16;
  c.block_tokens = 4;
  c.blocks = {0, 1, 2, 3};
  c.sliding_blocks = {5, 4, 3, 2};
  return c;
}

void ExpectRefused(const KvCache& c, int64_t n, const KvPoolGroups& pool, StatusCode code,
                   const std::string& text) {
  const Status s = CheckKvTables(c, n, true, pool);
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(text), std::string::npos) << s.ToString();
}

TEST(KvTableCheck, EachTableIsCheckedAgainstItsGroup) {
  EXPECT_TRUE(CheckKvTables(Cache(), 1, true, Pool()).ok());
  KvCache c = Cache();
  c.sliding_blocks[1] = 6;  // the sliding pool holds 6 blocks
  ExpectRefused(c, 1, Pool(), StatusCode::kOutOfRange,
                "table of the sliding-window layers names block 6 at entry 1; expected an id in "
                "[0, 6): the GPU's KV pool holds 6 blocks of 4 positions for each of those layers");
  c = Cache();
  c.blocks[3] = 9;  // within the full pool, past the sliding one: fine for the full layers
  EXPECT_TRUE(CheckKvTables(c, 1, true, Pool()).ok());
  c.blocks[3] = 10;
  ExpectRefused(c, 1, Pool(), StatusCode::kOutOfRange,
                "table of the full-attention layers names block 10 at entry 3; expected an id in "
                "[0, 10)");
  // Without a sliding table the sliding layers read the full one, within their own pool.
  c = Cache();
  c.sliding_blocks.clear();
  c.blocks = {0, 1, 2, 7};
  ExpectRefused(c, 1, Pool(), StatusCode::kOutOfRange,
                "table of the sliding-window layers (none of their own: they read the "
                "full-attention layers' table) names block 7 at entry 3; expected an id in [0, 6)");
  c = Cache();
  c.sliding_blocks.pop_back();
  ExpectRefused(c, 1, Pool(), StatusCode::kInvalidArgument,
                "table of the sliding-window layers has 3 entries; expected as many as its "
                "full-attention table's 4");
  // A pipeline stage without full-attention layers reads only the sliding table.
  KvPoolGroups sliding_only = Pool();
  sliding_only.full_layers = false;
  c = Cache();
  c.blocks[0] = 99;
  EXPECT_TRUE(CheckKvTables(c, 1, true, sliding_only).ok());
  // Nor does a pool without sliding-window layers check their table.
  KvPoolGroups full_only = Pool();
  full_only.window = 0;
  c = Cache();
  c.sliding_blocks[0] = 99;
  EXPECT_TRUE(CheckKvTables(c, 1, true, full_only).ok());
}

// Position 12's window is positions 5-12: block 0 (positions 0-3) may be released, block 1 not.
TEST(KvTableCheck, ReleasedSlidingBlocksOnlyBeforeTheWindow) {
  KvCache c = Cache();
  c.sliding_blocks[0] = -1;
  EXPECT_TRUE(CheckKvTables(c, 1, true, Pool()).ok());
  c.sliding_blocks[1] = -1;
  ExpectRefused(c, 1, Pool(), StatusCode::kOutOfRange,
                "names block -1 at entry 1 (released, but its window still reads it)");
  // A chunk of 4 new positions (12-15): its first query (12) sees from 5 on, as before.
  ExpectRefused(c, 4, Pool(), StatusCode::kOutOfRange, "names block -1 at entry 1");
  c.length = 16;
  c.capacity = 20;
  c.blocks.push_back(4);
  c.sliding_blocks.push_back(1);
  EXPECT_TRUE(CheckKvTables(c, 1, true, Pool()).ok());  // position 16 sees from 9 on
  // The full-attention table never has released entries.
  c.blocks[0] = -1;
  ExpectRefused(c, 1, Pool(), StatusCode::kOutOfRange,
                "table of the full-attention layers names block -1 at entry 0");
}

// A prompt prefilled in chunks: the full table holds the whole prompt's blocks, the sliding one
// only those up to the chunk's end; the later entries are not taken yet (-1) and never read by
// this step, but a -1 the step writes into is refused.
TEST(KvTableCheck, ALaterChunksSlidingEntriesMayBeReleased) {
  KvCache c = Cache();
  c.length = 4;  // positions 4-7 written this step, 8-15 by later chunks
  c.sliding_blocks = {5, 4, -1, -1};
  EXPECT_TRUE(CheckKvTables(c, 4, true, Pool()).ok());
  ExpectRefused(c, 5, Pool(), StatusCode::kOutOfRange,
                "names block -1 at entry 2 (released, but its window still reads it)");
}

TEST(KvTableCheck, CopiesStayInTheirGroupsPool) {
  KvCache c = Cache();
  c.block_copies = {{3, 9}};
  c.sliding_block_copies = {{2, 5}};
  EXPECT_TRUE(CheckKvTables(c, 1, true, Pool()).ok());
  c.sliding_block_copies = {{2, 6}};
  ExpectRefused(c, 1, Pool(), StatusCode::kOutOfRange,
                "KV block copy of the sliding-window layers from block 2 to block 6; expected ids "
                "in [0, 6)");
  c.sliding_block_copies.clear();
  c.block_copies = {{10, 1}};
  ExpectRefused(c, 1, Pool(), StatusCode::kOutOfRange,
                "KV block copy of the full-attention layers from block 10 to block 1");
  // Without a sliding table the full copies are made in the sliding layers' pool too.
  c.sliding_blocks.clear();
  c.block_copies = {{3, 9}};
  ExpectRefused(c, 1, Pool(), StatusCode::kOutOfRange,
                "KV block copy of the sliding-window layers from block 3 to block 9");
}

TEST(KvTableCheck, BlockSizeRoomAndTableLength) {
  KvCache c = Cache();
  c.block_tokens = 8;
  ExpectRefused(c, 1, Pool(), StatusCode::kInvalidArgument,
                "blocks of 8 positions but this CUDA backend's pool has blocks of 4");
  ExpectRefused(Cache(), 5, Pool(), StatusCode::kOutOfRange,
                "a sequence needs 17 KV positions but its cache holds 16");
  EXPECT_TRUE(CheckKvTables(Cache(), 5, false, Pool()).ok());  // reads only: no room needed
  KvPoolGroups narrow = Pool();
  narrow.table_stride = 3;
  ExpectRefused(Cache(), 1, narrow, StatusCode::kOutOfRange,
                "KV block table has 4 blocks, more than the 3 of max_position_embeddings");
}

}  // namespace
}  // namespace df11
