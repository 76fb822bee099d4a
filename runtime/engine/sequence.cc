// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/sequence.h"

#include <algorithm>

namespace df11 {

RunningSequence::RunningSequence(size_t index, const GenerationRequest& request,
                                 int64_t max_new_tokens, KvCache cache, const Tokenizer* tokenizer)
    : index_(index),
      cache_(std::move(cache)),
      history_(request.prompt),
      pending_(request.prompt),
      rng_(request.seed),
      max_new_tokens_(max_new_tokens),
      speculative_(request.speculative) {
  result_.id = request.id;
  result_.prompt_tokens = static_cast<int64_t>(request.prompt.size());
  if (tokenizer != nullptr) text_.emplace(tokenizer, true);
}

SequenceStep RunningSequence::Feed(size_t count) {
  const size_t own = pending_.size() - drafts_ - fed_;
  return {&cache_, std::span<const int32_t>(pending_).subspan(fed_, count),
          count > own ? static_cast<int64_t>(count - own) : 0};
}

void RunningSequence::SetDrafts(std::span<const int32_t> drafts) {
  if (!decoding_ || done_) return;
  pending_.resize(pending_.size() - drafts_);
  pending_.insert(pending_.end(), drafts.begin(), drafts.end());
  drafts_ = drafts.size();
}

void RunningSequence::Finish(const char* reason) {
  result_.finish_reason = reason;
  done_ = true;
}

void RunningSequence::TakeToken(int32_t token, std::span<const int32_t> eos_ids,
                                std::span<const std::string> stop) {
  pending_.assign(1, token);
  drafts_ = 0;
  fed_ = 0;
  decoding_ = true;
  history_.push_back(token);
  std::string& text = result_.text;
  if (std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end()) {
    // Bytes held back for a character the sequence never completed end the text as U+FFFD,
    // as they do at the length limit: the text is the decoding of the tokens either way.
    if (text_) text += text_->Flush();
    Finish("stop");
    return;
  }
  result_.tokens.push_back(token);
  if (text_) {
    auto piece = text_->Feed(token);
    if (piece.ok()) text += *piece;
    // Stop strings: cut the text at the earliest one.
    size_t cut = std::string::npos;
    for (const std::string& s : stop) {
      if (!s.empty()) cut = std::min(cut, text.find(s));
    }
    if (cut != std::string::npos) {
      text.resize(cut);
      Finish("stop");
      return;
    }
  }
  if (static_cast<int64_t>(result_.tokens.size()) >= max_new_tokens_) {
    if (text_) text += text_->Flush();
    Finish("length");
  }
}

}  // namespace df11
