// SPDX-License-Identifier: Apache-2.0
// Each Apply* reproduces one template family's Jinja for plain-text messages; comments quote the
// template constructs they stand for. Variants within a family are told apart by fixed strings
// of their template text (see FromConfig).
#include "runtime/text/chat_template.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>

#include "runtime/core/file_util.h"
#include "runtime/text/utf8.h"

namespace df11 {
namespace {

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// Python's str.isspace() set, which Jinja's `trim` filter (str.strip()) removes.
bool IsPythonSpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// The code point of the well-formed UTF-8 character at `pos` that is `len` bytes long.
uint32_t DecodeUtf8(std::string_view s, size_t pos, size_t len) {
  static constexpr uint8_t kLeadMask[] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  uint32_t c = static_cast<uint8_t>(s[pos]) & kLeadMask[len];
  for (size_t i = 1; i < len; ++i) c = (c << 6) | (static_cast<uint8_t>(s[pos + i]) & 0x3F);
  return c;
}

// Jinja `| trim` on valid UTF-8.
std::string PyTrim(std::string_view s) {
  size_t begin = 0, end = s.size();
  while (begin < end) {
    const size_t len = ScanUtf8(s, begin).length;
    if (!IsPythonSpace(DecodeUtf8(s, begin, len))) break;
    begin += len;
  }
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    if (!IsPythonSpace(DecodeUtf8(s, start, end - start))) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

std::string_view LStripNewlines(std::string_view s) {
  const size_t i = s.find_first_not_of('\n');
  return i == std::string_view::npos ? std::string_view() : s.substr(i);
}

std::string_view RStripNewlines(std::string_view s) {
  const size_t i = s.find_last_not_of('\n');
  return i == std::string_view::npos ? std::string_view() : s.substr(0, i + 1);
}

// Python's s.split(sep)[-1] and s.split(sep)[0].
std::string_view AfterLast(std::string_view s, std::string_view sep) {
  const size_t i = s.rfind(sep);
  return i == std::string_view::npos ? s : s.substr(i + sep.size());
}
std::string_view BeforeFirst(std::string_view s, std::string_view sep) {
  return s.substr(0, s.find(sep));
}

// The string of a special-token entry: "<s>", {"content": "<s>", ...}, or null -> "".
StatusOr<std::string> TokenString(const nlohmann::json& config, const char* key,
                                  const std::string& source) {
  DF11_ASSIGN_OR_RETURN(std::optional<std::string> token, ConfigTokenString(config, key, source));
  return token.value_or("");
}

// The text of group 1 of `pattern` in `text`, or `fallback`.
std::string FindGroup(const std::string& text, const char* pattern, std::string fallback) {
  std::smatch match;
  if (std::regex_search(text, match, std::regex(pattern))) return match[1].str();
  return fallback;
}

std::string UnescapeNewlines(std::string s) {
  for (size_t i = 0; (i = s.find("\\n", i)) != std::string::npos; ++i) s.replace(i, 2, "\n");
  return s;
}

Status BadMessage(size_t index, const std::string& what) {
  return Status::InvalidArgument("message " + std::to_string(index) + ": " + what);
}

}  // namespace

const char* ChatFamilyName(ChatFamily family) {
  switch (family) {
    case ChatFamily::kLlama3: return "Llama 3";
    case ChatFamily::kChatMl: return "ChatML";
    case ChatFamily::kMistral: return "Mistral";
    case ChatFamily::kGemma: return "Gemma 3";
  }
  return "?";
}

StatusOr<ChatTemplate> ChatTemplate::FromDirectory(const std::string& model_dir) {
  const std::string config_path = JoinPath(model_dir, "tokenizer_config.json");
  DF11_ASSIGN_OR_RETURN(std::string config_text, ReadFileToString(config_path));
  nlohmann::json config = nlohmann::json::parse(config_text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) return Status::Corruption(config_path + ": not a JSON object");
  const std::string jinja_path = JoinPath(model_dir, "chat_template.jinja");
  if (!config.contains("chat_template") && FileExists(jinja_path)) {
    DF11_ASSIGN_OR_RETURN(std::string jinja, ReadFileToString(jinja_path));
    config["chat_template"] = std::move(jinja);
  }
  nlohmann::json generation;
  const std::string generation_path = JoinPath(model_dir, "generation_config.json");
  if (FileExists(generation_path)) {
    DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(generation_path));
    generation = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!generation.is_object()) return Status::Corruption(generation_path + ": not a JSON object");
  }
  return FromConfig(config, generation, config_path);
}

