// SPDX-License-Identifier: Apache-2.0
// Speculative decoding's two halves that need no model: drafting by prompt lookup (the tokens
// that followed the most recent earlier occurrence of the sequence's tail) and the acceptance of
// drafted tokens against the target model's logits of the positions that fed them. Drafts here
// are deterministic (a point mass), so the standard rejection rule — accept draft d with
// probability p(d), else draw from p with d removed and renormalised — is carried out as a
// coupling: draw x from p with the request's next random number, accept d when x == d, else
// take x. That leaves the target's distribution unchanged and consumes exactly the draws that
// decoding without drafts would, so a seed gives the same text with or without speculation.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/sampling/sampling.h"
#include "runtime/core/status.h"

namespace df11 {

// How the engine drafts tokens (df11-run --speculative and the flags beside it).
struct SpeculativeOptions {
  enum class Method { kNone, kPromptLookup, kDraftModel };
  Method method = Method::kNone;
  int64_t num_tokens = 4;  // drafted tokens per sequence and step, k (df11-run: 1..64)
  int64_t ngram = 3;       // prompt lookup: the longest tail matched, in tokens (1..64)
  std::string draft_model;  // kDraftModel: the draft model's directory (BF16 or DF11)
};

// One sequence's request for drafts.
struct DraftRequest {
  int64_t id = 0;                     // the sequence, stable until Drafter::Release
  std::span<const int32_t> history;   // prompt + generated tokens, the last one included
  int64_t max_tokens = 0;             // most drafts wanted (>= 1)
  int64_t capacity = 0;               // most positions the sequence reaches (its KV reservation)
};

// Where drafts come from: prompt lookup, or a draft model that keeps a cache per sequence.
class Drafter {
 public:
  virtual ~Drafter() = default;
  // (*drafts)[i]: up to requests[i].max_tokens tokens likely to follow requests[i].history
  // (possibly none). Errors: a draft model's (a corrupt DF11 stream).
  virtual Status Draft(std::span<const DraftRequest> requests,
                       std::vector<std::vector<int32_t>>* drafts) = 0;
  // Sequence `id` has ended (finished, preempted or failed): what the drafter keeps for it goes.
  virtual void Release(int64_t id) { (void)id; }
};

// Drafter by PromptLookupDrafts.
class PromptLookupDrafter : public Drafter {
 public:
  explicit PromptLookupDrafter(int64_t ngram) : ngram_(ngram) {}
  Status Draft(std::span<const DraftRequest> requests,
               std::vector<std::vector<int32_t>>* drafts) override;

 private:
  int64_t ngram_;
};

// Prompt lookup: for n from `ngram` down to 1, the last n tokens of `history` (prompt +
// generated) are searched for earlier in `history`, the most recent occurrence first; the
// `max_tokens` tokens that followed the first occurrence found are the drafts (where they run
// past the end of `history` the copy goes on from the drafts, so a repeating pattern goes on
// repeating). Empty when no tail of any length recurs (or max_tokens < 1): a step then runs as
// without speculation.
std::vector<int32_t> PromptLookupDrafts(std::span<const int32_t> history, int64_t ngram,
                                        int64_t max_tokens);

// Verifies `drafts` against `logits` ((drafts.size() + 1, vocab): row j is the target's logits at
// the position that fed drafts[j - 1], row 0 the one that fed the last accepted token) with the
// request's sampling `params`, whose history before the step is `history` (row j's history
// adds drafts[0, j)). Appends to *tokens the target's token of each row up to and including the
// first that differs from its draft (all drafts accepted: drafts.size() + 1 tokens). Sampling
// draws one SampleUniform of *rng per row used (none when greedy), as SampleRef does.
void VerifyDrafts(const float* logits, int64_t vocab, const SamplingParams& params,
                  std::span<const int32_t> history, std::span<const int32_t> drafts,
                  uint64_t* rng, std::vector<int32_t>* tokens);

// The greedy case over the target's per-row argmax `targets` (drafts.size() + 1 of them, e.g.
// found vocab-parallel): appends the rows' targets up to and including the first that differs
// from its draft.
void AcceptGreedyDrafts(std::span<const int32_t> targets, std::span<const int32_t> drafts,
                        std::vector<int32_t>* tokens);

}  // namespace df11
