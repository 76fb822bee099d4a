// SPDX-License-Identifier: Apache-2.0
// JSON-lines conversion between text and token ids (the logic of `df11 tokenize` and
// `df11 detokenize`). One output line per non-blank input line, in order; a bad line yields
// {"error": "line N: ..."} (N counts every input line from 1) and the rest go on.
#pragma once

#include <istream>
#include <ostream>

#include "runtime/core/status.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

// {"text": "..."} -> {"ids": [...]}. Encodes without special tokens; with `bos`, prepends the
// tokenizer's BOS id when it has one. Errors for a line that is not JSON, lacks a string "text",
// or holds text that is not valid UTF-8. Returns IoError only if reading or writing fails.
Status TokenizeJsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out, bool bos);

// {"ids": [...]} -> {"text": "..."}, decoded with special tokens kept (lossless for ids that
// came from TokenizeJsonl). Errors for a line that is not JSON, lacks an integer array "ids",
// or holds an id the tokenizer does not know. Returns IoError only if reading or writing fails.
Status DetokenizeJsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out);

}  // namespace df11
