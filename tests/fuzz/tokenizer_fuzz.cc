// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for a model's tokenizer.json (its regexes, merges, added tokens and
// normalizers come from wherever the model came from) and for the text a request brings. The
// input is the JSON, a NUL byte, then the text; without a NUL, the whole input is text for a
// small fixed tokenizer. Any input must give a Status or a tokenizer whose ids for the text
// decode again, and whose Decode of any ids is a Status or a string.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/common/check.h"
#include "runtime/text/tokenizer.h"

namespace {

// Byte-level BPE over a few merges, GPT-2 style pre-tokenizer, one special token.
constexpr std::string_view kSmallTokenizer = R"({
  "added_tokens": [{"id": 6, "content": "<|end|>", "special": true, "normalized": false,
                    "lstrip": false, "rstrip": false, "single_word": false}],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                    "use_regex": true},
  "post_processor": null,
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4, "c": 5},
            "merges": ["a b", "Ġ a"]}
})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const bool split = nul != std::string_view::npos;
  const std::string_view json = split ? input.substr(0, nul) : kSmallTokenizer;
  const std::string_view text = split ? input.substr(nul + 1) : input;
  df11::StatusOr<df11::Tokenizer> tok = df11::Tokenizer::FromJsonString(json, "tokenizer.json");
  if (!tok.ok()) return 0;
  df11::StatusOr<std::vector<int32_t>> ids = tok->Encode(text, /*add_special_tokens=*/true);
  if (ids.ok()) {
    for (int32_t id : *ids) DF11_CHECK(id >= 0 && id < tok->vocab_size());
    DF11_CHECK(tok->Decode(*ids, /*skip_special_tokens=*/false).ok());
  }
  // The text's bytes as ids, most of them unknown: a Status or a string, never a crash.
  std::vector<int32_t> raw(text.size() / 4);
  if (!raw.empty()) std::memcpy(raw.data(), text.data(), raw.size() * 4);
  (void)tok->Decode(raw, /*skip_special_tokens=*/true);
  return 0;
}
