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
      blocks_(static_cast<size_t>(options.blocks)) {
  DF11_CHECK(CheckKvBlocksOptions(options).ok());
  free_.reserve(blocks_.size());
  // Lowest ids first, so a fresh pool hands out 0, 1, 2, ...
  for (int64_t b = options.blocks - 1; b >= 0; --b) free_.push_back(static_cast<KvBlockId>(b));
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

int64_t KvBlocks::length(int64_t id) const {
  return static_cast<int64_t>(At(id).tokens.size());
}

std::span<const KvBlockId> KvBlocks::table(int64_t id) const { return At(id).table; }

KvBlockId KvBlocks::Lookup(const Key& key, bool computed_only) const {
  auto it = cache_.find(key);
  if (it == cache_.end()) return -1;
  return !computed_only || blocks_[static_cast<size_t>(it->second)].computed ? it->second : -1;
}

KvBlockId KvBlocks::Take() {
  KvBlockId b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    DF11_CHECK(!lru_.empty());
    b = lru_.front();
    lru_.pop_front();
    Uncache(b);
  }
  blocks_[static_cast<size_t>(b)].refs = 1;
  NoteUse();
  return b;
}

void KvBlocks::AddRef(KvBlockId b) {
  Block& block = blocks_[static_cast<size_t>(b)];
  if (block.refs++ == 0) {  // only cached blocks are found unreferenced
    lru_.erase(block.lru);
    NoteUse();
  }
}

void KvBlocks::Unref(KvBlockId b) {
  Block& block = blocks_[static_cast<size_t>(b)];
  DF11_CHECK(block.refs > 0);
  if (--block.refs > 0) return;
  if (block.content != 0 && !block.computed) Uncache(b);  // never computed: not reusable
  if (block.content != 0) {
    block.lru = lru_.insert(lru_.end(), b);
  } else {
    free_.push_back(b);
  }
}

void KvBlocks::Uncache(KvBlockId b) {
  Block& block = blocks_[static_cast<size_t>(b)];
  cache_.erase(block.key);
  block.content = 0;
  block.computed = false;
  block.key = Key();
}

int64_t KvBlocks::Hits(std::span<const int32_t> prompt, bool computed_only) const {
  if (!prefix_caching_) return 0;
  const int64_t full = static_cast<int64_t>(prompt.size()) / block_tokens_;
  Key key;
  int64_t hits = 0;
  for (; hits < full; ++hits) {
    const auto begin = prompt.begin() + hits * block_tokens_;
    key.tokens.assign(begin, begin + block_tokens_);
    const KvBlockId b = Lookup(key, computed_only);
    if (b < 0) break;
    key.parent = blocks_[static_cast<size_t>(b)].content;
  }
  return hits;
}

int64_t KvBlocks::CachedPrefix(std::span<const int32_t> prompt) const {
  if (prompt.empty()) return 0;
  return std::min(Hits(prompt, true) * block_tokens_, static_cast<int64_t>(prompt.size()) - 1);
}


int64_t KvBlocks::PromptCost(std::span<const int32_t> prompt) const {
  const int64_t cached = CachedPrefix(prompt);
  const int64_t hits = BlocksFor(cached);
  int64_t cost = BlocksFor(static_cast<int64_t>(prompt.size())) - hits;
  Key key;
  for (int64_t i = 0; i < hits; ++i) {
    const auto begin = prompt.begin() + i * block_tokens_;
    key.tokens.assign(begin, begin + block_tokens_);
    const Block& block = blocks_[static_cast<size_t>(Lookup(key))];
    key.parent = block.content;
    if (block.refs == 0) ++cost;  // leaves the LRU
  }
  // The last prompt position lands in the last shared block: the write copies it first.
  if (cached % block_tokens_ != 0) ++cost;
  return cost;
}

int64_t KvBlocks::Open(int64_t id, std::span<const int32_t> prompt) {
  DF11_CHECK_MSG(!is_open(id), "KV sequence " + std::to_string(id) + " is already open");
  DF11_CHECK(!prompt.empty());
  Sequence& s = sequences_[id];
  const int64_t cached = CachedPrefix(prompt);
  const int64_t hits = BlocksFor(cached);
  Key key;
  for (int64_t i = 0; i < hits; ++i) {
    const auto begin = prompt.begin() + i * block_tokens_;
    key.tokens.assign(begin, begin + block_tokens_);
    const KvBlockId b = Lookup(key);
    AddRef(b);
    s.table.push_back(b);
    key.parent = blocks_[static_cast<size_t>(b)].content;
    s.chains.push_back(key.parent);
  }
  s.tokens.assign(prompt.begin(), prompt.begin() + cached);
  s.registered_blocks = hits;
  s.computed_blocks = hits;
  s.chain = key.parent;
  return cached;
}

