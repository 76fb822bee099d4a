// SPDX-License-Identifier: Apache-2.0
// UTF-8 scanning by the well-formed byte ranges of Unicode Table 3-7: validation with the offset
// of the first bad byte, lossy repair (one U+FFFD per maximal ill-formed subpart, as Rust's
// from_utf8_lossy and the WHATWG decoder do) and detection of a sequence cut off at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace df11 {

enum class Utf8Kind {
  kValid,       // `length` bytes form one well-formed character
  kInvalid,     // `length` bytes form a maximal ill-formed subpart (replace with one U+FFFD)
  kIncomplete,  // the text ends inside a character whose first `length` bytes are well formed
};

struct Utf8Step {
  Utf8Kind kind;
  size_t length;  // >= 1
};

// Classifies the bytes starting at `pos` (< text.size()).
Utf8Step ScanUtf8(std::string_view text, size_t pos);

// Byte offset of the first byte that is not part of a well-formed character (a character cut
// off at the end counts), or std::string_view::npos when `text` is valid UTF-8.
size_t FindInvalidUtf8(std::string_view text);

// `text` with every ill-formed part (including one cut off at the end) replaced by U+FFFD.
std::string RepairUtf8(std::string_view text);

// Appends the UTF-8 encoding of `codepoint` (<= 0x10FFFF) to `out`.
void AppendUtf8(uint32_t codepoint, std::string* out);

extern const char kReplacementCharacter[];  // U+FFFD in UTF-8

}  // namespace df11
