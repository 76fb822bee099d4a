// SPDX-License-Identifier: Apache-2.0
// Added tokens (tokenizer.json "added_tokens"): strings matched in the text before the model sees
// it, leftmost first and longest at a position first, with the single_word, lstrip and rstrip
// flags. A byte trie holds the contents; matching is O(text * longest token) at worst and skips
// positions whose byte starts no token.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace df11 {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;      // skipped by Decode(skip_special_tokens = true)
  bool single_word = false;  // matches only when not inside a word
  bool lstrip = false;       // the match also takes the whitespace before it
  bool rstrip = false;       // the match also takes the whitespace after it
  bool normalized = false;   // matched in the normalized text instead of the raw text
};

class AddedTokenMatcher {
 public:
  // A piece of text: an added token (token >= 0, an index into the constructor's list) or a span
  // of ordinary text (token = -1).
  struct Segment {
    size_t begin, end;  // byte offsets into the text
    int32_t token;
  };

  AddedTokenMatcher() = default;
  // Keeps a pointer to `tokens`, which must outlive the matcher.
  explicit AddedTokenMatcher(const std::vector<AddedToken>* tokens,
                             const std::vector<int32_t>& indices);

  bool empty() const { return terminal_.size() <= 1; }
  // Splits valid UTF-8 `text` into segments covering it in order (empty spans are dropped).
  std::vector<Segment> Split(std::string_view text) const;

 private:
  int32_t Child(int32_t node, uint8_t byte) const;
  // The index of the longest token matching at `pos`, and its end; -1 if none.
  int32_t LongestAt(std::string_view text, size_t pos, size_t* end) const;

  const std::vector<AddedToken>* tokens_ = nullptr;
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child node
  std::vector<int32_t> terminal_{-1};            // per node: token index ending there, or -1
  std::bitset<256> first_bytes_;
};

}  // namespace df11
