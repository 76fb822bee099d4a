// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/added_tokens.h"

namespace df11 {
namespace {

bool IsAsciiSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Word characters for single_word: ASCII letters, digits and '_', and every non-ASCII byte
// (letters of other scripts).
bool IsWordByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
         u == '_';
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>* tokens,
                                     const std::vector<int32_t>& indices)
    : tokens_(tokens) {
  for (int32_t index : indices) {
    const std::string& content = (*tokens)[index].content;
    if (content.empty()) continue;
    first_bytes_.set(static_cast<uint8_t>(content[0]));
    int32_t node = 0;
    for (char c : content) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, static_cast<int32_t>(terminal_.size())).first;
        terminal_.push_back(-1);
      }
      node = it->second;
    }
    // The first token listed wins if two have the same content.
    if (terminal_[node] < 0) terminal_[node] = index;
  }
}

int32_t AddedTokenMatcher::Child(int32_t node, uint8_t byte) const {
  const auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == edges_.end() ? -1 : it->second;
}

int32_t AddedTokenMatcher::LongestAt(std::string_view text, size_t pos, size_t* end) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = Child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    if (terminal_[node] >= 0) {
      best = terminal_[node];
      *end = i + 1;
    }
  }
  return best;
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Segment> segments;
  size_t span_begin = 0;  // start of the ordinary text not yet emitted
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = 0;
    const int32_t token =
        first_bytes_.test(static_cast<uint8_t>(text[pos])) ? LongestAt(text, pos, &end) : -1;
    if (token < 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = (*tokens_)[token];
    if (t.single_word &&
        ((pos > 0 && IsWordByte(text[pos - 1])) || (end < text.size() && IsWordByte(text[end])))) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    if (t.lstrip) {
      while (begin > span_begin && IsAsciiSpace(text[begin - 1])) --begin;
    }
    if (t.rstrip) {
      while (end < text.size() && IsAsciiSpace(text[end])) ++end;
    }
    if (begin > span_begin) segments.push_back({span_begin, begin, -1});
    segments.push_back({begin, end, token});
    span_begin = pos = end;
  }
  if (span_begin < text.size()) segments.push_back({span_begin, text.size(), -1});
  return segments;
}

}  // namespace df11
