// SPDX-License-Identifier: Apache-2.0
// StreamDecoder (declared in tokenizer.h): holds back the bytes of a character cut between
// tokens so callers never print half a character.
#include "runtime/text/tokenizer.h"
#include "runtime/text/utf8.h"

namespace df11 {

StreamDecoder::StreamDecoder(const Tokenizer* tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

StatusOr<std::string> StreamDecoder::Feed(int32_t id) {
  const std::optional<std::string_view> piece = tokenizer_->IdToBytes(id);
  if (!piece) {
    return Status::InvalidArgument("cannot decode unknown token id " + std::to_string(id) +
                                   " (vocab_size " + std::to_string(tokenizer_->vocab_size()) +
                                   ")");
  }
  if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return std::string();
  pending_.append(*piece);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const Utf8Step step = ScanUtf8(pending_, pos);
    if (step.kind == Utf8Kind::kIncomplete) break;  // wait for the next token
    if (step.kind == Utf8Kind::kValid) {
      out.append(pending_, pos, step.length);
    } else {
      out.append(kReplacementCharacter);
    }
    pos += step.length;
  }
  pending_.erase(0, pos);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out = pending_.empty() ? std::string() : std::string(kReplacementCharacter);
  pending_.clear();
  return out;
}

}  // namespace df11
