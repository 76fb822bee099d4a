// SPDX-License-Identifier: Apache-2.0
// Text forms of token ids and token bytes for tools (`df11 tokenize`): parsing an id list typed
// by a user, and showing a token's bytes readably (control and stray bytes escaped).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/status.h"

namespace df11 {

// Parses ids separated by commas and/or whitespace, optionally inside [ ]: "1, 2 3", "[1,2,3]".
// An error names the offending item and its byte offset.
StatusOr<std::vector<int32_t>> ParseTokenIds(std::string_view text);

// `bytes` with well-formed printable characters kept and everything else escaped (newline, CR,
// tab and backslash as C escapes; other control bytes and bytes that are not part of a
// well-formed character as \xNN).
std::string EscapeTokenBytes(std::string_view bytes);

}  // namespace df11
