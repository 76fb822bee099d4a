// SPDX-License-Identifier: Apache-2.0
// The block manager of a paged KV cache: a pool of fixed-size blocks (block_tokens positions each,
// over every layer a rank holds), a block table per sequence (position p lives in block
// table[p / block_tokens], row p % block_tokens), blocks taken as a sequence grows and given back
// when it finishes, is cancelled, fails or is preempted. It decides ids only; the backends own
// the storage the ids index. Prefix caching: a block is entered in a cache when a write fills it,
// keyed by its tokens and the content id of the block before it (a chain: equal keys mean the
// whole prefix is equal, exactly; content ids are never reused, so an evicted block's successors
// can never match again), and may be shared once Commit says its K/V are computed (until then a
// prompt that would share it can wait: PrefixPending). A sequence opened with a prompt shares
// the computed blocks of its longest cached prefix (reference counts); a write into a block
// others share copies it first (copy-on-write, e.g. the partial last block of a forked sequence,
// or the last block of a prompt found whole in the cache, whose last position is recomputed for
// its logits); an unreferenced cached block stays cached until a new block is needed and it is
// the least recently released one (LRU).
// Two block groups when the model has sliding-window layers (options.window > 0): the
// full-attention layers' blocks (group 0, the table above) and the sliding-window layers' own
// pool and table (group 1, sliding_table), position p in table index p / block_tokens in both.
// A prompt's full-attention blocks are all taken when it is admitted (Append: its full blocks
// enter the prefix cache at once, so later requests wait for them), its sliding blocks only as
// each chunk is written (Place). A write releases the sliding blocks that lie wholly before its
// first position's window, so a sequence whose steps write at most step_tokens positions holds
// at most ceil((window + step_tokens - 2) / block_tokens) + 1 of them (KvSlidingBlocksFor;
// decoding: the window's); their table entries become kReleasedBlock and are never read again.
// A sliding block enters the prefix cache with the full block of the same positions (under its
// content id) when it is taken; a cached prefix is used only up to where the sliding blocks of
// the window before it are cached and computed too (a full block still being computed counts
// as pending in both groups: its sliding block comes with its chunk). Without sliding-window
// layers there is group 0 only, exactly as before. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <list>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/model/kv_cache.h"

namespace df11 {

using KvBlockId = int32_t;

// A sliding-window group's table entry of a block released as the window moved on.
inline constexpr KvBlockId kReleasedBlock = -1;

struct KvBlocksOptions {
  int64_t blocks = 0;          // blocks in the pool (>= 1)
  int64_t block_tokens = 16;   // positions per block (>= 1)
  bool prefix_caching = true;  // share computed full blocks between sequences with equal prefixes
  // The sliding-window layers' window in positions (0: none, one group) and the blocks of their
  // group's pool (>= 1 when window > 0).
  int64_t window = 0;
  int64_t sliding_blocks = 0;
  // Most positions of one sequence a step writes (a prompt chunk, or a token and its drafts);
  // 0: no limit (a prompt in one step). Bounds the sliding blocks a sequence holds.
  int64_t step_tokens = 0;
};

// Checks the options; the message names the field and what was expected.
Status CheckKvBlocksOptions(const KvBlocksOptions& options);

// The block groups: full-attention layers, and sliding-window layers where the model has them.
inline constexpr int kFullGroup = 0;
inline constexpr int kSlidingGroup = 1;

// A block's rows to copy before a write (all block_tokens rows, every layer of its group, K and
// V).
struct KvBlockCopy {
  KvBlockId from = 0;
  KvBlockId to = 0;
  int group = kFullGroup;
};

class KvBlocks {
 public:
  // `options` must pass CheckKvBlocksOptions.
  explicit KvBlocks(const KvBlocksOptions& options);

  int64_t block_tokens() const { return block_tokens_; }
  int64_t window() const { return window_; }
  // Groups: 1, or 2 with sliding-window layers.
  int groups() const { return window_ > 0 ? 2 : 1; }
  // Counts of group `g` (the full-attention layers' by default).
  int64_t total_blocks(int g = kFullGroup) const {
    return static_cast<int64_t>(groups_[g].blocks.size());
  }
  // Blocks a new write can take: never used or released uncached, plus cached but unreferenced.
  int64_t free_blocks(int g = kFullGroup) const {
    return static_cast<int64_t>(groups_[g].free.size() + groups_[g].lru.size());
  }
  // Blocks referenced by at least one sequence, now and at most so far.
  int64_t used_blocks(int g = kFullGroup) const { return total_blocks(g) - free_blocks(g); }
  int64_t peak_used_blocks(int g = kFullGroup) const { return groups_[g].peak; }
  // Sliding blocks a sequence holds at most while it grows to `positions` positions, each step
  // writing at most `step` of them (KvSlidingBlocksFor).
  int64_t SlidingBlocksFor(int64_t positions, int64_t step = 1) const {
    return KvSlidingBlocksFor(positions, window_, block_tokens_, step);
  }
  // Whether a request of `prompt` positions growing to `total` can ever run in an empty pool:
  // each group's blocks at their most (the sliding ones of a prompt chunk of step_tokens, or of
  // the whole prompt without a step limit, and of decoding).
  bool EverFits(int64_t prompt, int64_t total) const;
  // Blocks that hold `positions` positions.
  int64_t BlocksFor(int64_t positions) const {
    return (positions + block_tokens_ - 1) / block_tokens_;
  }

