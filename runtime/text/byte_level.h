// SPDX-License-Identifier: Apache-2.0
// The GPT-2 byte <-> unicode map used by byte-level BPE: every byte gets a printable character
// (bytes 33..126, 161..172, 174..255 stand for themselves; the others map to U+0100 onwards), so
// any byte string becomes a string of vocabulary characters and back.
#pragma once

#include <string>
#include <string_view>

namespace df11 {

// Appends the byte-level characters (UTF-8) of every byte of `bytes` to `out`.
void AppendByteLevel(std::string_view bytes, std::string* out);

// Maps a string of byte-level characters back to bytes. A character outside the map is copied
// as its own UTF-8 bytes (what the Hugging Face ByteLevel decoder does).
std::string ByteLevelToBytes(std::string_view chars);

}  // namespace df11
