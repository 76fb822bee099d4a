// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/token_format.h"

#include <charconv>
#include <cstdio>

#include "runtime/text/utf8.h"

namespace df11 {

StatusOr<std::vector<int32_t>> ParseTokenIds(std::string_view text) {
  auto is_separator = [](char c) {
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
  };
  size_t begin = 0, end = text.size();
  while (begin < end && is_separator(text[begin])) ++begin;
  while (end > begin && is_separator(text[end - 1])) --end;
  if (begin < end && text[begin] == '[' && text[end - 1] == ']') {
    ++begin;
    --end;
  }
  std::vector<int32_t> ids;
  size_t pos = begin;
  while (pos < end) {
    if (is_separator(text[pos])) {
      ++pos;
      continue;
    }
    size_t item_end = pos;
    while (item_end < end && !is_separator(text[item_end])) ++item_end;
    const std::string_view item = text.substr(pos, item_end - pos);
    int32_t id = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
    if (ec != std::errc() || ptr != item.data() + item.size() || id < 0) {
      return Status::InvalidArgument("token id list: \"" + std::string(item) + "\" at offset " +
                                     std::to_string(pos) + " is not a non-negative 32-bit integer");
    }
    ids.push_back(id);
    pos = item_end;
  }
  return ids;
}

std::string EscapeTokenBytes(std::string_view bytes) {
  std::string out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Utf8Step step = ScanUtf8(bytes, pos);
    const auto b = static_cast<uint8_t>(bytes[pos]);
    if (step.kind == Utf8Kind::kValid && step.length > 1) {
      out.append(bytes.substr(pos, step.length));
      pos += step.length;
      continue;
    }
    if (b == '\n') {
      out += "\\n";
    } else if (b == '\r') {
      out += "\\r";
    } else if (b == '\t') {
      out += "\\t";
    } else if (b == '\\') {
      out += "\\\\";
    } else if (b >= 0x20 && b < 0x7F) {
      out.push_back(static_cast<char>(b));
    } else {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02X", b);
      out += hex;
    }
    ++pos;
  }
  return out;
}

}  // namespace df11
