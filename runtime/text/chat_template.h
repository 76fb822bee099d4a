// SPDX-License-Identifier: Apache-2.0
// Chat formatting without a Jinja engine: the family of a model's chat template (Llama 3, ChatML,
// Mistral [INST], Gemma 3) is recognised from tokenizer_config.json's "chat_template" text, and
// plain-text messages are rendered exactly as that template renders them with
// add_generation_prompt=true and no tools (checked against Jinja renderings in tests/data/chat).
// Immutable after loading; thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

enum class ChatFamily { kLlama3, kChatMl, kMistral, kGemma };
const char* ChatFamilyName(ChatFamily family);

struct ChatMessage {
  std::string role;     // "system", "user" or "assistant"
  std::string content;  // UTF-8
};

class ChatTemplate {
 public:
  // Reads `model_dir`/tokenizer_config.json ("chat_template", else `model_dir`/chat_template.jinja;
  // "bos_token", "eos_token") and, if present, `model_dir`/generation_config.json
  // ("eos_token_id"). Unimplemented for a template of another family, naming what it found.
  static StatusOr<ChatTemplate> FromDirectory(const std::string& model_dir);
  // The same from parsed configs; `generation_config` may be null. `source` names the config in
  // error messages.
  static StatusOr<ChatTemplate> FromConfig(const nlohmann::json& tokenizer_config,
                                           const nlohmann::json& generation_config,
                                           const std::string& source);

  // The prompt text for `messages` followed by the assistant's generation prompt. InvalidArgument
  // naming the message index for an unknown role, invalid UTF-8, or an order the template
  // rejects (Mistral and Gemma: user/assistant alternation after an optional leading system
  // message); also for no messages.
  StatusOr<std::string> Apply(std::span<const ChatMessage> messages) const;

  ChatFamily family() const { return family_; }
  // Whether Apply's text already begins with the BOS token string; then encode it without
  // add_special_tokens so that BOS appears once.
  bool adds_bos() const { return !bos_token_.empty() && family_ != ChatFamily::kChatMl; }
  // Ids that end generation, without duplicates: generation_config.json "eos_token_id", the
  // tokenizer_config eos_token, and the family's end-of-turn token (<|eot_id|>, <|im_end|>, </s>,
  // <end_of_turn>), each where `tokenizer` knows it.
  std::vector<int32_t> StopTokenIds(const Tokenizer& tokenizer) const;

 private:
  ChatTemplate() = default;
  Status CheckMessages(std::span<const ChatMessage> messages) const;
  std::string ApplyLlama3(std::span<const ChatMessage> messages) const;
  std::string ApplyChatMl(std::span<const ChatMessage> messages) const;
  StatusOr<std::string> ApplyMistral(std::span<const ChatMessage> messages) const;
  StatusOr<std::string> ApplyGemma(std::span<const ChatMessage> messages) const;

  ChatFamily family_ = ChatFamily::kChatMl;
  std::string bos_token_, eos_token_;  // "" when the config has none
  std::vector<int32_t> generation_eos_ids_;

  // Llama 3.1+: a system block with the knowledge cutoff and a date always comes first.
  bool llama_dated_ = false;
  std::string knowledge_date_, today_date_;
  // ChatML: Qwen3's <think> handling of assistant turns after the last user query; a system
  // message inserted when the conversation has none (Qwen 2.5, "You are a helpful assistant.").
  bool qwen3_thinking_ = false;
  std::string default_system_;
  // Mistral: "[INST]" or "[INST] ", "[/INST]" or " [/INST]"; assistant content " "+trim(content)
  // (v0.3) or as is; text after eos_token; system prompt prepended to the last user message
  // (v0.3, Nemo) or rejected (v0.1).
  std::string inst_open_, inst_close_, after_eos_;
  bool assistant_space_trim_ = false;
  bool mistral_system_ = false;
};

// Parses {"messages": [{"role": ..., "content": ...}, ...]}; extra fields are ignored.
// InvalidArgument naming the field ("messages[2].content: expected a string"); content with an
// image part ("messages[0].content[1]: an image; ...") is refused as such: text only is served.
StatusOr<std::vector<ChatMessage>> ParseMessages(const nlohmann::json& j);

}  // namespace df11
