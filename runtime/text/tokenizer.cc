// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "runtime/core/file_util.h"
#include "runtime/text/byte_level.h"
#include "runtime/text/utf8.h"

namespace df11 {
namespace {

constexpr uint8_t kAssigned = 1;
constexpr uint8_t kSpecial = 2;

// How decoding turns one token string into bytes.
struct DecoderSpec {
  bool byte_level = false;  // GPT-2 byte map; added tokens stay verbatim
  struct Replace {
    std::string from, to;
  };
  std::vector<Replace> replaces;  // applied in order, before byte fallback
  bool byte_fallback = false;     // "<0xXX>" -> that byte
};

Status ParseDecoder(const nlohmann::json& config, DecoderSpec* spec) {
  if (config.is_null()) return Status::Ok();
  const std::string type = config.value("type", "");
  if (type == "Sequence") {
    for (const nlohmann::json& child : config.at("decoders")) {
      DF11_RETURN_IF_ERROR(ParseDecoder(child, spec));
    }
  } else if (type == "ByteLevel") {
    spec->byte_level = true;
  } else if (type == "Replace") {
    const nlohmann::json& pattern = config.at("pattern");
    if (!pattern.contains("String") || spec->byte_fallback) {
      return Status::Unimplemented(
          "decoder Replace: only a literal \"String\" pattern before ByteFallback is supported");
    }
    if (pattern.at("String").get<std::string>().empty()) {
      // An empty pattern matches everywhere: replacing it would never end.
      return Status::InvalidArgument("decoder Replace: pattern.String must not be empty");
    }
    spec->replaces.push_back(
        {pattern.at("String").get<std::string>(), config.at("content").get<std::string>()});
  } else if (type == "ByteFallback") {
    spec->byte_fallback = true;
  } else if (type != "Fuse") {  // Fuse concatenates, which decoding always does
    return Status::Unimplemented("decoder type \"" + type +
                                 "\" is not supported (supported: ByteLevel, Replace, "
                                 "ByteFallback, Fuse, Sequence)");
  }
  return Status::Ok();
}

std::string DecodeToken(const DecoderSpec& spec, const std::string& token, bool added) {
  if (spec.byte_level) return added ? token : ByteLevelToBytes(token);
  std::string text = token;
  for (const DecoderSpec::Replace& r : spec.replaces) {
    std::string out;
    size_t pos = 0, hit;
    while ((hit = text.find(r.from, pos)) != std::string::npos) {
      out.append(text, pos, hit - pos).append(r.to);
      pos = hit + r.from.size();
    }
    text = out.append(text, pos, std::string::npos);
  }
  if (spec.byte_fallback && text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>' &&
      std::isxdigit(static_cast<unsigned char>(text[3])) &&
      std::isxdigit(static_cast<unsigned char>(text[4]))) {
    return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
  }
  return text;
}

// The ids a TemplateProcessing post-processor puts before and after a single sequence.
Status ParseTemplate(const nlohmann::json& config, std::vector<int32_t>* prefix,
                     std::vector<int32_t>* suffix) {
  if (config.is_null()) return Status::Ok();
  const std::string type = config.value("type", "");
  if (type == "Sequence") {
    for (const nlohmann::json& child : config.at("processors")) {
      DF11_RETURN_IF_ERROR(ParseTemplate(child, prefix, suffix));
    }
    return Status::Ok();
  }
  if (type != "TemplateProcessing") return Status::Ok();  // ByteLevel etc. only adjust offsets
  bool seen_sequence = false;
  for (const nlohmann::json& item : config.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    const nlohmann::json& entry = config.at("special_tokens").at(name);
    for (const nlohmann::json& id : entry.at("ids")) {
      DF11_ASSIGN_OR_RETURN(int32_t parsed,
                            ParseTokenId(id, "post_processor special_tokens[\"" + name + "\"].ids"));
      (seen_sequence ? suffix : prefix)->push_back(parsed);
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::optional<std::string>> ConfigTokenString(const nlohmann::json& config,
                                                       const char* key,
                                                       const std::string& source) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    const auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      return std::optional<std::string>(content->get<std::string>());
    }
  }
  return Status::InvalidArgument(source + ": \"" + key + "\" must be a token string, " +
                                 "{\"content\": string, ...} or null; got " + it->dump());
}

StatusOr<Tokenizer> Tokenizer::FromFile(const std::string& path) {
  DF11_ASSIGN_OR_RETURN(std::string json, ReadFileToString(path));
  return FromJsonString(json, path);
}

StatusOr<Tokenizer> Tokenizer::FromDirectory(const std::string& dir) {
  DF11_ASSIGN_OR_RETURN(Tokenizer tokenizer, FromFile(JoinPath(dir, "tokenizer.json")));
  const std::string config_path = JoinPath(dir, "tokenizer_config.json");
  if (FileExists(config_path)) DF11_RETURN_IF_ERROR(tokenizer.ApplyConfig(config_path));
  return tokenizer;
}

Status Tokenizer::ApplyConfig(const std::string& config_path) {
  DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  const nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) return Status::InvalidArgument(config_path + ": not a JSON object");
  auto lookup = [&](const char* key, std::optional<int32_t>* id) -> Status {
    DF11_ASSIGN_OR_RETURN(const std::optional<std::string> token,
                          ConfigTokenString(config, key, config_path));
    if (!token) return Status::Ok();
    *id = TokenToId(*token);
    if (!*id) {
      return Status::InvalidArgument(config_path + ": " + key + " \"" + *token +
                                     "\" is not in the vocabulary");
    }
    return Status::Ok();
  };
  DF11_RETURN_IF_ERROR(lookup("bos_token", &bos_id_));
  DF11_RETURN_IF_ERROR(lookup("eos_token", &eos_id_));
  auto flag = [&](const char* key, bool* value, bool has_token) -> Status {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) return Status::Ok();
    if (!it->is_boolean()) {
      return Status::InvalidArgument(config_path + ": \"" + key + "\" must be true or false; got " +
                                     it->dump());
    }
    *value = it->get<bool>() && has_token;
    return Status::Ok();
  };
  DF11_RETURN_IF_ERROR(flag("add_bos_token", &add_bos_, bos_id_.has_value()));
  return flag("add_eos_token", &add_eos_, eos_id_.has_value());
}

