// SPDX-License-Identifier: Apache-2.0
// The KV block manager: blocks taken as sequences grow and given back when they end, a full
// pool refusing a write without changing anything, prefix blocks shared only when the whole
// prefix is equal (the hash chain) and only once computed, copy-on-write of shared blocks, LRU eviction of unreferenced
// cached blocks, and randomised workloads (shared system prompts, forks, preemptions, failed
// steps, cancellations) that read back every sequence's positions through its table from a
// simulated store and end with every block free, also with a sliding-window group and with
// prompts prefilled in chunks (their sliding blocks taken chunk by chunk, at most the bound of
// KvSlidingBlocksFor held); the sliding group's own cases are in kv_blocks_window_test.cc.
#include "runtime/engine/kv_blocks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "tests/runtime/engine/kv_blocks_test_util.h"

namespace df11 {
namespace {

using kv_test::Concat;
using kv_test::Held;
using kv_test::One;
using kv_test::Pool;
using kv_test::Prefill;
using kv_test::Tokens;

TEST(KvBlocks, OptionsNameTheFieldAndTheExpectedRange) {
  Status s = CheckKvBlocksOptions({.blocks = 8, .block_tokens = 0});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("block_tokens"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("got 0"), std::string::npos) << s.message();
  s = CheckKvBlocksOptions({.blocks = 0, .block_tokens = 16});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("KV blocks"), std::string::npos) << s.message();
  EXPECT_TRUE(CheckKvBlocksOptions({.blocks = 1, .block_tokens = 1}).ok());
  s = CheckKvBlocksOptions({.blocks = 8, .block_tokens = 16, .window = 32, .sliding_blocks = 0});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sliding"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("got window 32 and 0 blocks"), std::string::npos) << s.message();
  EXPECT_TRUE(
      CheckKvBlocksOptions({.blocks = 1, .block_tokens = 1, .window = 4, .sliding_blocks = 1})
          .ok());
}

TEST(KvBlocks, BlocksAreTakenAsASequenceGrowsAndAFullPoolChangesNothing) {
  KvBlocks pool = Pool(4, 16);
  const std::vector<int32_t> prompt = Tokens(100, 20);
  EXPECT_EQ(pool.PromptCost(prompt), 2);
  EXPECT_EQ(pool.Open(1, prompt), 0);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(pool.Write(1, prompt, &copies));
  EXPECT_EQ(pool.table(1).size(), 2u);
  EXPECT_EQ(pool.length(1), 20);
  ASSERT_TRUE(pool.Write(1, Tokens(500, 12), &copies));  // fills block 1 exactly
  EXPECT_EQ(pool.table(1).size(), 2u);
  ASSERT_TRUE(pool.Write(1, Tokens(600, 1), &copies));
  EXPECT_EQ(pool.table(1).size(), 3u);
  EXPECT_EQ(pool.free_blocks(), 1);
  // 32 more positions need two more blocks; one is free.
  EXPECT_FALSE(pool.Write(1, Tokens(700, 32), &copies));
  EXPECT_EQ(pool.length(1), 33);
  EXPECT_EQ(pool.table(1).size(), 3u);
  EXPECT_EQ(pool.free_blocks(), 1);
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(pool.peak_used_blocks(), 3);
  pool.Free(1);
  EXPECT_EQ(pool.free_blocks(), 4);
  EXPECT_EQ(pool.used_blocks(), 0);
  EXPECT_FALSE(pool.is_open(1));
}

TEST(KvBlocks, AnEqualPrefixOfFullBlocksIsShared) {
  KvBlocks pool = Pool(16, 16);
  const std::vector<int32_t> system = Tokens(1, 32);
  Prefill(&pool, 1, Concat(system, Tokens(900, 5)));
  const std::vector<int32_t> other = Concat(system, Tokens(800, 7));
  EXPECT_EQ(pool.CachedPrefix(other), 32);
  EXPECT_EQ(pool.PromptCost(other), 1);  // the two system blocks are referenced already
  EXPECT_EQ(pool.Open(2, other), 32);
  ASSERT_EQ(pool.table(2).size(), 2u);
  EXPECT_EQ(pool.table(2)[0], pool.table(1)[0]);
  EXPECT_EQ(pool.table(2)[1], pool.table(1)[1]);
  EXPECT_EQ(pool.refs(pool.table(1)[0]), 2);
  EXPECT_EQ(pool.used_blocks(), 3);
  // A prompt that differs inside the first block shares nothing.
  std::vector<int32_t> changed = other;
  changed[15] = 4242;
  EXPECT_EQ(pool.CachedPrefix(changed), 0);
}

TEST(KvBlocks, EqualBlockContentAfterDifferentPrefixesIsNotShared) {
  KvBlocks pool = Pool(16, 4);
  const std::vector<int32_t> x = Tokens(10, 4), y = Tokens(20, 4), z = Tokens(30, 4);
  Prefill(&pool, 1, Concat(Concat(x, y), {7}));
  // [z, y]: the second block's tokens equal [x, y]'s second block, its prefix does not.
  const std::vector<int32_t> zy = Concat(Concat(z, y), {7});
  EXPECT_EQ(pool.CachedPrefix(zy), 0);
  Prefill(&pool, 2, zy);
  EXPECT_NE(pool.table(2)[1], pool.table(1)[1]);
  EXPECT_EQ(pool.refs(pool.table(1)[1]), 1);
  // Each chain is found again whole.
  EXPECT_EQ(pool.CachedPrefix(Concat(Concat(z, y), {8})), 8);
  EXPECT_EQ(pool.CachedPrefix(Concat(Concat(x, y), {8})), 8);
  EXPECT_EQ(pool.Open(3, Concat(Concat(z, y), {9})), 8);
  EXPECT_EQ(pool.table(3)[1], pool.table(2)[1]);
}

TEST(KvBlocks, TruncateReleasesRejectedDraftsAndTheirCacheEntries) {
  KvBlocks pool = Pool(8, 4);
  const std::vector<int32_t> prompt = Tokens(10, 6);
  Prefill(&pool, 1, prompt);  // positions 0..5: blocks 0 and 1 (half)
  EXPECT_EQ(pool.used_blocks(), 2);
  // A step feeds the last token and 5 drafts: positions 6..11, filling blocks 1 and 2.
  std::vector<KvBlockCopy> copies;
  const std::vector<int32_t> drafted = {50, 51, 52, 53, 54, 55};
  ASSERT_TRUE(pool.Write(1, drafted, &copies));
  EXPECT_EQ(pool.used_blocks(), 3);
  // Two accepted: positions 0..8 stay; block 2 goes back, block 1 keeps 4 positions.
  pool.Truncate(1, 9);
  EXPECT_EQ(pool.length(1), 9);
  EXPECT_EQ(pool.table(1).size(), 3u);
  pool.Truncate(1, 8);
  EXPECT_EQ(pool.length(1), 8);
  EXPECT_EQ(pool.table(1).size(), 2u);
  EXPECT_EQ(pool.used_blocks(), 2);
  pool.Commit(1);
  // Blocks 0 and 1 hold prompt + 50 51 and are shared; nothing of the rejected drafts is.
  const std::vector<int32_t> kept = Concat(prompt, {50, 51});
  EXPECT_EQ(pool.CachedPrefix(Concat(kept, {1})), 8);
  EXPECT_EQ(pool.CachedPrefix(Concat(Concat(kept, {52, 53, 54, 55}), {1})), 8);
  // The sequence goes on from position 8 with other tokens, and its new full block is found.
  ASSERT_TRUE(pool.Write(1, std::vector<int32_t>{60, 61, 62, 63, 64}, &copies));
  pool.Commit(1);
  EXPECT_EQ(pool.CachedPrefix(Concat(Concat(kept, {60, 61, 62, 63}), {1})), 12);
  // Truncating inside a block a write filled but no commit covered takes it out of the cache.
  // Positions 13..15 fill block 3.
  ASSERT_TRUE(pool.Write(1, std::vector<int32_t>{70, 71, 72}, &copies));
  EXPECT_EQ(pool.CachedPrefix(Concat(Concat(kept, {60, 61, 62, 63, 64, 70, 71, 72}), {1})), 12);
  pool.Truncate(1, 14);
  pool.Commit(1);
  EXPECT_EQ(pool.CachedPrefix(Concat(Concat(kept, {60, 61, 62, 63, 64, 70, 71, 72}), {1})), 12);
  // Block 3 is full again, with 80 81.
  ASSERT_TRUE(pool.Write(1, std::vector<int32_t>{80, 81}, &copies));
  pool.Commit(1);
  EXPECT_EQ(pool.CachedPrefix(Concat(Concat(kept, {60, 61, 62, 63, 64, 70, 80, 81}), {1})), 16);
  pool.Free(1);
  EXPECT_EQ(pool.used_blocks(), 0);
}

TEST(KvBlocks, ABlockIsSharedOnlyOnceItsKvIsComputed) {
  KvBlocks pool = Pool(8, 4);
  const std::vector<int32_t> prompt = Tokens(1, 9);
  std::vector<KvBlockCopy> copies;
  ASSERT_EQ(pool.Open(1, prompt), 0);
  ASSERT_TRUE(pool.Write(1, prompt, &copies));
  // Written, not yet computed: a second request waits for it instead of sharing garbage.
  EXPECT_TRUE(pool.PrefixPending(prompt));
  EXPECT_EQ(pool.CachedPrefix(prompt), 0);
  pool.Commit(1);
  EXPECT_FALSE(pool.PrefixPending(prompt));
  EXPECT_EQ(pool.CachedPrefix(prompt), 8);
  // A sequence that ends before its blocks are computed takes them out of the cache.
  const std::vector<int32_t> other = Tokens(50, 9);
  ASSERT_EQ(pool.Open(2, other), 0);
  ASSERT_TRUE(pool.Write(2, other, &copies));
  EXPECT_TRUE(pool.PrefixPending(other));
  pool.Free(2);
  EXPECT_FALSE(pool.PrefixPending(other));
  EXPECT_EQ(pool.CachedPrefix(other), 0);
  EXPECT_EQ(pool.free_blocks(), 8 - 3);
}

TEST(KvBlocks, APromptFoundWholeRecomputesItsLastPositionInACopy) {
  KvBlocks pool = Pool(8, 4);
  const std::vector<int32_t> prompt = Tokens(50, 8);
  Prefill(&pool, 1, prompt);
  const KvBlockId last = pool.table(1)[1];
  EXPECT_EQ(pool.CachedPrefix(prompt), 7);
  EXPECT_EQ(pool.PromptCost(prompt), 1);
  ASSERT_EQ(pool.Open(2, prompt), 7);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(pool.Write(2, One(prompt.back()), &copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].from, last);
  EXPECT_EQ(copies[0].to, pool.table(2)[1]);
  EXPECT_NE(pool.table(2)[1], last);
  EXPECT_EQ(pool.table(2)[0], pool.table(1)[0]);
  EXPECT_EQ(pool.refs(last), 1);
  EXPECT_TRUE(pool.cached(last));
  pool.Free(1);
  pool.Free(2);
  EXPECT_EQ(pool.free_blocks(), 8);
  // Still cached after both ended: a third request finds the prompt again.
  EXPECT_EQ(pool.CachedPrefix(prompt), 7);
}

TEST(KvBlocks, AForkSharesThePartialLastBlockUntilEitherWritesIt) {
  KvBlocks pool = Pool(8, 4);
  Prefill(&pool, 1, Tokens(1, 6));
  pool.Fork(1, 2);
  const KvBlockId partial = pool.table(1)[1];
  EXPECT_EQ(pool.refs(partial), 2);
  EXPECT_EQ(pool.length(2), 6);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(pool.Write(2, One(77), &copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].from, partial);
  EXPECT_EQ(pool.table(1)[1], partial);
  EXPECT_NE(pool.table(2)[1], partial);
  EXPECT_EQ(pool.table(2)[0], pool.table(1)[0]);
  copies.clear();
  ASSERT_TRUE(pool.Write(1, One(78), &copies));  // the only user now: written in place
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(pool.table(1)[1], partial);
}

TEST(KvBlocks, TheLeastRecentlyReleasedCachedBlockIsEvictedLastBlockFirst) {
  KvBlocks pool = Pool(4, 4);
  const std::vector<int32_t> a = Tokens(10, 8), b = Tokens(40, 8);
  Prefill(&pool, 1, a);
  pool.Free(1);
  Prefill(&pool, 2, b);
  pool.Free(2);
  EXPECT_EQ(pool.free_blocks(), 4);
  EXPECT_EQ(pool.used_blocks(), 0);
  // A new block evicts a's last block (released first, and before its first block).
  Prefill(&pool, 3, Tokens(90, 4));
  EXPECT_EQ(pool.CachedPrefix(Concat(a, {1})), 4);
  EXPECT_EQ(pool.CachedPrefix(Concat(b, {1})), 8);
  // A hit takes b's blocks out of the LRU: the next evictions take a's first block, then the
  // pool is dry.
  EXPECT_EQ(pool.Open(4, Concat(b, {1})), 8);
  EXPECT_EQ(pool.free_blocks(), 1);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(pool.Write(4, One(1), &copies));
  EXPECT_EQ(pool.CachedPrefix(Concat(a, {1})), 0);
  EXPECT_FALSE(pool.Write(3, Tokens(1, 1), &copies));
}

TEST(KvBlocks, WithoutPrefixCachingNothingIsShared) {
  KvBlocks pool = Pool(8, 4, /*prefix_caching=*/false);
  const std::vector<int32_t> prompt = Tokens(1, 9);
  Prefill(&pool, 1, prompt);
  EXPECT_EQ(pool.CachedPrefix(prompt), 0);
  EXPECT_EQ(pool.Open(2, prompt), 0);
  pool.Free(1);
  pool.Free(2);
  EXPECT_EQ(pool.free_blocks(), 8);
}

// A simulated K/V store: each row holds a value fixed by the sequence's tokens up to and
// including its position (as real K/V rows are), so a wrongly shared block shows.
class Store {
 public:
  Store(int64_t blocks, int64_t block_tokens)
      : block_tokens_(block_tokens), rows_(static_cast<size_t>(blocks * block_tokens), 0) {}
  static uint64_t Value(std::span<const int32_t> tokens, int64_t position) {
    uint64_t h = 1469598103934665603ULL;
    for (int64_t i = 0; i <= position; ++i) {
      h = (h ^ static_cast<uint32_t>(tokens[static_cast<size_t>(i)])) * 1099511628211ULL;
    }
    return h;
  }
  uint64_t& At(std::span<const KvBlockId> table, int64_t p) {
    return rows_[static_cast<size_t>(table[static_cast<size_t>(p / block_tokens_)] * block_tokens_ +
                                     p % block_tokens_)];
  }
  void Copy(const KvBlockCopy& c) {
    std::copy_n(rows_.begin() + c.from * block_tokens_, block_tokens_,
                rows_.begin() + c.to * block_tokens_);
  }

