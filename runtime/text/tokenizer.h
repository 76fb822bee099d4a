// SPDX-License-Identifier: Apache-2.0
// A Hugging Face tokenizer read from tokenizer.json: added tokens -> normalizer -> pre-tokenizer
// -> BPE model on encode, and the decoder on decode. Supports the byte-level BPE of Llama 3.x and
// Qwen 2.5/3 and the SentencePiece-style BPE with byte fallback of Gemma 3 (see the checks in
// FromFile for what is rejected). Immutable after loading; Encode/Decode are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/text/added_tokens.h"
#include "runtime/text/bpe.h"
#include "runtime/text/normalizer.h"
#include "runtime/text/pre_tokenizer.h"

namespace df11 {

class Tokenizer {
 public:
  // Reads tokenizer.json. BOS comes from the post-processor template when it adds one.
  static StatusOr<Tokenizer> FromFile(const std::string& path);
  // Reads `dir`/tokenizer.json and `dir`/tokenizer_config.json (bos_token, eos_token,
  // add_bos_token, add_eos_token; each optional).
  static StatusOr<Tokenizer> FromDirectory(const std::string& dir);
  // Parses the contents of a tokenizer.json; `source` names it in error messages. Errors are
  // InvalidArgument naming the file and, where it is one of this code's checks, the field (token
  // ids must be integers in [0, kMaxTokenIds)); Unimplemented for features not supported.
  static StatusOr<Tokenizer> FromJsonString(std::string_view json, const std::string& source);

  // InvalidArgument naming the file and field of the largest token id when it is not below
  // `model_vocab_size`, the vocabulary of the model it serves (`model` names it in the message):
  // such a token could not be embedded.
  Status CheckFitsVocabulary(int64_t model_vocab_size, const std::string& model) const;

  // Token ids of `text` (UTF-8; an error names the offset of the first invalid byte). Added-token
  // strings in the text, special ones included, become their ids. With `add_special_tokens`, BOS
  // and/or EOS are added as the model's template says.
  StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;
  // The text of `ids`; invalid UTF-8 in the decoded bytes becomes U+FFFD. No clean-up of spaces.
  StatusOr<std::string> Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The vocabulary string of `id` (byte-level characters for byte-level models).
  std::optional<std::string> IdToToken(int32_t id) const;
  // The raw bytes `id` decodes to (maybe a fragment of a UTF-8 character); nullopt if unknown.
  std::optional<std::string_view> IdToBytes(int32_t id) const;
  bool IsSpecial(int32_t id) const;

  // One past the largest id (vocabulary and added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }

 private:
  Tokenizer() = default;
  static StatusOr<Tokenizer> FromParsedJson(const nlohmann::json& root);
  Status ApplyConfig(const std::string& config_path);
  void EncodeOrdinary(std::string_view text, std::vector<int32_t>* ids) const;

  std::unique_ptr<std::vector<AddedToken>> added_tokens_;  // stable address for the matchers
  TokenIdMap added_token_ids_;                             // content -> id
  AddedTokenMatcher raw_matcher_;                          // added tokens with normalized = false
  AddedTokenMatcher normalized_matcher_;                   // added tokens with normalized = true
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  std::optional<BpeModel> model_;
  std::vector<std::string> id_to_token_;  // "" for ids that are not assigned
  std::vector<std::string> id_to_bytes_;  // decoder output per id
  std::vector<uint8_t> id_flags_;         // kAssigned | kSpecial per id
  std::optional<int32_t> bos_id_, eos_id_;
  bool add_bos_ = false, add_eos_ = false;
  std::string source_;  // the tokenizer.json it was read from, for messages
};

// The special token `key` ("bos_token") of a parsed tokenizer_config.json: "tok",
// {"content": "tok", ...}, null or absent (nullopt). InvalidArgument naming `source` and the key
// for any other value.
StatusOr<std::optional<std::string>> ConfigTokenString(const nlohmann::json& config,
                                                       const char* key, const std::string& source);

// Turns ids fed one at a time into text, emitting only complete UTF-8 characters: bytes of a
// character split across tokens are held back until it completes; bytes that can never form one
// become U+FFFD. Not thread-safe; one per sequence. The tokenizer must outlive it.
class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer* tokenizer, bool skip_special_tokens);

  // The text that `id` completes (often "", or more than one character); error on unknown id.
  StatusOr<std::string> Feed(int32_t id);
  // Whatever is held back, as U+FFFD; call once at the end of the sequence.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes of an incomplete character
};

}  // namespace df11
