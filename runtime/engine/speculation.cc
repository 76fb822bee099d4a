// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/speculation.h"

#include <algorithm>

#include "kernels/common/check.h"

namespace df11 {

std::vector<int32_t> PromptLookupDrafts(std::span<const int32_t> history, int64_t ngram,
                                        int64_t max_tokens) {
  const int64_t h = static_cast<int64_t>(history.size());
  if (max_tokens < 1) return {};
  for (int64_t n = std::min(ngram, h - 1); n >= 1; --n) {
    const std::span<const int32_t> tail = history.subspan(static_cast<size_t>(h - n));
    // Occurrences starting at i < h - n (the tail itself excluded), the most recent first.
    for (int64_t i = h - n - 1; i >= 0; --i) {
      if (!std::equal(tail.begin(), tail.end(), history.begin() + i)) continue;
      // What followed, copied on into the drafts themselves where it runs into the tail (a
      // repeating pattern of period h - from goes on repeating).
      std::vector<int32_t> drafts;
      for (int64_t j = 0, from = i + n; j < max_tokens; ++j) {
        drafts.push_back(from + j < h ? history[static_cast<size_t>(from + j)]
                                      : drafts[static_cast<size_t>(from + j - h)]);
      }
      return drafts;
    }
  }
  return {};
}

Status PromptLookupDrafter::Draft(std::span<const DraftRequest> requests,
                                  std::vector<std::vector<int32_t>>* drafts) {
  drafts->clear();
  for (const DraftRequest& r : requests) {
    drafts->push_back(PromptLookupDrafts(r.history, ngram_, r.max_tokens));
  }
  return Status::Ok();
}

void VerifyDrafts(const float* logits, int64_t vocab, const SamplingParams& params,
                  std::span<const int32_t> history, std::span<const int32_t> drafts,
                  uint64_t* rng, std::vector<int32_t>* tokens) {
  std::vector<int32_t> seen(history.begin(), history.end());
  seen.insert(seen.end(), drafts.begin(), drafts.end());
  for (size_t j = 0; j <= drafts.size(); ++j) {
    const int32_t t =
        SampleRef(logits + static_cast<int64_t>(j) * vocab, vocab, params, seen.data(),
                  static_cast<int64_t>(history.size() + j), rng);
    tokens->push_back(t);
    if (j == drafts.size() || t != drafts[j]) return;
  }
}

void AcceptGreedyDrafts(std::span<const int32_t> targets, std::span<const int32_t> drafts,
                        std::vector<int32_t>* tokens) {
  DF11_CHECK(targets.size() == drafts.size() + 1);
  for (size_t j = 0; j < targets.size(); ++j) {
    tokens->push_back(targets[j]);
    if (j == drafts.size() || targets[j] != drafts[j]) return;
  }
}

}  // namespace df11
