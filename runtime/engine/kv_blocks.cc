// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/kv_blocks.h"

#include <algorithm>

#include "kernels/common/check.h"

namespace df11 {
namespace {

uint64_t Mix(uint64_t h, uint64_t x) {
  h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  return h ^ (h >> 29);
}

}  // namespace

Status CheckKvBlocksOptions(const KvBlocksOptions& options) {
  if (options.block_tokens < 1 || options.block_tokens > (int64_t{1} << 20)) {
    return Status::InvalidArgument(
        "KV block_tokens: expected 1..1048576 positions per block, got " +
        std::to_string(options.block_tokens));
  }
  if (options.blocks < 1 || options.blocks > (int64_t{1} << 30)) {
    return Status::InvalidArgument("KV blocks: expected a pool of 1..1073741824 blocks, got " +
                                   std::to_string(options.blocks));
  }
  if (options.window < 0 || (options.window > 0 && (options.sliding_blocks < 1 ||
                                                    options.sliding_blocks > (int64_t{1} << 30)))) {
    return Status::InvalidArgument(
        "KV sliding window: expected a window >= 0 and, with a window, a sliding-window pool of "
        "1..1073741824 blocks, got window " +
        std::to_string(options.window) + " and " + std::to_string(options.sliding_blocks) +
        " blocks");
  }
  if (options.step_tokens < 0) {
    return Status::InvalidArgument(
        "KV step_tokens: expected the most positions a step writes per sequence, >= 0 (0: no "
        "limit), got " +
        std::to_string(options.step_tokens));
  }
  return Status::Ok();
}

size_t KvBlocks::KeyHash::operator()(const Key& k) const {
  uint64_t h = Mix(0, k.parent);
  for (int32_t t : k.tokens) h = Mix(h, static_cast<uint32_t>(t));
  return static_cast<size_t>(h);
}

KvBlocks::KvBlocks(const KvBlocksOptions& options)
    : block_tokens_(options.block_tokens),
      prefix_caching_(options.prefix_caching),
      window_(options.window),
      step_tokens_(options.step_tokens) {
  DF11_CHECK(CheckKvBlocksOptions(options).ok());
  for (int g = 0; g < groups(); ++g) {
    const int64_t n = g == kFullGroup ? options.blocks : options.sliding_blocks;
    Group& group = groups_[g];
    group.blocks.resize(static_cast<size_t>(n));
    group.free.reserve(static_cast<size_t>(n));
    // Lowest ids first, so a fresh pool hands out 0, 1, 2, ...
    for (int64_t b = n - 1; b >= 0; --b) group.free.push_back(static_cast<KvBlockId>(b));
  }
}

KvBlocks::Sequence& KvBlocks::At(int64_t id) {
  auto it = sequences_.find(id);
  DF11_CHECK_MSG(it != sequences_.end(), "KV sequence " + std::to_string(id) + " is not open");
  return it->second;
}

const KvBlocks::Sequence& KvBlocks::At(int64_t id) const {
  auto it = sequences_.find(id);
  DF11_CHECK_MSG(it != sequences_.end(), "KV sequence " + std::to_string(id) + " is not open");
  return it->second;
}

int64_t KvBlocks::length(int64_t id) const { return static_cast<int64_t>(At(id).tokens.size()); }

std::span<const KvBlockId> KvBlocks::table(int64_t id) const { return At(id).table; }

std::span<const KvBlockId> KvBlocks::sliding_table(int64_t id) const { return At(id).sliding; }

bool KvBlocks::EverFits(int64_t prompt, int64_t total) const {
  if (BlocksFor(total) > total_blocks(kFullGroup)) return false;
  if (groups() == 1) return true;
  // Without a step limit a prompt is written in one step, all its sliding blocks held.
  const int64_t held = step_tokens_ > 0 ? SlidingBlocksFor(total, step_tokens_)
                                        : std::max(BlocksFor(prompt), SlidingBlocksFor(total));
  return held <= total_blocks(kSlidingGroup);
}

KvBlockId KvBlocks::Lookup(const Key& key, bool computed_only) const {
  auto it = cache_.find(key);
  if (it == cache_.end()) return -1;
  const Block& block = groups_[kFullGroup].blocks[static_cast<size_t>(it->second)];
  return !computed_only || block.computed ? it->second : -1;
}

KvBlockId KvBlocks::SlidingOf(KvBlockId b, bool computed_only) const {
  const uint64_t content = groups_[kFullGroup].blocks[static_cast<size_t>(b)].content;
  auto it = sliding_cache_.find(content);
  if (it == sliding_cache_.end()) return -1;
  const Block& block = groups_[kSlidingGroup].blocks[static_cast<size_t>(it->second)];
  return !computed_only || block.computed ? it->second : -1;
}

KvBlockId KvBlocks::Take(int g) {
  Group& group = groups_[g];
  KvBlockId b;
  if (!group.free.empty()) {
    b = group.free.back();
    group.free.pop_back();
  } else {
    DF11_CHECK(!group.lru.empty());
    b = group.lru.front();
    group.lru.pop_front();
    Uncache(g, b);
  }
  group.blocks[static_cast<size_t>(b)].refs = 1;
  NoteUse(g);
  return b;
}

void KvBlocks::AddRef(int g, KvBlockId b) {
  Block& block = groups_[g].blocks[static_cast<size_t>(b)];
  if (block.refs++ == 0) {  // only cached blocks are found unreferenced
    groups_[g].lru.erase(block.lru);
    NoteUse(g);
  }
}

void KvBlocks::Unref(int g, KvBlockId b) {
  Group& group = groups_[g];
  Block& block = group.blocks[static_cast<size_t>(b)];
  DF11_CHECK(block.refs > 0);
  if (--block.refs > 0) return;
  if (block.content != 0 && !block.computed) Uncache(g, b);  // never computed: not reusable
  if (block.content != 0) {
    block.lru = group.lru.insert(group.lru.end(), b);
  } else {
    group.free.push_back(b);
  }
}

void KvBlocks::Uncache(int g, KvBlockId b) {
  Block& block = groups_[g].blocks[static_cast<size_t>(b)];
  const uint64_t content = block.content;
  if (g == kSlidingGroup) {
    sliding_cache_.erase(content);
  } else {
    cache_.erase(block.key);
  }
  block.content = 0;
  block.computed = false;
  block.key = Key();
  if (g != kFullGroup || groups() == 1) return;
  // The sliding block cached with it can never be found again: free it if nobody holds it.
  auto it = sliding_cache_.find(content);
  if (it == sliding_cache_.end()) return;
  const KvBlockId s = it->second;
  Block& sliding = groups_[kSlidingGroup].blocks[static_cast<size_t>(s)];
  if (sliding.refs > 0) {  // released uncached when its holders go
    sliding_cache_.erase(it);
    sliding.content = 0;
    sliding.computed = false;
    return;
  }
  groups_[kSlidingGroup].lru.erase(sliding.lru);
  Uncache(kSlidingGroup, s);
  groups_[kSlidingGroup].free.push_back(s);
}

int64_t KvBlocks::Hits(std::span<const int32_t> prompt, bool computed_only,
                       std::vector<KvBlockId>* found) const {
  if (!prefix_caching_) return 0;
  const int64_t full = static_cast<int64_t>(prompt.size()) / block_tokens_;
  Key key;
  std::vector<KvBlockId> chain;
  for (int64_t i = 0; i < full; ++i) {
    const auto begin = prompt.begin() + i * block_tokens_;
    key.tokens.assign(begin, begin + block_tokens_);
    const KvBlockId b = Lookup(key, computed_only);
    if (b < 0) break;
    chain.push_back(b);
    key.parent = groups_[kFullGroup].blocks[static_cast<size_t>(b)].content;
  }
  int64_t hits = static_cast<int64_t>(chain.size());
  if (groups() == 2) {
    // Shorten the hit to where the sliding blocks the window before it reads are cached too.
    const int64_t last = static_cast<int64_t>(prompt.size()) - 1;
    while (hits > 0 && !WindowCached(chain, hits, last, computed_only)) --hits;
  }
  if (found != nullptr) found->assign(chain.begin(), chain.begin() + hits);
  return hits;
}

bool KvBlocks::WindowCached(std::span<const KvBlockId> chain, int64_t hits, int64_t last,
                            bool computed_only) const {
  for (int64_t i = FirstWindowBlock(std::min(hits * block_tokens_, last)); i < hits; ++i) {
    const KvBlockId b = chain[static_cast<size_t>(i)];
    if (SlidingOf(b, computed_only) >= 0) continue;
    // A full block still being computed: its sliding block comes with the chunk computing it.
    if (!computed_only && !groups_[kFullGroup].blocks[static_cast<size_t>(b)].computed) continue;
    return false;
  }
  return true;
}

int64_t KvBlocks::CachedPrefix(std::span<const int32_t> prompt) const {
  if (prompt.empty()) return 0;
  return std::min(Hits(prompt, true) * block_tokens_, static_cast<int64_t>(prompt.size()) - 1);
}

int64_t KvBlocks::PromptCost(std::span<const int32_t> prompt, int g) const {
  std::vector<KvBlockId> found;
  const int64_t cached = prompt.empty() ? 0
                                        : std::min(Hits(prompt, true, &found) * block_tokens_,
                                                   static_cast<int64_t>(prompt.size()) - 1);
  const int64_t hits = BlocksFor(cached);
  const int64_t first = g == kFullGroup ? 0 : FirstWindowBlock(cached);
  // The full-attention blocks of the whole prompt, the sliding ones of its first chunk.
  const int64_t size = static_cast<int64_t>(prompt.size());
  const int64_t end =
      g == kFullGroup || step_tokens_ == 0 ? size : std::min(size, cached + step_tokens_);
  int64_t cost = BlocksFor(end) - hits;
  for (int64_t i = first; i < hits; ++i) {
    KvBlockId b = found[static_cast<size_t>(i)];
    if (g == kSlidingGroup) b = SlidingOf(b, true);
    if (groups_[g].blocks[static_cast<size_t>(b)].refs == 0) ++cost;  // leaves the LRU
  }
  // The last prompt position lands in the last shared block: the write copies it first.
  if (cached % block_tokens_ != 0) ++cost;
  return cost;
}

bool KvBlocks::PromptFits(std::span<const int32_t> prompt) const {
  for (int g = 0; g < groups(); ++g) {
    if (PromptCost(prompt, g) > free_blocks(g)) return false;
  }
  return true;
}

int64_t KvBlocks::Open(int64_t id, std::span<const int32_t> prompt) {
  DF11_CHECK_MSG(!is_open(id), "KV sequence " + std::to_string(id) + " is already open");
  DF11_CHECK(!prompt.empty());
  std::vector<KvBlockId> found;
  const int64_t cached =
      std::min(Hits(prompt, true, &found) * block_tokens_, static_cast<int64_t>(prompt.size()) - 1);
  const int64_t hits = BlocksFor(cached);
  Sequence& s = sequences_[id];
  for (int64_t i = 0; i < hits; ++i) {
    const KvBlockId b = found[static_cast<size_t>(i)];
    AddRef(kFullGroup, b);
    s.table.push_back(b);
    s.chain = groups_[kFullGroup].blocks[static_cast<size_t>(b)].content;
    s.chains.push_back(s.chain);
    if (groups() == 1) continue;
    KvBlockId sliding = kReleasedBlock;
    if (i >= FirstWindowBlock(cached)) {
      sliding = SlidingOf(b, true);
      AddRef(kSlidingGroup, sliding);
    }
    s.sliding.push_back(sliding);
  }
  s.tokens.assign(prompt.begin(), prompt.begin() + cached);
  s.registered_blocks = hits;
  s.computed_blocks = hits;
  return cached;
}

void KvBlocks::Fork(int64_t parent, int64_t child) {
  DF11_CHECK_MSG(!is_open(child), "KV sequence " + std::to_string(child) + " is already open");
  const Sequence copy = At(parent);
  for (KvBlockId b : copy.table) AddRef(kFullGroup, b);
  for (KvBlockId b : copy.sliding) {
    if (b != kReleasedBlock) AddRef(kSlidingGroup, b);
  }
  sequences_[child] = copy;
}

void KvBlocks::Slide(int64_t id, int64_t position) {
  if (groups() == 1) return;
  Sequence& s = At(id);
  const int64_t end = std::min(FirstWindowBlock(position), static_cast<int64_t>(s.sliding.size()));
  for (int64_t i = 0; i < end; ++i) {
    KvBlockId& b = s.sliding[static_cast<size_t>(i)];
    if (b == kReleasedBlock) continue;
    Unref(kSlidingGroup, b);
    b = kReleasedBlock;
  }
}

bool KvBlocks::Append(int64_t id, std::span<const int32_t> tokens,
                      std::vector<KvBlockCopy>* copies) {
  if (!TakeFull(&At(id), tokens, copies)) return false;
  Register(id);
  return true;
}

bool KvBlocks::TakeFull(Sequence* seq, std::span<const int32_t> tokens,
                        std::vector<KvBlockCopy>* copies) {
  Sequence& s = *seq;
  const int64_t length = static_cast<int64_t>(s.tokens.size());
  const int64_t count = static_cast<int64_t>(tokens.size());
  if (count == 0) return true;
  const int64_t fresh = BlocksFor(length + count) - static_cast<int64_t>(s.table.size());
  // The write reaches an existing block only when the sequence ends inside one; it is copied
  // first when shared or cached.
  const size_t last = static_cast<size_t>(length / block_tokens_);
  bool copy = false;
  if (length % block_tokens_ != 0) {
    const Block& block = groups_[kFullGroup].blocks[static_cast<size_t>(s.table[last])];
    copy = block.refs > 1 || block.content != 0;
  }
  if (fresh + (copy ? 1 : 0) > free_blocks(kFullGroup)) return false;
  if (copy) {
    const KvBlockId from = s.table[last];
    const KvBlockId to = Take(kFullGroup);
    copies->push_back({from, to, kFullGroup});
    s.table[last] = to;
    Unref(kFullGroup, from);
  }
  for (int64_t i = 0; i < fresh; ++i) s.table.push_back(Take(kFullGroup));
  s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
  return true;
}

bool KvBlocks::Write(int64_t id, std::span<const int32_t> tokens,
                     std::vector<KvBlockCopy>* copies) {
  if (groups() == 1 || tokens.empty()) return Append(id, tokens, copies);
  const int64_t length = KvBlocks::length(id);
  const int64_t end = length + static_cast<int64_t>(tokens.size());
  // Sliding blocks the write's window no longer reads go first; they count as free.
  int64_t releasable = 0;
  const int64_t need = SlidingNeed(At(id), length, end, &releasable);
  if (need > free_blocks(kSlidingGroup) + releasable) return false;
  if (!TakeFull(&At(id), tokens, copies)) return false;
  DF11_CHECK(Place(id, length, end, copies));
  Register(id);  // both groups' blocks that the write filled (copies done first)
  return true;
}

bool KvBlocks::MustCopySliding(const Sequence& s, int64_t begin) const {
  const size_t i = static_cast<size_t>(begin / block_tokens_);
  if (begin % block_tokens_ == 0 || i >= s.sliding.size()) return false;
  const Block& block = groups_[kSlidingGroup].blocks[static_cast<size_t>(s.sliding[i])];
  // A block being written chunk by chunk is this sequence's own and not yet computed.
  return block.refs > 1 || block.computed;
}

int64_t KvBlocks::SlidingNeed(const Sequence& s, int64_t begin, int64_t end,
                              int64_t* releasable) const {
  const int64_t size = static_cast<int64_t>(s.sliding.size());
  *releasable = 0;
  for (int64_t i = 0; i < std::min(FirstWindowBlock(begin), size); ++i) {
    const KvBlockId b = s.sliding[static_cast<size_t>(i)];
    if (b != kReleasedBlock && groups_[kSlidingGroup].blocks[static_cast<size_t>(b)].refs == 1) {
      ++*releasable;
    }
  }
  return std::max<int64_t>(0, BlocksFor(end) - size) + (MustCopySliding(s, begin) ? 1 : 0);
}

void KvBlocks::TakeSliding(Sequence* s, int64_t begin, int64_t end,
                           std::vector<KvBlockCopy>* copies) {
  std::vector<KvBlockId>& table = s->sliding;
  if (MustCopySliding(*s, begin)) {
    const size_t i = static_cast<size_t>(begin / block_tokens_);
    const KvBlockId from = table[i];
    const KvBlockId to = Take(kSlidingGroup);
    copies->push_back({from, to, kSlidingGroup});
    table[i] = to;
    Unref(kSlidingGroup, from);
  }
  while (static_cast<int64_t>(table.size()) < BlocksFor(end)) {
    const size_t i = table.size();
    const KvBlockId b = Take(kSlidingGroup);
    table.push_back(b);
    // The full block of these positions entered the cache when the prompt was appended (or
    // this sequence chained through another's): the sliding block joins it, once.
    const uint64_t content = groups_[kFullGroup].blocks[static_cast<size_t>(s->table[i])].content;
    if (content == 0 || static_cast<int64_t>(i) >= s->registered_blocks ||
        sliding_cache_.count(content) != 0) {
      continue;
    }
    groups_[kSlidingGroup].blocks[static_cast<size_t>(b)].content = content;
    sliding_cache_.emplace(content, b);
  }
}

bool KvBlocks::Place(int64_t id, int64_t begin, int64_t end, std::vector<KvBlockCopy>* copies) {
  if (groups() == 1) return true;
  Sequence& s = At(id);
  DF11_CHECK(begin >= 0 && begin <= end && end <= static_cast<int64_t>(s.tokens.size()));
  Slide(id, begin);
  int64_t releasable = 0;  // none left: Slide released them
  if (SlidingNeed(s, begin, end, &releasable) > free_blocks(kSlidingGroup)) return false;
  TakeSliding(&s, begin, end, copies);
  return true;
}

void KvBlocks::Register(int64_t id) {
  Sequence& s = At(id);
  if (!prefix_caching_) return;
  const int64_t full = static_cast<int64_t>(s.tokens.size()) / block_tokens_;
  for (; s.registered_blocks < full; ++s.registered_blocks) {
    const size_t i = static_cast<size_t>(s.registered_blocks);
    const auto begin = s.tokens.begin() + s.registered_blocks * block_tokens_;
    Key key{s.chain, std::vector<int32_t>(begin, begin + block_tokens_)};
    const KvBlockId same = Lookup(key, /*computed_only=*/false);
    if (same >= 0) {  // equal content is cached already: chain on through it
      s.chain = groups_[kFullGroup].blocks[static_cast<size_t>(same)].content;
      s.chains.push_back(s.chain);
      continue;
    }
    Block& block = groups_[kFullGroup].blocks[static_cast<size_t>(s.table[i])];
    DF11_CHECK(block.content == 0);  // blocks past the registered ones are this sequence's own
    block.content = next_content_++;
    block.key = key;
    cache_.emplace(std::move(key), s.table[i]);
    s.chain = block.content;
    s.chains.push_back(s.chain);
    // A sliding block not taken yet joins when a chunk takes it (TakeSliding).
    if (groups() == 1 || i >= s.sliding.size() || s.sliding[i] == kReleasedBlock) continue;
    Block& sliding = groups_[kSlidingGroup].blocks[static_cast<size_t>(s.sliding[i])];
    DF11_CHECK(sliding.content == 0);
    sliding.content = block.content;
    sliding_cache_.emplace(block.content, s.sliding[i]);
  }
}

void KvBlocks::Truncate(int64_t id, int64_t length) {
  Sequence& s = At(id);
  DF11_CHECK(length >= s.computed_blocks * block_tokens_ &&
             length <= static_cast<int64_t>(s.tokens.size()));
  s.tokens.resize(static_cast<size_t>(length));
  const int64_t keep = BlocksFor(length), full = length / block_tokens_;
  // Blocks at or past `full` were written since the last commit: this sequence's own (in both
  // groups; a full-attention block leaving the cache takes its sliding one along).
  for (int64_t i = static_cast<int64_t>(s.table.size()) - 1; i >= full; --i) {
    const KvBlockId b = s.table[static_cast<size_t>(i)];
    const KvBlockId sliding = groups() == 2 && i < static_cast<int64_t>(s.sliding.size())
                                  ? s.sliding[static_cast<size_t>(i)]
                                  : kReleasedBlock;
    if (i < keep) {
      if (groups_[kFullGroup].blocks[static_cast<size_t>(b)].content != 0) {
        Uncache(kFullGroup, b);  // no longer full
      }
    } else {
      Unref(kFullGroup, b);  // uncommitted: leaves the cache too
      if (sliding != kReleasedBlock) Unref(kSlidingGroup, sliding);
    }
  }
  s.table.resize(static_cast<size_t>(keep));
  if (groups() == 2) {
    s.sliding.resize(std::min(s.sliding.size(), static_cast<size_t>(keep)));
    // Releases follow a write's first position, which a cut never goes below: the window of
    // the next position is all there.
    for (int64_t i = FirstWindowBlock(length); i < static_cast<int64_t>(s.sliding.size()); ++i) {
      DF11_CHECK(s.sliding[static_cast<size_t>(i)] != kReleasedBlock);
    }
  }
  if (s.registered_blocks > full) {
    s.registered_blocks = full;
    s.chains.resize(static_cast<size_t>(full));
    s.chain = full > 0 ? s.chains.back() : 0;
  }
}

void KvBlocks::Commit(int64_t id, int64_t position) {
  Sequence& s = At(id);
  const int64_t full = std::min(position, static_cast<int64_t>(s.tokens.size())) / block_tokens_;
  for (; s.computed_blocks < full; ++s.computed_blocks) {
    const size_t i = static_cast<size_t>(s.computed_blocks);
    Block& block = groups_[kFullGroup].blocks[static_cast<size_t>(s.table[i])];
    if (block.content != 0) block.computed = true;
    if (groups() == 1 || i >= s.sliding.size() || s.sliding[i] == kReleasedBlock) continue;
    Block& sliding = groups_[kSlidingGroup].blocks[static_cast<size_t>(s.sliding[i])];
    if (sliding.content != 0) sliding.computed = true;
  }
}

void KvBlocks::Free(int64_t id) {
  auto it = sequences_.find(id);
  DF11_CHECK_MSG(it != sequences_.end(), "KV sequence " + std::to_string(id) + " is not open");
  const std::vector<KvBlockId>& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b) Unref(kFullGroup, *b);
  const std::vector<KvBlockId>& sliding = it->second.sliding;
  for (auto b = sliding.rbegin(); b != sliding.rend(); ++b) {
    if (*b != kReleasedBlock) Unref(kSlidingGroup, *b);
  }
  sequences_.erase(it);
}

}  // namespace df11
