// SPDX-License-Identifier: Apache-2.0
// The KV block manager's sliding-window group (runtime/engine/kv_blocks.h): blocks released as
// the window moves on (at most the window's blocks held while decoding), a prompt's sliding
// blocks taken chunk by chunk as it is prefilled (at most ceil((window + step - 2) / block) + 1
// at once), prefix hits shortened to where the window's sliding blocks are still cached and
// computed, rejected drafts released in both groups, and what can ever fit.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "runtime/engine/kv_blocks.h"
#include "tests/runtime/engine/kv_blocks_test_util.h"

namespace df11 {
namespace {

using kv_test::Concat;
using kv_test::Held;
using kv_test::One;
using kv_test::Pool;
using kv_test::Prefill;
using kv_test::Tokens;

TEST(KvBlocks, ADecodingSequenceHoldsAtMostTheWindowsSlidingBlocks) {
  const int64_t window = 6, block_tokens = 4;
  KvBlocks pool = Pool(64, block_tokens, /*prefix_caching=*/true, window, 64);
  std::vector<int32_t> tokens = Tokens(1, 3);
  Prefill(&pool, 0, tokens);
  for (int32_t t = 0; t < 50; ++t) {
    std::vector<KvBlockCopy> copies;
    ASSERT_TRUE(pool.Write(0, One(t), &copies));
    pool.Commit(0);
    const int64_t length = pool.length(0);
    std::span<const KvBlockId> full = pool.table(0), sliding = pool.sliding_table(0);
    ASSERT_EQ(Held(full), pool.BlocksFor(length));  // full-attention layers keep everything
    ASSERT_EQ(sliding.size(), full.size());
    // Released: the blocks wholly before the window of the position just written.
    const int64_t first = std::max<int64_t>(0, length - 1 - window + 1) / block_tokens;
    for (int64_t i = 0; i < static_cast<int64_t>(sliding.size()); ++i) {
      EXPECT_EQ(sliding[static_cast<size_t>(i)] == kReleasedBlock, i < first)
          << "length " << length << " block " << i;
    }
    ASSERT_LE(Held(sliding), pool.BlocksFor(window) + 1);
  }
  EXPECT_EQ(pool.used_blocks(), pool.BlocksFor(53));
  EXPECT_LE(pool.peak_used_blocks(kSlidingGroup), pool.BlocksFor(window) + 1);
  pool.Free(0);
  EXPECT_EQ(pool.used_blocks(kFullGroup) + pool.used_blocks(kSlidingGroup), 0);
}

TEST(KvBlocks, APrefixHitIsShortenedToWhereTheWindowsSlidingBlocksAreCached) {
  const int64_t window = 4, block_tokens = 4;
  KvBlocks pool = Pool(32, block_tokens, /*prefix_caching=*/true, window, /*sliding_blocks=*/5);
  const std::vector<int32_t> system = Tokens(1, 16);
  Prefill(&pool, 0, system);
  const std::vector<KvBlockId> kept(pool.sliding_table(0).begin(), pool.sliding_table(0).end());
  pool.Free(0);  // sliding blocks cached, the last one first in line for eviction
  EXPECT_EQ(pool.CachedPrefix(Concat(system, One(99))), 16);
  // Another sequence takes the one free sliding block and evicts the last cached one.
  Prefill(&pool, 1, Tokens(500, 8));
  EXPECT_EQ(pool.sliding_table(1)[1], kept[3]);
  EXPECT_TRUE(pool.cached(kept[2], kSlidingGroup));
  // The full blocks are all cached, but the window before position 16 is gone: 12 positions,
  // whose window (block 2) is still there.
  const std::vector<int32_t> prompt = Concat(system, One(99));
  EXPECT_EQ(pool.CachedPrefix(prompt), 12);
  EXPECT_EQ(pool.PromptCost(prompt, kFullGroup), 2 + 3);     // 2 new, 3 leave the LRU
  EXPECT_EQ(pool.PromptCost(prompt, kSlidingGroup), 2 + 1);  // 2 new, block 2 leaves the LRU
  ASSERT_TRUE(pool.PromptFits(prompt));
  EXPECT_EQ(pool.Open(2, prompt), 12);
  std::span<const KvBlockId> sliding = pool.sliding_table(2);
  ASSERT_EQ(sliding.size(), 3u);
  EXPECT_EQ(sliding[0], kReleasedBlock);
  EXPECT_EQ(sliding[1], kReleasedBlock);
  EXPECT_EQ(sliding[2], kept[2]);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(pool.Write(2, std::span(prompt).subspan(12), &copies));
  EXPECT_TRUE(copies.empty());
  pool.Commit(2);
  pool.Free(1);
  pool.Free(2);
  EXPECT_EQ(pool.used_blocks(kFullGroup) + pool.used_blocks(kSlidingGroup), 0);
}

// Rejected drafts leave both groups: the sliding blocks past the cut go back to their pool, a
// block the cut leaves partial leaves the prefix cache in both groups, and the window of the
// next position is still held.
TEST(KvBlocks, TruncateReleasesRejectedDraftsInBothGroups) {
  const int64_t window = 4, block_tokens = 4;
  KvBlocks pool = Pool(32, block_tokens, /*prefix_caching=*/true, window, 32);
  const std::vector<int32_t> prompt = Tokens(10, 10);
  Prefill(&pool, 1, prompt);  // positions 0..9: blocks 0, 1, 2 (half)
  std::vector<KvBlockCopy> copies;
  // A step feeds the last token and 5 drafts: positions 10..15 fill blocks 2 and 3, and the
  // sliding blocks before the window of position 10 (block 0) go.
  const std::vector<int32_t> drafted = {50, 51, 52, 53, 54, 55};
  ASSERT_TRUE(pool.Write(1, drafted, &copies));
  EXPECT_EQ(pool.sliding_table(1)[0], kReleasedBlock);
  EXPECT_EQ(Held(pool.sliding_table(1)), 3);
  const KvBlockId filled = pool.sliding_table(1)[2];
  EXPECT_TRUE(pool.cached(filled, kSlidingGroup));
  // One accepted: positions 0..11 stay; block 3 goes back in both groups, block 2 is full.
  pool.Truncate(1, 12);
  EXPECT_EQ(pool.table(1).size(), 3u);
  EXPECT_EQ(pool.sliding_table(1).size(), 3u);
  EXPECT_EQ(pool.used_blocks(kSlidingGroup), 2);
  // Cut inside block 2: it leaves the cache in both groups.
  pool.Truncate(1, 11);
  EXPECT_FALSE(pool.cached(filled, kSlidingGroup));
  EXPECT_FALSE(pool.cached(pool.table(1)[2]));
  pool.Commit(1);
  EXPECT_EQ(pool.CachedPrefix(Concat(Concat(prompt, {50, 51, 52, 53}), {1})), 8);
  // On from position 11: the window of position 11 (positions 8..11) is all there.
  ASSERT_TRUE(pool.Write(1, std::vector<int32_t>{60, 61, 62, 63, 64}, &copies));
  pool.Commit(1);
  EXPECT_EQ(pool.sliding_table(1)[1], kReleasedBlock);
  EXPECT_LE(Held(pool.sliding_table(1)), pool.BlocksFor(window) + 1);
  pool.Free(1);
  EXPECT_EQ(pool.used_blocks(kFullGroup) + pool.used_blocks(kSlidingGroup), 0);
}

TEST(KvBlocks, APromptLongerThanTheSlidingPoolNeverFits) {
  KvBlocks pool = Pool(64, 4, /*prefix_caching=*/true, /*window=*/4, /*sliding_blocks=*/4);
  EXPECT_TRUE(pool.EverFits(16, 200));   // 4 sliding blocks for the prompt, then 2
  EXPECT_FALSE(pool.EverFits(17, 17));   // its 5 sliding blocks are held while it is written
  EXPECT_FALSE(pool.EverFits(4, 260));   // 65 full blocks
  // Steps of at most 4 positions: a prompt holds ceil((4 + 4 - 2) / 4) + 1 = 3 at once.
  KvBlocks chunked = Pool(64, 4, /*prefix_caching=*/true, /*window=*/4, /*sliding_blocks=*/3,
                          /*step_tokens=*/4);
  EXPECT_TRUE(chunked.EverFits(200, 256));
  EXPECT_FALSE(chunked.EverFits(4, 260));
  KvBlocks longer = Pool(64, 4, /*prefix_caching=*/true, /*window=*/4, /*sliding_blocks=*/3,
                         /*step_tokens=*/7);
  EXPECT_FALSE(longer.EverFits(200, 256));  // ceil((4 + 7 - 2) / 4) + 1 = 4 at once
  EXPECT_TRUE(longer.EverFits(8, 8));       // its 2 blocks
}

// A 40-token prompt in steps of 5, blocks of 4, a window of 6: its full-attention blocks are all
// taken at admission, its sliding ones chunk by chunk, at most ceil((6 + 5 - 2) / 4) + 1 = 4 at
// once instead of the prompt's 10; a released block's table entry is never read again.
TEST(KvBlocks, APromptTakesItsSlidingBlocksChunkByChunk) {
  const int64_t window = 6, block_tokens = 4, step = 5;
  KvBlocks pool = Pool(64, block_tokens, /*prefix_caching=*/true, window, 64, step);
  const std::vector<int32_t> prompt = Tokens(1, 40);
  EXPECT_EQ(pool.PromptCost(prompt, kFullGroup), 10);
  EXPECT_EQ(pool.PromptCost(prompt, kSlidingGroup), 2);  // the first chunk's
  ASSERT_EQ(pool.Open(0, prompt), 0);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(pool.Append(0, prompt, &copies));
  EXPECT_EQ(pool.used_blocks(kFullGroup), 10);
  EXPECT_EQ(pool.used_blocks(kSlidingGroup), 0);
  EXPECT_TRUE(pool.sliding_table(0).empty());
  for (int64_t begin = 0; begin < 40; begin += step) {
    const int64_t end = std::min<int64_t>(40, begin + step);
    ASSERT_TRUE(pool.Place(0, begin, end, &copies));
    std::span<const KvBlockId> sliding = pool.sliding_table(0);
    ASSERT_EQ(static_cast<int64_t>(sliding.size()), pool.BlocksFor(end));
    // Held: the window of the chunk's first position, and the chunk's own positions.
    const int64_t first = std::max<int64_t>(0, begin - window + 1) / block_tokens;
    for (int64_t i = 0; i < static_cast<int64_t>(sliding.size()); ++i) {
      EXPECT_EQ(sliding[static_cast<size_t>(i)] == kReleasedBlock, i < first)
          << "chunk at " << begin << " block " << i;
    }
    ASSERT_LE(Held(sliding), pool.SlidingBlocksFor(end, step));
    pool.Commit(0, end);
  }
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(pool.SlidingBlocksFor(40, step), 4);
  EXPECT_LE(pool.peak_used_blocks(kSlidingGroup), 4);
  pool.Free(0);
  EXPECT_EQ(pool.used_blocks(kFullGroup) + pool.used_blocks(kSlidingGroup), 0);
}

// A prompt whose prefix another sequence is still prefilling: only the chunks computed so far
// are shared (their sliding blocks exist and are computed), the rest is pending (its sliding
// blocks come with its chunks), so the request waits; once the prefill is done it shares all.
TEST(KvBlocks, APrefixStillBeingPrefilledIsPendingUntilItsChunksAreComputed) {
  const int64_t window = 4, block_tokens = 4, step = 8;
  KvBlocks pool = Pool(64, block_tokens, /*prefix_caching=*/true, window, 64, step);
  const std::vector<int32_t> system = Tokens(1, 32), prompt = Concat(system, One(99));
  ASSERT_EQ(pool.Open(0, system), 0);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(pool.Append(0, system, &copies));
  EXPECT_TRUE(pool.PrefixPending(prompt));
  EXPECT_EQ(pool.CachedPrefix(prompt), 0);
  for (int64_t begin = 0; begin < 32; begin += step) {
    ASSERT_TRUE(pool.Place(0, begin, begin + step, &copies));
    pool.Commit(0, begin + step);
    EXPECT_EQ(pool.CachedPrefix(prompt), begin + step) << "after the chunk at " << begin;
    EXPECT_EQ(pool.PrefixPending(prompt), begin + step < 32) << "after the chunk at " << begin;
  }
  EXPECT_EQ(pool.Open(1, prompt), 32);
  ASSERT_TRUE(pool.Append(1, One(99), &copies));
  ASSERT_TRUE(pool.Place(1, 32, 33, &copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(pool.sliding_table(1)[7], pool.sliding_table(0)[7]);  // the window before 32
  pool.Free(0);
  pool.Free(1);
  EXPECT_EQ(pool.used_blocks(kFullGroup) + pool.used_blocks(kSlidingGroup), 0);
}

}  // namespace
}  // namespace df11