  // Positions of `prompt` whose K/V Open would find cached: whole computed cached blocks of its
  // longest cached prefix, at most prompt.size() - 1 (the last prompt position is always
  // computed, for its logits).
  int64_t CachedPrefix(std::span<const int32_t> prompt) const;
  // Whether `prompt`'s longest cached prefix is longer counting blocks whose K/V are still being
  // computed: a running sequence is computing blocks this prompt could share once committed.
  bool PrefixPending(std::span<const int32_t> prompt) const {
    return Hits(prompt, false) > Hits(prompt, true);
  }
  // How many free blocks of group `g` opening a sequence with `prompt` and writing the rest of it
  // needs: Open takes cached blocks nobody references out of the free ones, Append the rest of
  // the full-attention ones, Place the sliding ones of the first chunk (step_tokens positions).
  int64_t PromptCost(std::span<const int32_t> prompt, int g = kFullGroup) const;
  // Whether every group has PromptCost free blocks.
  bool PromptFits(std::span<const int32_t> prompt) const;

  // Starts sequence `id` (not open) with `prompt` (>= 1 token): shares the cached blocks of its
  // longest cached prefix and returns how many positions that covers (CachedPrefix); the
  // sequence's length is that many, and its next Write starts at that position.
  int64_t Open(int64_t id, std::span<const int32_t> prompt);
  // Starts `child` (not open) as a copy of `parent` (open): the same blocks, shared, the same
  // length; a later write into a shared block copies it first.
  void Fork(int64_t parent, int64_t child);
  // Makes the next tokens.size() positions of `id` writable and takes them as its content
  // (tokens[i] is the token at position length + i): new blocks as needed, a copy of a shared
  // block that the write reaches (appended to `copies`, to be done before the write). Returns
  // false, changing nothing, when a group has too few free blocks. Blocks the write fills enter
  // the prefix cache, not yet shareable (a block whose key another block holds stays private).
  // Sliding blocks wholly before the window of position `length` are released first (Slide).
  bool Write(int64_t id, std::span<const int32_t> tokens, std::vector<KvBlockCopy>* copies);
  // Write's full-attention part only (all of it with one group): a prompt at admission, whose
  // sliding blocks each chunk then takes with Place.
  bool Append(int64_t id, std::span<const int32_t> tokens, std::vector<KvBlockCopy>* copies);
  // A step computes positions [begin, end) of `id` (written, begin at least what is committed):
  // releases the sliding blocks wholly before the window of `begin` (Slide) and takes those of
  // the positions up to `end` that the sequence lacks (a shared or computed cached block that
  // `begin` lies inside is copied first, appended to `copies`). Returns false, having only
  // released, when the sliding group has too few free blocks. A no-op with one group.
  bool Place(int64_t id, int64_t begin, int64_t end, std::vector<KvBlockCopy>* copies);
  // Cuts `id` back to its first `length` positions (at least those committed, at most
  // length(id)): a step's rejected drafted tokens. Blocks past them are released; a block they
  // had filled leaves the prefix cache (its K/V were never committed).
  void Truncate(int64_t id, int64_t length);
  // The K/V of every position written so far (or before `position`) are computed: the cached
  // blocks wholly before it become shareable.
  void Commit(int64_t id) { Commit(id, length(id)); }
  void Commit(int64_t id, int64_t position);
  // Positions from `position` on are all that later steps compute: the sliding blocks wholly
  // before the window of `position` are released (a no-op with one group).
  void Slide(int64_t id, int64_t position);
  // Ends `id` (finished, cancelled, failed or preempted): its references go; blocks nobody
  // references become free, computed cached ones kept for reuse (the last block released
  // first), others leaving the cache.
  void Free(int64_t id);