void KvBlocks::Fork(int64_t parent, int64_t child) {
  DF11_CHECK_MSG(!is_open(child), "KV sequence " + std::to_string(child) + " is already open");
  const Sequence copy = At(parent);
  for (KvBlockId b : copy.table) AddRef(b);
  sequences_[child] = copy;
}

bool KvBlocks::Write(int64_t id, std::span<const int32_t> tokens,
                     std::vector<KvBlockCopy>* copies) {
  Sequence& s = At(id);
  const int64_t length = static_cast<int64_t>(s.tokens.size());
  const int64_t count = static_cast<int64_t>(tokens.size());
  if (count == 0) return true;
  const int64_t fresh = BlocksFor(length + count) - static_cast<int64_t>(s.table.size());
  // The write reaches an existing block only when the sequence ends inside one.
  KvBlockId touched = -1;
  if (length % block_tokens_ != 0) touched = s.table[static_cast<size_t>(length / block_tokens_)];
  const bool copy = touched >= 0 && (blocks_[static_cast<size_t>(touched)].refs > 1 ||
                                     blocks_[static_cast<size_t>(touched)].content != 0);
  if (fresh + (copy ? 1 : 0) > free_blocks()) return false;
  if (copy) {
    const KvBlockId to = Take();
    copies->push_back({touched, to});
    s.table[static_cast<size_t>(length / block_tokens_)] = to;
    Unref(touched);
  }
  for (int64_t i = 0; i < fresh; ++i) s.table.push_back(Take());
  s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
  Register(id);
  return true;
}

void KvBlocks::Register(int64_t id) {
  Sequence& s = At(id);
  if (!prefix_caching_) return;
  const int64_t full = static_cast<int64_t>(s.tokens.size()) / block_tokens_;
  for (; s.registered_blocks < full; ++s.registered_blocks) {
    const KvBlockId b = s.table[static_cast<size_t>(s.registered_blocks)];
    const auto begin = s.tokens.begin() + s.registered_blocks * block_tokens_;
    Key key{s.chain, std::vector<int32_t>(begin, begin + block_tokens_)};
    const KvBlockId same = Lookup(key, /*computed_only=*/false);
    if (same >= 0) {  // equal content is cached already: chain on through it
      s.chain = blocks_[static_cast<size_t>(same)].content;
      s.chains.push_back(s.chain);
      continue;
    }
    Block& block = blocks_[static_cast<size_t>(b)];
    DF11_CHECK(block.content == 0);  // blocks past the registered ones are this sequence's own
    block.content = next_content_++;
    block.key = key;
    cache_.emplace(std::move(key), b);
    s.chain = block.content;
    s.chains.push_back(s.chain);
  }
}

void KvBlocks::Truncate(int64_t id, int64_t length) {
  Sequence& s = At(id);
  DF11_CHECK(length >= s.computed_blocks * block_tokens_ &&
             length <= static_cast<int64_t>(s.tokens.size()));
  s.tokens.resize(static_cast<size_t>(length));
  const int64_t keep = BlocksFor(length), full = length / block_tokens_;
  // Blocks at or past `full` were written since the last commit: this sequence's own.
  for (int64_t i = static_cast<int64_t>(s.table.size()) - 1; i >= full; --i) {
    const KvBlockId b = s.table[static_cast<size_t>(i)];
    if (i < keep) {
      if (blocks_[static_cast<size_t>(b)].content != 0) Uncache(b);  // no longer full
    } else {
      Unref(b);  // uncommitted: leaves the cache too
    }
  }
  s.table.resize(static_cast<size_t>(keep));
  if (s.registered_blocks > full) {
    s.registered_blocks = full;
    s.chains.resize(static_cast<size_t>(full));
    s.chain = full > 0 ? s.chains.back() : 0;
  }
}

void KvBlocks::Commit(int64_t id) {
  Sequence& s = At(id);
  const int64_t full = static_cast<int64_t>(s.tokens.size()) / block_tokens_;
  for (; s.computed_blocks < full; ++s.computed_blocks) {
    Block& block = blocks_[static_cast<size_t>(s.table[static_cast<size_t>(s.computed_blocks)])];
    if (block.content != 0) block.computed = true;
  }
}

void KvBlocks::Free(int64_t id) {
  auto it = sequences_.find(id);
  DF11_CHECK_MSG(it != sequences_.end(), "KV sequence " + std::to_string(id) + " is not open");
  const std::vector<KvBlockId>& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b) Unref(*b);
  sequences_.erase(it);
}

}  // namespace df11
