// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/byte_level.h"

#include <array>
#include <cstdint>

#include "runtime/text/utf8.h"

namespace df11 {
namespace {

constexpr uint32_t kNoByte = 0xFFFF;

struct ByteLevelTables {
  std::array<std::string, 256> byte_to_chars;   // UTF-8 of the character standing for each byte
  std::array<uint32_t, 512> codepoint_to_byte;  // kNoByte where the codepoint is not in the map

  ByteLevelTables() {
    codepoint_to_byte.fill(kNoByte);
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      const uint32_t cp = printable ? b : next_extra++;
      AppendUtf8(cp, &byte_to_chars[b]);
      codepoint_to_byte[cp] = b;
    }
  }
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables tables;
  return tables;
}

}  // namespace

void AppendByteLevel(std::string_view bytes, std::string* out) {
  const ByteLevelTables& t = Tables();
  for (char c : bytes) out->append(t.byte_to_chars[static_cast<uint8_t>(c)]);
}

std::string ByteLevelToBytes(std::string_view chars) {
  const ByteLevelTables& t = Tables();
  std::string out;
  out.reserve(chars.size());
  size_t pos = 0;
  while (pos < chars.size()) {
    const Utf8Step step = ScanUtf8(chars, pos);
    uint32_t cp = kNoByte;
    if (step.kind == Utf8Kind::kValid && step.length <= 2) {
      const auto b0 = static_cast<uint8_t>(chars[pos]);
      cp = step.length == 1 ? b0
                            : ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(chars[pos + 1]) & 0x3Fu);
    }
    if (cp < t.codepoint_to_byte.size() && t.codepoint_to_byte[cp] != kNoByte) {
      out.push_back(static_cast<char>(t.codepoint_to_byte[cp]));
    } else {
      out.append(chars.substr(pos, step.length));
    }
    pos += step.length;
  }
  return out;
}

}  // namespace df11
