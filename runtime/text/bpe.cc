// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/bpe.h"

#include <cstdio>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <shared_mutex>

#include "runtime/text/utf8.h"

namespace df11 {

// Word -> ids for words up to kMaxCachedWordBytes; cleared when it holds kMaxCachedWords.
struct BpeModel::Cache {
  static constexpr size_t kMaxCachedWordBytes = 64;
  static constexpr size_t kMaxCachedWords = 1 << 18;
  std::shared_mutex mutex;
  std::unordered_map<std::string, std::vector<int32_t>, StringViewHash, std::equal_to<>> words;
};

StatusOr<int32_t> ParseTokenId(const nlohmann::json& value, const std::string& field) {
  const bool in_range = value.is_number_integer() &&
                        (value.is_number_unsigned() ? value.get<uint64_t>() < kMaxTokenIds
                                                    : value.get<int64_t>() >= 0 &&
                                                          value.get<int64_t>() < kMaxTokenIds);
  if (!in_range) {
    return Status::InvalidArgument(field + " = " + value.dump() +
                                   ": a token id must be an integer in [0, " +
                                   std::to_string(kMaxTokenIds) + ")");
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

StatusOr<BpeModel> BpeModel::FromJson(const nlohmann::json& config) {
  const std::string type = config.value("type", "BPE");
  if (type != "BPE") {
    return Status::Unimplemented("tokenizer model type \"" + type +
                                 "\" is not supported (supported: BPE)");
  }
  if (!config.value("dropout", nlohmann::json()).is_null()) {
    return Status::Unimplemented("BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const nlohmann::json value = config.value(key, nlohmann::json());
    if (!value.is_null() && !value.get<std::string>().empty()) {
      return Status::Unimplemented(std::string("BPE ") + key + " is not supported");
    }
  }
  BpeModel model;
  model.ignore_merges_ = config.value("ignore_merges", false);
  model.byte_fallback_ = config.value("byte_fallback", false);
  model.fuse_unk_ = config.value("fuse_unk", false);
  const nlohmann::json& vocab = config.at("vocab");
  if (!vocab.is_object()) {
    return Status::InvalidArgument("model.vocab must be an object {token: id}; got " +
                                   std::string(vocab.type_name()));
  }
  for (const auto& [token, id] : vocab.items()) {
    DF11_ASSIGN_OR_RETURN(int32_t parsed, ParseTokenId(id, "model.vocab[" +
                                                               nlohmann::json(token).dump() + "]"));
    model.vocab_.emplace(token, parsed);
  }
  const nlohmann::json unk = config.value("unk_token", nlohmann::json());
  if (!unk.is_null()) {
    model.unk_id_ = model.TokenToId(unk.get<std::string>());
    if (!model.unk_id_) {
      return Status::Corruption("BPE unk_token \"" + unk.get<std::string>() +
                                "\" is not in the vocabulary");
    }
  }
  model.byte_ids_.fill(-1);
  if (model.byte_fallback_) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      model.byte_ids_[b] = model.TokenToId(name).value_or(-1);
    }
  }

  const nlohmann::json& merges = config.at("merges");
  model.merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const nlohmann::json& m = merges[rank];
    std::string left, right;
    if (m.is_string()) {
      const std::string& line = m.get_ref<const std::string&>();
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        return Status::Corruption("BPE merge " + std::to_string(rank) + " \"" + line +
                                  "\": expected two tokens separated by one space");
      }
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else if (m.is_array() && m.size() == 2) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return Status::Corruption("BPE merge " + std::to_string(rank) +
                                ": expected \"a b\" or [\"a\", \"b\"]");
    }
    const auto left_id = model.TokenToId(left), right_id = model.TokenToId(right);
    const auto merged_id = model.TokenToId(left + right);
    if (!left_id || !right_id || !merged_id) {
      return Status::Corruption("BPE merge " + std::to_string(rank) + " (\"" + left + "\", \"" +
                                right + "\"): a part or the merged token is not in the vocabulary");
    }
    // The first (lowest-ranked) occurrence of a pair wins.
    model.merges_.emplace(PairKey(*left_id, *right_id),
                          Merge{static_cast<int32_t>(rank), *merged_id});
  }
  model.cache_ = std::make_shared<Cache>();
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto id = TokenToId(word)) {
      out->push_back(*id);
      return;
    }
  }
  if (word.size() > Cache::kMaxCachedWordBytes) {
    TokenizeUncached(word, out);
    return;
  }
  {
    std::shared_lock lock(cache_->mutex);
    const auto it = cache_->words.find(word);
    if (it != cache_->words.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  TokenizeUncached(word, &ids);
  out->insert(out->end(), ids.begin(), ids.end());
  std::unique_lock lock(cache_->mutex);
  if (cache_->words.size() >= Cache::kMaxCachedWords) cache_->words.clear();
  cache_->words.emplace(std::string(word), std::move(ids));
}

void BpeModel::TokenizeUncached(std::string_view word, std::vector<int32_t>* out) const {
  // Symbols form a doubly linked list over the word; a merge folds `next` into its left side.
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // indices, -1 at the ends
    bool unk;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto push = [&](int32_t id, bool unk) {
    if (unk && fuse_unk_ && !symbols.empty() && symbols.back().unk) return;
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, unk});
    if (index > 0) symbols[index - 1].next = index;
  };
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t len = ScanUtf8(word, pos).length;
    const std::string_view ch = word.substr(pos, len);
    pos += len;
    if (const auto id = TokenToId(ch)) {
      push(*id, false);
      continue;
    }
    bool all_bytes = byte_fallback_;
    for (char c : ch) all_bytes = all_bytes && byte_ids_[static_cast<uint8_t>(c)] >= 0;
    if (all_bytes) {
      for (char c : ch) push(byte_ids_[static_cast<uint8_t>(c)], false);
    } else if (unk_id_) {
      push(*unk_id_, true);
    }
    // Without unk_token or byte fallback the character is dropped, as in Hugging Face tokenizers.
  }

  // Min-heap of candidate merges ordered by (rank, left index).
  struct Candidate {
    int32_t rank, left, left_id, right_id, merged_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, symbols[left].id, symbols[right].id, it->second.merged_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    // Skip candidates made stale by an earlier merge (removed symbol or changed pair).
    if (left.id != c.left_id || left.next < 0 || symbols[left.next].id != c.right_id) continue;
    const int32_t right_index = left.next;
    Symbol& right = symbols[right_index];
    left.id = c.merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = -1;  // removed
    consider(left.prev);
    consider(c.left);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    out->push_back(symbols[i].id);
  }
}

}  // namespace df11
