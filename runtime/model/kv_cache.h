// SPDX-License-Identifier: Apache-2.0
// The key/value cache of one sequence, of which the first `length` positions are filled. It is
// paged on every backend: K and V in BF16 live in the rank's pool of blocks (host: KvPool,
// kv_pool.h; device: the CUDA backend's one allocation), and `blocks` lists the sequence's blocks
// in position order (position p is row p % block_tokens of block blocks[p / block_tokens]);
// sliding-window layers read `sliding_blocks` instead where a block manager keeps their blocks
// apart (runtime/engine/kv_blocks.h: their own pool, blocks before the window released), else
// `blocks` too, reading only their window; `host_blocks` gives them back to the pool with the
// last copy, or, for tables a block manager plans, is null.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace df11 {

// Bytes one position takes in `layers` layers' K and V of `row` values each (kv_heads *
// head_dim): BF16, as every backend stores them.
inline int64_t KvBytesPerToken(int64_t layers, int64_t row) { return 2 * 2 * layers * row; }

// The slots a cache of `capacity` positions gives a layer whose attention window is `window`
// (0: full attention).
inline int64_t KvSlots(int64_t window, int64_t capacity) {
  return window > 0 ? std::min(window, capacity) : capacity;
}

// Slots over `windows` (one per layer) for a cache of `capacity` positions.
inline int64_t KvSlotsOfLayers(std::span<const int64_t> windows, int64_t capacity) {
  int64_t n = 0;
  for (int64_t w : windows) n += KvSlots(w, capacity);
  return n;
}

// The KV budget's unit is a token of the whole model: a cache of `capacity` positions over layers
// with these `windows` costs its slots over all layers divided by the layer count, rounded up
// (exactly `capacity` without sliding windows; less for a long sequence whose sliding-window
// layers keep only their window).
inline int64_t KvCacheTokens(std::span<const int64_t> windows, int64_t capacity) {
  if (windows.empty()) return capacity;
  const int64_t layers = static_cast<int64_t>(windows.size());
  return (KvSlotsOfLayers(windows, capacity) + layers - 1) / layers;
}

// A paged pool's blocks per block group: the full-attention layers' and, where the sliding-window
// layers keep their own blocks (runtime/engine/kv_blocks.h), theirs (0 without).
struct KvGroupBlocks {
  int64_t full = 0;
  int64_t sliding = 0;
};

// The sliding-window layers' blocks a sequence holds at most while it grows to `positions`
// positions when one step writes at most `step_tokens` of them (>= 1): each write releases the
// blocks wholly before the window of its first position, so it holds positions p - window + 1 to
// p + step_tokens - 1, i.e. ceil(positions / block_tokens) blocks, at most
// ceil((window + step_tokens - 2) / block_tokens) + 1 (decoding, one token a step: the window's).
inline int64_t KvSlidingBlocksFor(int64_t positions, int64_t window, int64_t block_tokens,
                                  int64_t step_tokens = 1) {
  const int64_t span = window + std::max<int64_t>(1, step_tokens) - 2;
  return std::min((positions + block_tokens - 1) / block_tokens,
                  (span + block_tokens - 1) / block_tokens + 1);
}

// Splits the memory of `blocks` whole-model blocks (block_tokens positions over every layer in
// `windows`) between the two groups so that as many sequences of `context` positions fit as
// possible: each needs ceil(context / block_tokens) full-attention blocks and the sliding ones it
// holds at most, KvSlidingBlocksFor(context, window, block_tokens, step_tokens) (a prompt takes
// its sliding blocks chunk by chunk, each step writing at most `step_tokens` positions of a
// sequence; 0: no limit, a whole prompt in one step), which take only their own layers' bytes.
// The sliding group keeps at least one sequence's; where the memory is too small to gain, both
// groups get `blocks`. Without sliding-window layers: {blocks, 0}. All windows > 0 are one
// window.
inline KvGroupBlocks SplitKvBlocks(std::span<const int64_t> windows, int64_t blocks,
                                   int64_t block_tokens, int64_t context, int64_t step_tokens = 0) {
  int64_t full_layers = 0, sliding_layers = 0, window = 0;
  for (int64_t w : windows) {
    (w > 0 ? sliding_layers : full_layers) += 1;
    window = std::max(window, w);
  }
  if (sliding_layers == 0) return {blocks, 0};
  const int64_t f = std::max<int64_t>(1, (context + block_tokens - 1) / block_tokens);
  const int64_t s = KvSlidingBlocksFor(f * block_tokens, window, block_tokens, step_tokens);
  const double units =
      static_cast<double>(blocks) * static_cast<double>(full_layers + sliding_layers);
  const double sequences = units / static_cast<double>(f * full_layers + s * sliding_layers);
  const int64_t sliding = std::max(static_cast<int64_t>(sequences * s), step_tokens > 0 ? s : f);
  if (full_layers == 0) {
    return {(static_cast<int64_t>(units) / sliding_layers / s + 1) * f,
            static_cast<int64_t>(units) / sliding_layers};
  }
  const int64_t full = static_cast<int64_t>(
      (units - static_cast<double>(sliding * sliding_layers)) / static_cast<double>(full_layers));
  if (full < f) return {blocks, blocks};
  return {full, sliding};
}