 private:
  int64_t block_tokens_;
  std::vector<uint64_t> rows_;
};

struct Live {
  int64_t id;
  std::vector<int32_t> tokens;  // prompt, then generated
  int64_t written;              // positions whose rows are in the store
  size_t prompt = 0;            // prompt tokens
};

// chunked: prompts written as the engine prefills them in steps of step_tokens, their
// full-attention blocks at admission (Append), their sliding ones chunk by chunk (Place).
void RandomWorkload(uint32_t seed, bool prefix_caching, bool windowed, bool chunked = false) {
  SCOPED_TRACE("seed " + std::to_string(seed) + (prefix_caching ? " caching" : " no caching") +
               (windowed ? " windowed" : "") + (chunked ? " chunked" : ""));
  std::mt19937 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const int64_t block_tokens = pick(1, 8), blocks = pick(6, 40);
  const int64_t window = windowed ? pick(1, 3 * block_tokens) : 0;
  const int64_t sliding_blocks = windowed ? pick(6, 40) : 0;
  const int64_t step = chunked ? pick(1, 2 * block_tokens) : 0;
  KvBlocks pool = Pool(blocks, block_tokens, prefix_caching, window, sliding_blocks, step);
  Store store(blocks, block_tokens), sliding(std::max<int64_t>(1, sliding_blocks), block_tokens);
  auto copy = [&](const KvBlockCopy& c) { (c.group == kFullGroup ? store : sliding).Copy(c); };
  // Writes position p's row in both groups.
  auto put = [&](int64_t id, int64_t p, uint64_t value) {
    store.At(pool.table(id), p) = value;
    if (windowed) sliding.At(pool.sliding_table(id), p) = value;
  };
  std::vector<std::vector<int32_t>> systems;
  for (int i = 0; i < 3; ++i) systems.push_back(Tokens(1000 * (i + 1), pick(1, 3 * block_tokens)));
  std::vector<Live> live;  // in admission order
  int64_t next_id = 0, hits = 0;
  auto check = [&](const Live& s) {
    std::span<const KvBlockId> table = pool.table(s.id);
    ASSERT_EQ(static_cast<int64_t>(table.size()), pool.BlocksFor(pool.length(s.id)));
    for (int64_t p = 0; p < s.written; ++p) {
      ASSERT_EQ(store.At(table, p), Store::Value(s.tokens, p)) << "sequence " << s.id << " pos " << p;
    }
    if (!windowed) return;
    // The sliding layers' table: the window of the next position is there, and nothing far
    // older than it.
    std::span<const KvBlockId> st = pool.sliding_table(s.id);
    ASSERT_EQ(static_cast<int64_t>(st.size()), pool.BlocksFor(s.written));  // placed positions
    for (int64_t p = std::max<int64_t>(0, s.written - window); p < s.written; ++p) {
      ASSERT_NE(st[static_cast<size_t>(p / block_tokens)], kReleasedBlock) << "pos " << p;
      ASSERT_EQ(sliding.At(st, p), Store::Value(s.tokens, p))
          << "sequence " << s.id << " pos " << p;
    }
    if (s.written > static_cast<int64_t>(s.prompt)) {  // decoding: at most the window's blocks
      ASSERT_LE(Held(st), pool.BlocksFor(window) + 1) << "sequence " << s.id;
    }
    if (chunked) {  // prefilling: the window before a chunk and the chunk
      ASSERT_LE(Held(st), pool.SlidingBlocksFor(s.written, step)) << "sequence " << s.id;
    }
  };
  auto end = [&](size_t i) {
    pool.Free(live[i].id);
    live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
  };
  for (int op = 0; op < 600; ++op) {
    const int64_t kind = pick(0, 9);
    if (kind <= 2) {  // a new request
      std::vector<int32_t> prompt = systems[static_cast<size_t>(pick(0, 2))];
      for (int64_t n = pick(0, 2 * block_tokens); n > 0; --n) prompt.push_back(static_cast<int32_t>(pick(0, 3)));
      if (pick(0, 3) == 0) prompt.resize(static_cast<size_t>(pick(1, static_cast<int64_t>(prompt.size()))));
      if (!pool.PromptFits(prompt)) continue;
      Live s{next_id++, prompt, 0, prompt.size()};
      s.written = pool.Open(s.id, prompt);
      hits += s.written;
      std::vector<KvBlockCopy> copies;
      const auto rest = std::span(prompt).subspan(static_cast<size_t>(s.written));
      const int64_t first_chunk =
          chunked ? std::min<int64_t>(prompt.size(), s.written + step) : prompt.size();
      if (chunked) {
        ASSERT_TRUE(pool.Append(s.id, rest, &copies)) << "PromptCost promised room";
        ASSERT_TRUE(pool.Place(s.id, s.written, first_chunk, &copies))
            << "PromptCost promised room for the first chunk";
      } else {
        ASSERT_TRUE(pool.Write(s.id, rest, &copies)) << "PromptCost promised room";
      }
      for (const KvBlockCopy& c : copies) copy(c);
      for (int64_t p = 0; p < s.written; ++p) {  // cached rows are what a computation would give
        ASSERT_EQ(store.At(pool.table(s.id), p), Store::Value(prompt, p));
        if (windowed && p > s.written - window) {  // the window of the next position
          ASSERT_EQ(sliding.At(pool.sliding_table(s.id), p), Store::Value(prompt, p));
        }
      }
      for (int64_t p = s.written; p < first_chunk; ++p) put(s.id, p, Store::Value(prompt, p));
      s.written = first_chunk;
      if (pick(0, 9) == 0) {  // the step failed: the request ends without committing
        pool.Free(s.id);
        continue;
      }
      pool.Commit(s.id, s.written);
      live.push_back(std::move(s));
    } else if (kind <= 6 && chunked && !live.empty() &&
               live.back().written < static_cast<int64_t>(live.back().prompt)) {
      // The next chunk of the latest admitted prompt.
      Live& s = live.back();
      const int64_t begin = s.written;
      const int64_t stop = std::min<int64_t>(s.prompt, begin + step);
      std::vector<KvBlockCopy> copies;
      if (!pool.Place(s.id, begin, stop, &copies)) {  // dry: the latest admitted is preempted
        ASSERT_EQ(copies.size(), 0u);
        end(live.size() - 1);
        continue;
      }
      for (const KvBlockCopy& c : copies) copy(c);
      for (int64_t p = begin; p < stop; ++p) put(s.id, p, Store::Value(s.tokens, p));
      s.written = stop;
      pool.Commit(s.id, stop);
    } else if (kind <= 6 && !live.empty()) {  // a decode step of one sequence
      const size_t i = static_cast<size_t>(pick(0, static_cast<int64_t>(live.size()) - 1));
      if (live[i].written < static_cast<int64_t>(live[i].tokens.size())) continue;  // prefilling
      const int32_t token = static_cast<int32_t>(pick(0, 3));
      std::vector<KvBlockCopy> copies;
      while (!pool.Write(live[i].id, One(token), &copies)) {  // dry: preempt the latest admitted
        ASSERT_EQ(copies.size(), 0u);
        if (live.size() == 1) break;
        const size_t victim = live.size() - 1;
        end(victim);
        if (victim == i) break;
      }
      if (i >= live.size() || pool.length(live[i].id) == live[i].written) continue;
      Live& s = live[i];
      for (const KvBlockCopy& c : copies) copy(c);
      s.tokens.push_back(token);
      put(s.id, s.written, Store::Value(s.tokens, s.written));
      ++s.written;
      pool.Commit(s.id);
    } else if (kind == 7 && !live.empty()) {  // a fork (parallel sampling)
      const Live& parent = live[static_cast<size_t>(pick(0, static_cast<int64_t>(live.size()) - 1))];
      Live child{next_id++, parent.tokens, parent.written, parent.prompt};
      pool.Fork(parent.id, child.id);
      live.push_back(std::move(child));
    } else if (!live.empty()) {  // finished, cancelled or failed
      end(static_cast<size_t>(pick(0, static_cast<int64_t>(live.size()) - 1)));
    }
    for (const Live& s : live) check(s);
    if (::testing::Test::HasFatalFailure()) return;
    int64_t references = 0;
    std::set<KvBlockId> distinct;
    for (const Live& s : live) {
      references += static_cast<int64_t>(pool.table(s.id).size());
      distinct.insert(pool.table(s.id).begin(), pool.table(s.id).end());
    }
    int64_t counted = 0;
    for (KvBlockId b : distinct) counted += pool.refs(b);
    ASSERT_EQ(counted, references);
    ASSERT_EQ(pool.used_blocks(), static_cast<int64_t>(distinct.size()));
    if (!windowed) continue;
    references = 0;
    distinct.clear();
    for (const Live& s : live) {
      for (KvBlockId b : pool.sliding_table(s.id)) {
        if (b == kReleasedBlock) continue;
        ++references;
        distinct.insert(b);
      }
    }
    counted = 0;
    for (KvBlockId b : distinct) counted += pool.refs(b, kSlidingGroup);
    ASSERT_EQ(counted, references);
    ASSERT_EQ(pool.used_blocks(kSlidingGroup), static_cast<int64_t>(distinct.size()));
  }
  while (!live.empty()) end(live.size() - 1);
  EXPECT_EQ(pool.free_blocks(), blocks);
  EXPECT_EQ(pool.used_blocks(), 0);
  if (windowed) {
    EXPECT_EQ(pool.free_blocks(kSlidingGroup), sliding_blocks);
    EXPECT_EQ(pool.used_blocks(kSlidingGroup), 0);
  }
  EXPECT_EQ(pool.open_sequences(), 0);
  if (!prefix_caching) {
    EXPECT_EQ(hits, 0);
  }
}

TEST(KvBlocks, RandomWorkloadsReadBackTheirOwnRowsAndEndWithEveryBlockFree) {
  const uint32_t base = std::random_device{}();
  for (uint32_t i = 0; i < 40; ++i) {
    for (bool windowed : {false, true}) {
      for (bool chunked : {false, true}) {
        RandomWorkload(base + i, /*prefix_caching=*/true, windowed, chunked);
        RandomWorkload(base + i, /*prefix_caching=*/false, windowed, chunked);
      }
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(KvBlocks, ASystemPromptIsPrefilledOnce) {
  KvBlocks pool = Pool(64, 4);
  const std::vector<int32_t> system = Tokens(1, 16);
  int64_t cached = 0;
  for (int64_t id = 0; id < 10; ++id) {
    const std::vector<int32_t> prompt = Concat(system, Tokens(static_cast<int32_t>(100 * id), 3));
    cached += pool.CachedPrefix(prompt);
    Prefill(&pool, id, prompt);
  }
  EXPECT_EQ(cached, 9 * 16);
  EXPECT_EQ(pool.used_blocks(), 4 + 10);
}

}  // namespace
}  // namespace df11