  bool is_open(int64_t id) const { return sequences_.count(id) != 0; }
  int64_t length(int64_t id) const;  // positions written
  std::span<const KvBlockId> table(int64_t id) const;
  // The sliding-window layers' table: as long as table(id) once every written position is
  // placed (shorter while a prompt's later chunks are not), released entries kReleasedBlock.
  std::span<const KvBlockId> sliding_table(int64_t id) const;
  int64_t refs(KvBlockId block, int g = kFullGroup) const {
    return groups_[g].blocks[static_cast<size_t>(block)].refs;
  }
  // Whether `block` is in the prefix cache.
  bool cached(KvBlockId block, int g = kFullGroup) const {
    return groups_[g].blocks[static_cast<size_t>(block)].content != 0;
  }
  int64_t open_sequences() const { return static_cast<int64_t>(sequences_.size()); }

 private:
  // A cache key: the content id of the previous block in the chain (0 for the first block)
  // and the block's tokens.
  struct Key {
    uint64_t parent = 0;
    std::vector<int32_t> tokens;
    bool operator==(const Key& o) const { return parent == o.parent && tokens == o.tokens; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Block {
    int64_t refs = 0;
    uint64_t content = 0;                // content id while cached, else 0
    bool computed = false;               // while cached: its K/V are computed (shareable)
    Key key;                             // while cached
    std::list<KvBlockId>::iterator lru;  // while cached and unreferenced
  };
  struct Group {
    std::vector<Block> blocks;
    std::vector<KvBlockId> free;  // unreferenced and uncached
    std::list<KvBlockId> lru;     // unreferenced and cached, least recently released first
    int64_t peak = 0;
  };
  struct Sequence {
    std::vector<KvBlockId> table;
    std::vector<KvBlockId> sliding;  // with sliding-window layers: their table
    std::vector<int32_t> tokens;     // the token at each position written
    int64_t registered_blocks = 0;   // leading full blocks already offered to the cache
    int64_t computed_blocks = 0;     // leading full blocks whose K/V are computed
    uint64_t chain = 0;              // content id of the last registered block's content
    std::vector<uint64_t> chains;    // `chain` after each registered block (Truncate)
  };

  // The cached block with this key (computed only, or any), or -1.
  KvBlockId Lookup(const Key& key, bool computed_only = true) const;
  // Leading whole blocks of `prompt` found in the cache (in both groups as far as the sliding
  // layers' window needs), their full blocks appended to `found` when given.
  int64_t Hits(std::span<const int32_t> prompt, bool computed_only,
               std::vector<KvBlockId>* found = nullptr) const;
  // The first table index whose sliding block the window of position `position` reads.
  int64_t FirstWindowBlock(int64_t position) const {
    return std::max<int64_t>(0, position - window_ + 1) / block_tokens_;
  }
  // The sliding block cached with full block `b` (computed only, or any), or -1.
  KvBlockId SlidingOf(KvBlockId b, bool computed_only) const;
  // Whether the window before `hits` leading blocks of a prompt of `last` + 1 positions (`chain`:
  // their full blocks) has its sliding blocks cached; not computed_only: or still to come with a
  // full block being computed.
  bool WindowCached(std::span<const KvBlockId> chain, int64_t hits, int64_t last,
                    bool computed_only) const;
  // The sliding blocks `id` must take to place positions up to `end`, a copy counted, and those
  // it holds wholly before the window of `begin` that a release would free (`releasable`).
  int64_t SlidingNeed(const Sequence& s, int64_t begin, int64_t end, int64_t* releasable) const;
  // Append without entering filled blocks in the cache.
  bool TakeFull(Sequence* s, std::span<const int32_t> tokens, std::vector<KvBlockCopy>* copies);
  // Whether `s`'s sliding block holding `begin` must be copied before a write from there.
  bool MustCopySliding(const Sequence& s, int64_t begin) const;
  // Takes `s`'s missing sliding blocks up to `end` (room checked), copying the one holding `begin`
  // where it must; a block whose full block this sequence cached enters the cache with it.
  void TakeSliding(Sequence* s, int64_t begin, int64_t end, std::vector<KvBlockCopy>* copies);
  // Enters the blocks of `id` that writes have filled in the cache.
  void Register(int64_t id);
  // Takes a free block of group `g` (an unused one first, else the least recently released
  // cached one).
  KvBlockId Take(int g);
  void AddRef(int g, KvBlockId b);
  void Unref(int g, KvBlockId b);
  void Uncache(int g, KvBlockId b);
  void NoteUse(int g) { groups_[g].peak = std::max(groups_[g].peak, used_blocks(g)); }
  Sequence& At(int64_t id);
  const Sequence& At(int64_t id) const;

  int64_t block_tokens_;
  bool prefix_caching_;
  int64_t window_;
  int64_t step_tokens_;
  Group groups_[2];
  std::unordered_map<Key, KvBlockId, KeyHash> cache_;      // full blocks
  std::unordered_map<uint64_t, KvBlockId> sliding_cache_;  // by their full block's content id
  std::unordered_map<int64_t, Sequence> sequences_;
  uint64_t next_content_ = 1;
};

}  // namespace df11