// The groups of a paged pool of `kv_tokens` budget tokens (whole-model blocks of block_tokens
// positions, at least one): SplitKvBlocks of them for sequences of `context` positions and steps
// of `step_tokens`. The engine's block manager sizes its groups with this, and the CUDA backend
// its device pool (each layer of group g holds groups' g blocks), so both hold the same block ids.
inline KvGroupBlocks KvGroupsOfBudget(std::span<const int64_t> windows, int64_t kv_tokens,
                                      int64_t block_tokens, int64_t context,
                                      int64_t step_tokens = 0) {
  return SplitKvBlocks(windows, std::max<int64_t>(1, kv_tokens / block_tokens), block_tokens,
                       context, step_tokens);
}

// Blocks of one layer that `groups` take on a rank holding layers with windows `local` (a group
// none of them is in takes nothing).
inline int64_t KvLayerBlocksOf(KvGroupBlocks groups, std::span<const int64_t> local) {
  int64_t n = 0;
  for (int64_t w : local) n += w > 0 ? groups.sliding : groups.full;
  return n;
}

// The largest budget, in whole-model blocks (0 when none), whose KvGroupsOfBudget over the
// model's `windows` a rank holding layers `local` keeps in `layer_blocks` blocks of one layer:
// without sliding-window layers layer_blocks / local layers; with them the split's groups, whose
// sizes differ, weighed by the rank's layers in each (a pipeline stage of other layers than the
// model's mix).
inline int64_t KvBudgetBlocksIn(std::span<const int64_t> windows, std::span<const int64_t> local,
                                int64_t layer_blocks, int64_t block_tokens, int64_t context,
                                int64_t step_tokens = 0) {
  const int64_t layers = std::max<int64_t>(1, static_cast<int64_t>(local.size()));
  if (std::find_if(windows.begin(), windows.end(), [](int64_t w) { return w > 0; }) ==
      windows.end()) {
    return layer_blocks / layers;
  }
  auto fits = [&](int64_t blocks) {
    return KvLayerBlocksOf(SplitKvBlocks(windows, blocks, block_tokens, context, step_tokens),
                           local) <= layer_blocks;
  };
  // The groups grow with the budget; the largest that fits, by bisection.
  int64_t lo = 0,
          hi = std::min<int64_t>(
              INT32_MAX, layer_blocks * std::max<int64_t>(1, static_cast<int64_t>(windows.size())));
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// The sequences of `context` positions that `groups` hold: each takes ceil(context /
// block_tokens) full-attention blocks and, with sliding-window layers (window: theirs),
// KvSlidingBlocksFor(context, window, block_tokens, step_tokens) sliding ones at most.
inline int64_t KvSequencesOf(KvGroupBlocks groups, int64_t window, int64_t block_tokens,
                             int64_t context, int64_t step_tokens = 0) {
  const int64_t f = std::max<int64_t>(1, (context + block_tokens - 1) / block_tokens);
  if (window <= 0) return groups.full / f;
  return std::min(groups.full / f, groups.sliding / KvSlidingBlocksFor(f * block_tokens, window,
                                                                       block_tokens, step_tokens));
}

struct KvCache {
  int64_t length = 0;    // positions appended
  int64_t capacity = 0;  // positions the sequence may reach
  int64_t row = 0;       // values per position: kv_heads * head_dim
  int64_t slot = -1;     // distributed runs: the id under which every rank keeps this cache
  int64_t block_tokens = 0;      // positions per block
  std::vector<int32_t> blocks;   // the block table, ceil(capacity / block_tokens) ids
  // The sliding-window layers' table, as long as `blocks`; entries before the window are -1
  // (released, never read), and so are those past the step's positions while a prompt is
  // prefilled in chunks (not taken yet). Empty: those layers read `blocks`.
  std::vector<int32_t> sliding_blocks;
  std::shared_ptr<void> host_blocks;  // gives `blocks` back to the pool, or null
  // Block pairs (from, to) to copy before the next step writes (copy-on-write of a shared block,
  // planned with the table); the backend does them and clears the list.
  std::vector<std::pair<int32_t, int32_t>> block_copies;
  std::vector<std::pair<int32_t, int32_t>> sliding_block_copies;  // in the sliding layers' pool
};

}  // namespace df11