StatusOr<ChatTemplate> ChatTemplate::FromConfig(const nlohmann::json& tokenizer_config,
                                                const nlohmann::json& generation_config,
                                                const std::string& source) {
  std::string text;
  auto it = tokenizer_config.find("chat_template");
  if (it != tokenizer_config.end() && it->is_string()) {
    text = it->get<std::string>();
  } else if (it != tokenizer_config.end() && it->is_array()) {
    for (const nlohmann::json& entry : *it) {  // [{"name": "default", "template": "..."}, ...]
      if (entry.is_object() && entry.contains("name") && entry["name"] == "default" &&
          entry.contains("template") && entry["template"].is_string()) {
        text = entry["template"].get<std::string>();
      }
    }
  }
  if (text.empty()) {
    return Status::NotFound(source + ": no \"chat_template\" (a string, or a list with a "
                                     "\"default\" entry)");
  }
  ChatTemplate t;
  DF11_ASSIGN_OR_RETURN(t.bos_token_, TokenString(tokenizer_config, "bos_token", source));
  DF11_ASSIGN_OR_RETURN(t.eos_token_, TokenString(tokenizer_config, "eos_token", source));

  if (Contains(text, "<|start_header_id|>")) {
    t.family_ = ChatFamily::kLlama3;
    // Llama 3.1+: {{- "Cutting Knowledge Date: December 2023\n" }} and
    // {%- set date_string = "26 Jul 2024" %} (used when date_string and strftime_now are unset).
    t.llama_dated_ = Contains(text, "Cutting Knowledge Date:");
    t.knowledge_date_ = FindGroup(text, R"(Cutting Knowledge Date: ([^"'\\\n]*))", "");
    t.today_date_ = FindGroup(text, R"(set\s+date_string\s*=\s*["']([^"']*)["'])", "26 Jul 2024");
  } else if (Contains(text, "<|im_start|>")) {
    t.family_ = ChatFamily::kChatMl;
    t.qwen3_thinking_ = Contains(text, "last_query_index") && Contains(text, "</think>");
    if (!t.qwen3_thinking_ && Contains(text, "think>")) {
      return Status::Unimplemented(source + ": ChatML chat template with <think> handling "
                                            "other than Qwen3's");
    }
    // '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' as a literal.
    t.default_system_ = UnescapeNewlines(
        FindGroup(text, R"(<\|im_start\|>system(?:\\n|\n)([^'"]+?)<\|im_end\|>)", ""));
  } else if (Contains(text, "<start_of_turn>")) {
    t.family_ = ChatFamily::kGemma;
    if (!Contains(text, "first_user_prefix")) {
      return Status::Unimplemented(source + ": Gemma chat template other than Gemma 3's");
    }
  } else if (Contains(text, "[INST]")) {
    t.family_ = ChatFamily::kMistral;
    std::smatch m;
    if (!std::regex_search(text, m, std::regex(R"(\[INST\]( ?)["'])"))) {
      return Status::Unimplemented(source + ": Mistral chat template without a '[INST]' literal");
    }
    t.inst_open_ = "[INST]" + m[1].str();
    if (!std::regex_search(text, m, std::regex(R"(["']( ?)\[/INST\])"))) {
      return Status::Unimplemented(source + ": Mistral chat template without a '[/INST]' literal");
    }
    t.inst_close_ = m[1].str() + "[/INST]";
    // v0.3: {{- " " + message["content"]|trim + eos_token}}; v0.1: {{ message['content'] +
    // eos_token + ' ' }} in one of its revisions.
    t.assistant_space_trim_ = std::regex_search(
        text, std::regex(R"(["'] ["']\s*\+\s*message\[["']content["']\]\s*\|\s*trim)"));
    t.after_eos_ = std::regex_search(text, std::regex(R"(eos_token\s*\+\s*["'] ["'])")) ? " " : "";
    t.mistral_system_ = Contains(text, "system_message");
  } else {
    return Status::Unimplemented(
        source + ": chat template of an unsupported family (supported: Llama 3 "
                 "<|start_header_id|>, ChatML <|im_start|>, Mistral [INST], Gemma 3 "
                 "<start_of_turn>)");
  }

  if (!generation_config.is_null()) {
    auto eos = generation_config.find("eos_token_id");
    if (eos != generation_config.end() && !eos->is_null()) {
      const nlohmann::json list = eos->is_array() ? *eos : nlohmann::json::array({*eos});
      for (const nlohmann::json& id : list) {
        if (!id.is_number_integer()) {
          return Status::InvalidArgument(
              "generation_config.json: \"eos_token_id\" must be an integer or a list of them");
        }
        DF11_ASSIGN_OR_RETURN(int32_t parsed,
                              ParseTokenId(id, "generation_config.json: eos_token_id"));
        t.generation_eos_ids_.push_back(parsed);
      }
    }
  }
  return t;
}

Status ChatTemplate::CheckMessages(std::span<const ChatMessage> messages) const {
  if (messages.empty()) return Status::InvalidArgument("messages: empty (need at least one)");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return BadMessage(i, "unknown role \"" + role + "\" (expected system, user or assistant)");
    }
    const size_t bad = FindInvalidUtf8(messages[i].content);
    if (bad != std::string::npos) {
      return BadMessage(i, "content is not valid UTF-8 at byte " + std::to_string(bad));
    }
  }
  return Status::Ok();
}

StatusOr<std::string> ChatTemplate::Apply(std::span<const ChatMessage> messages) const {
  DF11_RETURN_IF_ERROR(CheckMessages(messages));
  switch (family_) {
    case ChatFamily::kLlama3: return ApplyLlama3(messages);
    case ChatFamily::kChatMl: return ApplyChatMl(messages);
    case ChatFamily::kMistral: return ApplyMistral(messages);
    case ChatFamily::kGemma: return ApplyGemma(messages);
  }
  return Status::Internal("unknown chat family");
}

std::string ChatTemplate::ApplyLlama3(std::span<const ChatMessage> messages) const {
  std::string out;
  size_t first = 0;
  if (llama_dated_) {
    // The system block always comes first; a leading system message fills it (trimmed).
    std::string system;
    if (messages[0].role == "system") {
      system = PyTrim(messages[0].content);
      first = 1;
    }
    out = bos_token_ + "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: " +
          knowledge_date_ + "\nToday Date: " + today_date_ + "\n\n" + system + "<|eot_id|>";
  } else {
    out = bos_token_;  // {% if loop.index0 == 0 %}{% set content = bos_token + content %}
  }
  for (size_t i = first; i < messages.size(); ++i) {
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
           PyTrim(messages[i].content) + "<|eot_id|>";
  }
  return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
}

std::string ChatTemplate::ApplyChatMl(std::span<const ChatMessage> messages) const {
  std::string out;
  const bool leading_system = messages[0].role == "system";
  if (leading_system) {
    out = "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  } else if (!default_system_.empty()) {
    out = "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
  }
  // Qwen3: ns.last_query_index = the last user message that is not a <tool_response>.
  size_t last_query = messages.size() - 1;
  for (size_t i = messages.size(); i-- > 0;) {
    const std::string_view c = messages[i].content;
    if (messages[i].role == "user" &&
        !(c.starts_with("<tool_response>") && c.ends_with("</tool_response>"))) {
      last_query = i;
      break;
    }
  }
  for (size_t i = leading_system ? 1 : 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role != "assistant" || !qwen3_thinking_) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      continue;
    }
    std::string_view content = m.content, reasoning;
    if (Contains(m.content, "</think>")) {
      content = LStripNewlines(AfterLast(m.content, "</think>"));
      reasoning =
          LStripNewlines(AfterLast(RStripNewlines(BeforeFirst(m.content, "</think>")), "<think>"));
    }
    out += "<|im_start|>assistant\n";
    if (i > last_query && (i + 1 == messages.size() || !reasoning.empty())) {
      out += "<think>\n" + std::string(RStripNewlines(LStripNewlines(reasoning))) +
             "\n</think>\n\n" + std::string(LStripNewlines(content));
    } else {
      out += content;
    }
    out += "<|im_end|>\n";
  }
  // enable_thinking undefined: no empty <think></think> block after the generation prompt.
  return out + "<|im_start|>assistant\n";
}

StatusOr<std::string> ChatTemplate::ApplyMistral(std::span<const ChatMessage> messages) const {
  // v0.3/Nemo take an optional leading system message; v0.1 takes none. The rest must be
  // user, assistant, user, ... (the templates raise_exception otherwise).
  const bool has_system = mistral_system_ && messages[0].role == "system";
  const size_t first = has_system ? 1 : 0;
  for (size_t i = first; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role == "system") {
      return BadMessage(i, mistral_system_ ? "this Mistral template takes a system message only "
                                             "as the first message"
                                           : "this Mistral template takes no system message");
    }
    const bool want_user = (i - first) % 2 == 0;
    if ((role == "user") != want_user) {
      return BadMessage(i, "role \"" + role + "\" where \"" + (want_user ? "user" : "assistant") +
                               "\" was expected (Mistral templates need user/assistant turns "
                               "alternating after an optional system message)");
    }
  }
  std::string out = bos_token_;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      // {%- if loop.last and system_message is defined %}: the system prompt goes into the
      // final user message only (and is dropped when the conversation ends with the assistant).
      const bool with_system = has_system && i + 1 == messages.size();
      out += inst_open_ + (with_system ? messages[0].content + "\n\n" : "") + m.content +
             inst_close_;
    } else {
      out += (assistant_space_trim_ ? " " + PyTrim(m.content) : m.content) + eos_token_ +
             after_eos_;
    }
  }
  return out;  // these templates add nothing for add_generation_prompt
}