StatusOr<Tokenizer> Tokenizer::FromJsonString(std::string_view json, const std::string& source) {
  const nlohmann::json root = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object()) return Status::InvalidArgument(source + ": not a JSON object");
  StatusOr<Tokenizer> t = FromParsedJson(root);
  if (!t.ok()) return t.status().WithContext(source);
  t->source_ = source;
  return t;
}

StatusOr<Tokenizer> Tokenizer::FromParsedJson(const nlohmann::json& root) {
  Tokenizer t;
  // nlohmann::json throws on a missing key or a wrong type; report it as a bad file.
  try {
    DF11_ASSIGN_OR_RETURN(BpeModel model, BpeModel::FromJson(root.at("model")));
    t.model_.emplace(std::move(model));
    DF11_ASSIGN_OR_RETURN(t.normalizer_,
                          Normalizer::FromJson(root.value("normalizer", nlohmann::json())));
    DF11_ASSIGN_OR_RETURN(t.pre_tokenizer_,
                          PreTokenizer::FromJson(root.value("pre_tokenizer", nlohmann::json())));
    DecoderSpec decoder;
    DF11_RETURN_IF_ERROR(ParseDecoder(root.value("decoder", nlohmann::json()), &decoder));
    std::vector<int32_t> prefix, suffix;
    DF11_RETURN_IF_ERROR(
        ParseTemplate(root.value("post_processor", nlohmann::json()), &prefix, &suffix));
    if (prefix.size() > 1 || suffix.size() > 1) {
      return Status::Unimplemented("post_processor adds more than one token on a side");
    }

    t.added_tokens_ = std::make_unique<std::vector<AddedToken>>();
    const nlohmann::json added = root.value("added_tokens", nlohmann::json::array());
    if (!added.is_array()) {
      return Status::InvalidArgument("added_tokens must be a list; got " +
                                     std::string(added.type_name()));
    }
    for (size_t i = 0; i < added.size(); ++i) {
      const nlohmann::json& a = added[i];
      AddedToken token;
      DF11_ASSIGN_OR_RETURN(token.id,
                            ParseTokenId(a.at("id"), "added_tokens[" + std::to_string(i) + "].id"));
      token.content = a.at("content").get<std::string>();
      token.special = a.value("special", false);
      token.single_word = a.value("single_word", false);
      token.lstrip = a.value("lstrip", false);
      token.rstrip = a.value("rstrip", false);
      token.normalized = a.value("normalized", false);
      t.added_tokens_->push_back(std::move(token));
    }

    // Id tables: vocabulary first, then added tokens (which win on a shared id).
    int32_t size = 0;
    for (const auto& [token, id] : t.model_->vocab()) size = std::max(size, id + 1);
    for (const AddedToken& a : *t.added_tokens_) size = std::max(size, a.id + 1);
    t.id_to_token_.assign(size, "");
    t.id_to_bytes_.assign(size, "");
    t.id_flags_.assign(size, 0);
    for (const auto& [token, id] : t.model_->vocab()) {
      t.id_to_token_[id] = token;
      t.id_to_bytes_[id] = DecodeToken(decoder, token, /*added=*/false);
      t.id_flags_[id] = kAssigned;
    }
    std::vector<int32_t> raw, normalized;
    for (size_t i = 0; i < t.added_tokens_->size(); ++i) {
      const AddedToken& a = (*t.added_tokens_)[i];
      t.id_to_token_[a.id] = a.content;
      t.id_to_bytes_[a.id] = DecodeToken(decoder, a.content, /*added=*/true);
      t.id_flags_[a.id] = kAssigned | (a.special ? kSpecial : 0);
      t.added_token_ids_.emplace(a.content, a.id);
      (a.normalized ? normalized : raw).push_back(static_cast<int32_t>(i));
    }
    t.raw_matcher_ = AddedTokenMatcher(t.added_tokens_.get(), raw);
    t.normalized_matcher_ = AddedTokenMatcher(t.added_tokens_.get(), normalized);

    for (const std::vector<int32_t>* ids : {&prefix, &suffix}) {
      if (ids->empty() || t.IdToToken(ids->front())) continue;
      const int32_t id = ids->front();
      {
        return Status::InvalidArgument("post_processor adds token id " + std::to_string(id) +
                                       ", which is not in the vocabulary");
      }
    }
    if (!prefix.empty()) t.bos_id_ = prefix[0];
    if (!suffix.empty()) t.eos_id_ = suffix[0];
    t.add_bos_ = !prefix.empty();
    t.add_eos_ = !suffix.empty();
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(e.what());
  }
  return t;
}

