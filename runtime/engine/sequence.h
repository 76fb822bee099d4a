// SPDX-License-Identifier: Apache-2.0
// One admitted request while it runs: its cache, the tokens it feeds next (the prompt, possibly
// over several steps, then one token a step, with drafted tokens after it when speculating),
// its RNG state and its text so far. TakeToken applies the rules that end a sequence: an
// end-of-sequence id, a stop string in the text, the max new tokens. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "runtime/engine/request.h"
#include "runtime/model/forward_backend.h"
#include "runtime/model/kv_cache.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

class RunningSequence {
 public:
  // `index`: the request's place in the Generate call; `tokenizer` (may be null: ids only)
  // must outlive the sequence.
  RunningSequence(size_t index, const GenerationRequest& request, int64_t max_new_tokens,
                  KvCache cache, const Tokenizer* tokenizer);

  size_t index() const { return index_; }
  // KV tokens the sequence holds at most: prompt + max new tokens.
  int64_t kv_reservation() const { return result_.prompt_tokens + max_new_tokens_; }
  // New tokens it may still take before the length limit.
  int64_t tokens_left() const {
    return max_new_tokens_ - static_cast<int64_t>(result_.tokens.size());
  }
  // Whether its whole prompt is in the cache (from then on it feeds one token a step).
  bool decoding() const { return decoding_; }
  bool done() const { return done_; }
  // Tokens not yet fed: the rest of the prompt, or the last generated token (drafts excluded).
  int64_t unfed() const { return static_cast<int64_t>(pending_.size() - drafts_ - fed_); }
  // The next `count` (<= unfed() + drafts().size()) of them, as a step of this sequence; the
  // drafted tokens among them are marked as such.
  SequenceStep Feed(size_t count);
  // Whether feeding `count` tokens reaches the end of what is pending (the step's output is
  // then this sequence's next token; otherwise it was a prompt chunk).
  bool CompletesWith(size_t count) const { return fed_ + count >= pending_.size() - drafts_; }

  // Decoding: drafted tokens to follow the last generated one in the next step (replacing any
  // earlier drafts); TakeToken drops them.
  void SetDrafts(std::span<const int32_t> drafts);
  std::span<const int32_t> drafts() const {
    return std::span<const int32_t>(pending_).subspan(pending_.size() - drafts_);
  }
  // Whether the request lets the engine draft for it.
  bool speculative() const { return speculative_; }
  // Marks `count` prompt tokens as fed by a step that ended inside the prompt.
  void Fed(size_t count) { fed_ += count; }

  const std::vector<int32_t>& history() const { return history_; }  // prompt + generated
  uint64_t rng() const { return rng_; }
  void set_rng(uint64_t rng) { rng_ = rng; }

  // Takes the token the last step produced: end of sequence (any of `eos_ids`), a stop string
  // of `stop`, the length limit, or on. When it finishes, done() and the result's finish_reason
  // and text are final.
  void TakeToken(int32_t token, std::span<const int32_t> eos_ids,
                 std::span<const std::string> stop);

  GenerationResult& result() { return result_; }
  KvCache& cache() { return cache_; }

 private:
  void Finish(const char* reason);

  size_t index_;
  GenerationResult result_;
  KvCache cache_;
  std::vector<int32_t> history_;
  std::vector<int32_t> pending_;  // the prompt, then the last token and its drafts
  size_t drafts_ = 0;             // drafted tokens at the end of pending_
  size_t fed_ = 0;                // tokens of pending_ already in the cache
  uint64_t rng_;
  int64_t max_new_tokens_;  // max_tokens clamped to the context
  std::optional<StreamDecoder> text_;
  bool decoding_ = false;
  bool done_ = false;
  bool speculative_ = true;
};

}  // namespace df11
