// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/draft_model.h"

#include <algorithm>

#include "runtime/model/shard_weights.h"

namespace df11 {

StatusOr<std::unique_ptr<DraftModelDrafter>> DraftModelDrafter::Load(
    const std::string& dir, int64_t target_vocab, const CpuBackendOptions& options) {
  const std::string what = "--speculative draft:" + dir;
  if (IsShardedModelDir(dir)) {
    return Status::InvalidArgument(what + ": a sharded model directory; the draft model runs "
                                          "whole on the leader: give its BF16 or DF11 directory");
  }
  StatusOr<ModelWeights> w = LoadModelWeights(dir);
  if (!w.ok()) return w.status().WithContext(what);
  if (w->config.vocab_size != target_vocab) {
    return Status::InvalidArgument(
        what + ": config.json has vocab_size " + std::to_string(w->config.vocab_size) +
        ", the target model " + std::to_string(target_vocab) +
        ": a draft model must share the target's tokenizer");
  }
  auto weights = std::make_unique<ModelWeights>(std::move(w).value());
  return std::unique_ptr<DraftModelDrafter>(new DraftModelDrafter(std::move(weights), options));
}

DraftModelDrafter::DraftModelDrafter(std::unique_ptr<ModelWeights> weights,
                                     const CpuBackendOptions& options)
    : weights_(std::move(weights)),
      backend_(std::make_unique<CpuBackend>(weights_.get(), options)) {}

Status DraftModelDrafter::Draft(std::span<const DraftRequest> requests,
                                std::vector<std::vector<int32_t>>* drafts) {
  drafts->assign(requests.size(), {});
  const int64_t context = weights_->config.max_position_embeddings;
  // Round 0 feeds each sequence's tokens its draft cache lacks (at least its last token, whose
  // logits give the first draft); each later round feeds the draft the round before made.
  std::vector<size_t> active;
  std::vector<std::vector<int32_t>> feed(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const DraftRequest& r = requests[i];
    const int64_t h = static_cast<int64_t>(r.history.size());
    const int64_t capacity = std::min(r.capacity, context);
    if (r.max_tokens < 1 || h < 1 || h + r.max_tokens - 1 > capacity) continue;
    auto it = states_.find(r.id);
    if (it == states_.end()) {
      it = states_.emplace(r.id, State{backend_->NewCache(capacity), {}}).first;
    }
    State& s = it->second;
    // Positions whose tokens still match the history stay; the last token is always fed.
    const auto mismatch = std::mismatch(s.tokens.begin(), s.tokens.end(), r.history.begin(),
                                        r.history.end());
    const size_t keep = std::min(static_cast<size_t>(mismatch.first - s.tokens.begin()),
                                 r.history.size() - 1);
    s.tokens.resize(keep);
    s.cache.length = static_cast<int64_t>(keep);
    feed[i].assign(r.history.begin() + static_cast<std::ptrdiff_t>(keep), r.history.end());
    active.push_back(i);
  }
  std::vector<int32_t> ids;
  while (!active.empty()) {
    std::vector<SequenceStep> steps;
    for (size_t i : active) steps.push_back({&states_[requests[i].id].cache, feed[i]});
    DF11_RETURN_IF_ERROR(backend_->ForwardArgmax(steps, &ids));
    std::vector<size_t> next;
    for (size_t a = 0; a < active.size(); ++a) {
      const size_t i = active[a];
      State& s = states_[requests[i].id];
      s.tokens.insert(s.tokens.end(), feed[i].begin(), feed[i].end());
      (*drafts)[i].push_back(ids[a]);
      feed[i].assign(1, ids[a]);
      if (static_cast<int64_t>((*drafts)[i].size()) < requests[i].max_tokens) next.push_back(i);
    }
    active.swap(next);
  }
  return Status::Ok();
}

}  // namespace df11