StatusOr<std::string> ChatTemplate::ApplyGemma(std::span<const ChatMessage> messages) const {
  // A leading system message becomes a prefix (untrimmed + "\n\n") of the first turn.
  const bool has_system = messages[0].role == "system";
  const size_t first = has_system ? 1 : 0;
  std::string out = bos_token_;
  for (size_t i = first; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    // {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %} raise_exception
    const bool want_user = (i - first) % 2 == 0;
    if ((role == "user") != want_user) {
      return BadMessage(i, "role \"" + role + "\" where " +
                               (want_user ? "\"user\"" : "a non-user role") +
                               " was expected (Gemma templates need user/assistant turns "
                               "alternating after an optional system message)");
    }
    out += "<start_of_turn>" + (role == "assistant" ? std::string("model") : role) + "\n";
    if (i == first && has_system) out += messages[0].content + "\n\n";
    out += PyTrim(messages[i].content) + "<end_of_turn>\n";
  }
  return out + "<start_of_turn>model\n";
}

std::vector<int32_t> ChatTemplate::StopTokenIds(const Tokenizer& tokenizer) const {
  std::vector<int32_t> ids;
  auto add = [&](std::optional<int32_t> id) {
    if (!id || *id < 0 || *id >= tokenizer.vocab_size() || !tokenizer.IdToToken(*id)) return;
    if (std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  };
  for (int32_t id : generation_eos_ids_) add(id);
  if (!eos_token_.empty()) add(tokenizer.TokenToId(eos_token_));
  add(tokenizer.eos_id());
  static constexpr const char* kEndOfTurn[] = {"<|eot_id|>", "<|im_end|>", "</s>",
                                               "<end_of_turn>"};
  add(tokenizer.TokenToId(kEndOfTurn[static_cast<int>(family_)]));
  return ids;
}

namespace {

// The index of the first image part of a list-of-parts content ({"type": "image_url", ...},
// {"type": "image"}, ...), or -1.
int64_t FirstImagePart(const nlohmann::json& content) {
  if (!content.is_array()) return -1;
  for (size_t p = 0; p < content.size(); ++p) {
    const nlohmann::json& part = content[p];
    if (!part.is_object()) continue;
    auto type = part.find("type");
    const bool image_type = type != part.end() && type->is_string() &&
                            type->get<std::string>().find("image") != std::string::npos;
    if (image_type || part.contains("image_url") || part.contains("image")) {
      return static_cast<int64_t>(p);
    }
  }
  return -1;
}

}  // namespace

StatusOr<std::vector<ChatMessage>> ParseMessages(const nlohmann::json& j) {
  if (!j.is_object()) return Status::InvalidArgument("request: expected a JSON object");
  auto it = j.find("messages");
  if (it == j.end()) return Status::InvalidArgument("messages: missing");
  if (!it->is_array()) return Status::InvalidArgument("messages: expected an array");
  if (it->empty()) return Status::InvalidArgument("messages: empty (need at least one)");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& m = (*it)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return Status::InvalidArgument(where + ": expected an object");
    ChatMessage message;
    const std::pair<const char*, std::string*> fields[] = {{"role", &message.role},
                                                           {"content", &message.content}};
    if (auto c = m.find("content"); c != m.end()) {
      if (const int64_t image = FirstImagePart(*c); image >= 0) {
        return Status::InvalidArgument(
            where + ".content[" + std::to_string(image) +
            "]: an image; this runtime serves text only (a multimodal model's vision tower is "
            "not loaded): expected the content as a string");
      }
    }
    for (const auto& [key, value] : fields) {
      auto f = m.find(key);
      if (f == m.end()) return Status::InvalidArgument(where + "." + key + ": missing");
      if (!f->is_string()) {
        return Status::InvalidArgument(where + "." + key + ": expected a string, got " +
                                       f->type_name());
      }
      *value = f->get<std::string>();
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

}  // namespace df11
