// SPDX-License-Identifier: Apache-2.0
// The tokenizer.json "model" of type BPE: vocabulary, ranked merges ("a b" strings or [a, b]
// arrays), ignore_merges, byte_fallback (<0xXX> tokens), unk_token with fuse_unk. A word is split
// into characters and the lowest-ranked adjacent pair is merged until none applies (a min-heap
// over pair ranks: O(n log n) per word). Results of short words are cached; Tokenize is const and
// thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/core/status.h"

namespace df11 {

// Hash for heterogeneous lookup of std::string keys by std::string_view.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIdMap = std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>;

// Token ids of a tokenizer.json must lie in [0, kMaxTokenIds): the id tables are dense, and the
// largest published vocabularies (Gemma 3: 262,144) are far below this.
inline constexpr int64_t kMaxTokenIds = int64_t{1} << 22;
// The id of `value` (a field named `field` in messages), or InvalidArgument when it is not an
// integer in [0, kMaxTokenIds).
StatusOr<int32_t> ParseTokenId(const nlohmann::json& value, const std::string& field);

class BpeModel {
 public:
  // `config` is the "model" value of tokenizer.json. InvalidArgument naming the field for a token
  // id that is not an integer in [0, kMaxTokenIds).
  static StatusOr<BpeModel> FromJson(const nlohmann::json& config);

  // Appends the ids of `word` (valid UTF-8, as produced by the pre-tokenizer) to `out`.
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  const TokenIdMap& vocab() const { return vocab_; }
  bool byte_fallback() const { return byte_fallback_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  struct Cache;

  void TokenizeUncached(std::string_view word, std::vector<int32_t>* out) const;
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  TokenIdMap vocab_;
  std::unordered_map<uint64_t, Merge> merges_;  // PairKey(left id, right id) -> merge
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<int32_t> unk_id_;
  std::array<int32_t, 256> byte_ids_{};  // id of "<0xXX>" per byte, -1 where absent
  std::shared_ptr<Cache> cache_;
};

}  // namespace df11