Status Tokenizer::CheckFitsVocabulary(int64_t model_vocab_size, const std::string& model) const {
  if (vocab_size() <= model_vocab_size) return Status::Ok();
  const int32_t id = vocab_size() - 1;  // the largest id is always assigned
  const auto added = std::find_if(added_tokens_->begin(), added_tokens_->end(),
                                  [&](const AddedToken& a) { return a.id == id; });
  const std::string field = added != added_tokens_->end()
                                ? "added_tokens[" +
                                      std::to_string(added - added_tokens_->begin()) + "].id"
                                : "model.vocab[" + nlohmann::json(id_to_token_[id]).dump() + "]";
  return Status::InvalidArgument(source_ + ": " + field + " = " + std::to_string(id) +
                                 " is not below the vocab_size " +
                                 std::to_string(model_vocab_size) + " of " + model);
}

void Tokenizer::EncodeOrdinary(std::string_view text, std::vector<int32_t>* ids) const {
  const std::string normalized = normalizer_.Apply(text);
  auto encode_words = [&](std::string_view span) {
    for (const std::string& word : pre_tokenizer_.Split(span)) model_->Tokenize(word, ids);
  };
  if (normalized_matcher_.empty()) {
    encode_words(normalized);
    return;
  }
  const std::string_view view = normalized;
  for (const AddedTokenMatcher::Segment& s : normalized_matcher_.Split(view)) {
    if (s.token >= 0) {
      ids->push_back((*added_tokens_)[s.token].id);
    } else {
      encode_words(view.substr(s.begin, s.end - s.begin));
    }
  }
}

StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                 bool add_special_tokens) const {
  const size_t bad = FindInvalidUtf8(text);
  if (bad != std::string_view::npos) {
    char message[96];
    std::snprintf(message, sizeof(message),
                  "text to encode is not valid UTF-8: bad byte 0x%02X at byte offset %zu",
                  static_cast<uint8_t>(text[bad]), bad);
    return Status::InvalidArgument(message);
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special_tokens && add_bos_) ids.push_back(*bos_id_);
  for (const AddedTokenMatcher::Segment& s : raw_matcher_.Split(text)) {
    if (s.token >= 0) {
      ids.push_back((*added_tokens_)[s.token].id);
    } else {
      EncodeOrdinary(text.substr(s.begin, s.end - s.begin), &ids);
    }
  }
  if (add_special_tokens && add_eos_) ids.push_back(*eos_id_);
  return ids;
}

StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids,
                                        bool skip_special_tokens) const {
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::optional<std::string_view> piece = IdToBytes(ids[i]);
    if (!piece) {
      return Status::InvalidArgument("cannot decode unknown token id " + std::to_string(ids[i]) +
                                     " (at position " + std::to_string(i) + "; vocab_size " +
                                     std::to_string(vocab_size()) + ")");
    }
    if (skip_special_tokens && IsSpecial(ids[i])) continue;
    bytes.append(*piece);
  }
  return RepairUtf8(bytes);
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  const auto it = added_token_ids_.find(token);
  if (it != added_token_ids_.end()) return it->second;
  return model_->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !(id_flags_[id] & kAssigned)) return std::nullopt;
  return id_to_token_[id];
}

std::optional<std::string_view> Tokenizer::IdToBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !(id_flags_[id] & kAssigned)) return std::nullopt;
  return id_to_bytes_[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && (id_flags_[id] & kSpecial);
}

}  // namespace df11
