// SPDX-License-Identifier: Apache-2.0
// ChatTemplate against Jinja renderings of the real templates (tests/data/chat/<family>.jsonl, made
// by scripts/reference/make_chat_goldens.py): every rendering must match byte for byte, and where
// the template raises, Apply must fail. Also BOS handling, stop ids and error messages.
#include "runtime/text/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace df11 {
namespace {

const std::string kTokenizers = DF11_TOKENIZER_DIR;
const std::string kChatData = DF11_TEST_DATA_DIR "/chat";

// "tokenizer:X" names the real tokenizer of family X (BUILD/data/tokenizers/X), anything else
// tests/data/chat/templates/X.
std::string TemplateDir(const std::string& name) {
  if (name.starts_with("tokenizer:")) return kTokenizers + "/" + name.substr(10);
  return kChatData + "/templates/" + name;
}

const Tokenizer& LoadTokenizer(const std::string& family) {
  static auto* cache = new std::map<std::string, Tokenizer>();
  auto it = cache->find(family);
  if (it == cache->end()) {
    StatusOr<Tokenizer> t = Tokenizer::FromDirectory(kTokenizers + "/" + family);
    if (!t.ok()) {
      std::fprintf(stderr, "cannot load the %s tokenizer: %s\n", family.c_str(),
                   t.status().ToString().c_str());
      std::abort();
    }
    it = cache->emplace(family, std::move(t).value()).first;
  }
  return it->second;
}

ChatTemplate LoadTemplate(const std::string& dir) {
  StatusOr<ChatTemplate> t = ChatTemplate::FromDirectory(dir);
  if (!t.ok()) {
    std::fprintf(stderr, "cannot load the chat template in %s: %s\n", dir.c_str(),
                 t.status().ToString().c_str());
    std::abort();
  }
  return std::move(t).value();
}

struct GoldenFile {
  std::string name;
  ChatFamily family;
};

class GoldenTest : public ::testing::TestWithParam<GoldenFile> {};

TEST_P(GoldenTest, EveryRenderingMatchesJinja) {
  const GoldenFile& golden = GetParam();
  const std::string path = kChatData + "/" + golden.name + ".jsonl";
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot open " << path;
  std::map<std::string, ChatTemplate> templates;
  std::string line;
  int line_number = 0, rendered = 0, rejected = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const nlohmann::json j = nlohmann::json::parse(line);
    const std::string name = j["template"];
    auto it = templates.find(name);
    if (it == templates.end()) {
      it = templates.emplace(name, LoadTemplate(TemplateDir(name))).first;
      EXPECT_EQ(it->second.family(), golden.family) << name;
    }
    StatusOr<std::vector<ChatMessage>> messages = ParseMessages(j);
    ASSERT_TRUE(messages.ok()) << messages.status().ToString();
    StatusOr<std::string> text = it->second.Apply(*messages);
    if (j.contains("rendered")) {
      ASSERT_TRUE(text.ok()) << path << ":" << line_number << " (" << name
                             << "): " << text.status().ToString();
      EXPECT_EQ(*text, j["rendered"].get<std::string>()) << path << ":" << line_number << " ("
                                                          << name << ")";
      rendered += *text == j["rendered"].get<std::string>();
    } else {
      EXPECT_FALSE(text.ok()) << path << ":" << line_number << " (" << name
                              << ") should fail like the template: " << j["error"];
      if (!text.ok()) {
        EXPECT_EQ(text.status().code(), StatusCode::kInvalidArgument);
        ++rejected;
      }
    }
  }
  EXPECT_GT(line_number, 10);
  std::printf("%s: %d lines, %d renderings matched, %d template errors reproduced\n",
              golden.name.c_str(), line_number, rendered, rejected);
}

INSTANTIATE_TEST_SUITE_P(Families, GoldenTest,
                         ::testing::Values(GoldenFile{"llama3", ChatFamily::kLlama3},
                                           GoldenFile{"chatml", ChatFamily::kChatMl},
                                           GoldenFile{"mistral", ChatFamily::kMistral},
                                           GoldenFile{"gemma", ChatFamily::kGemma}),
                         [](const auto& info) { return info.param.name; });

const std::vector<ChatMessage> kConversation = {{"system", "You are terse."}, {"user", "Hi!"}};

TEST(ChatTemplateTest, LlamaPromptEncodesWithOneBos) {
  const Tokenizer& tokenizer = LoadTokenizer("llama-3.1");
  const ChatTemplate chat = LoadTemplate(kTokenizers + "/llama-3.1");
  ASSERT_TRUE(chat.adds_bos());
  StatusOr<std::string> text = chat.Apply(kConversation);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(*text, /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  ASSERT_TRUE(tokenizer.bos_id().has_value());
  ASSERT_FALSE(ids->empty());
  EXPECT_EQ((*ids)[0], *tokenizer.bos_id());
  EXPECT_EQ(std::count(ids->begin(), ids->end(), *tokenizer.bos_id()), 1);
  EXPECT_EQ(ids->back(), 271);  // "\n\n" after <|start_header_id|>assistant<|end_header_id|>
}

TEST(ChatTemplateTest, QwenPromptHasNoBos) {
  const ChatTemplate chat = LoadTemplate(kTokenizers + "/qwen3");
  EXPECT_EQ(chat.family(), ChatFamily::kChatMl);
  EXPECT_FALSE(chat.adds_bos());
  StatusOr<std::string> text = chat.Apply(kConversation);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\n");
}

bool Has(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

TEST(ChatTemplateTest, StopTokenIds) {
  const std::vector<int32_t> llama =
      LoadTemplate(kTokenizers + "/llama-3.1").StopTokenIds(LoadTokenizer("llama-3.1"));
  EXPECT_TRUE(Has(llama, 128009)) << "<|eot_id|>";
  const std::vector<int32_t> qwen =
      LoadTemplate(kTokenizers + "/qwen3").StopTokenIds(LoadTokenizer("qwen3"));
  EXPECT_TRUE(Has(qwen, 151645)) << "<|im_end|>";
  const Tokenizer& gemma_tokenizer = LoadTokenizer("gemma3");
  const std::vector<int32_t> gemma =
      LoadTemplate(kTokenizers + "/gemma3").StopTokenIds(gemma_tokenizer);
  EXPECT_TRUE(Has(gemma, *gemma_tokenizer.TokenToId("<end_of_turn>")));
}

TEST(ChatTemplateTest, StopTokenIdsIncludeGenerationConfigWithoutDuplicates) {
  const nlohmann::json config = {{"chat_template", "<|start_header_id|>"},
                                 {"eos_token", "<|eot_id|>"}};
  StatusOr<ChatTemplate> chat = ChatTemplate::FromConfig(
      config, {{"eos_token_id", {128001, 128008, 128009}}}, "test config");
  ASSERT_TRUE(chat.ok()) << chat.status().ToString();
  EXPECT_EQ(chat->StopTokenIds(LoadTokenizer("llama-3.1")),
            (std::vector<int32_t>{128001, 128008, 128009}));
  StatusOr<ChatTemplate> single =
      ChatTemplate::FromConfig(config, {{"eos_token_id", 128001}}, "test config");
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->StopTokenIds(LoadTokenizer("llama-3.1")),
            (std::vector<int32_t>{128001, 128009}));
  EXPECT_EQ(ChatTemplate::FromConfig(config, {{"eos_token_id", "x"}}, "c").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, ErrorsNameTheMessage) {
  const ChatTemplate chat = LoadTemplate(kTokenizers + "/llama-3.1");
  StatusOr<std::string> r = chat.Apply(std::vector<ChatMessage>{{"user", "a"}, {"tool", "b"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("message 1"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("\"tool\""), std::string::npos) << r.status().message();

  r = chat.Apply(std::vector<ChatMessage>{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);

  r = chat.Apply(std::vector<ChatMessage>{{"user", "ok"}, {"assistant", "bad \xC3("}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("message 1"), std::string::npos) << r.status().message();

  const ChatTemplate mistral = LoadTemplate(kChatData + "/templates/mistral-7b-instruct-v0.3");
  r = mistral.Apply(std::vector<ChatMessage>{{"system", "s"}, {"user", "a"}, {"user", "b"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("message 2"), std::string::npos) << r.status().message();
}

TEST(ParseMessagesTest, ParsesAndNamesBadFields) {
  StatusOr<std::vector<ChatMessage>> m = ParseMessages(nlohmann::json::parse(
      R"({"messages": [{"role": "user", "content": "hé", "name": "x"}]})"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].role, "user");
  EXPECT_EQ((*m)[0].content, "hé");

  const std::pair<const char*, const char*> bad[] = {
      {R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": 3}]})",
       "messages[1].content"},
      {R"({"messages": [{"role": "user", "content": "a"}, {"content": "b"}]})",
       "messages[1].role"},
      {R"({"messages": [{"role": "user", "content": null}]})", "messages[0].content"},
      {R"({"messages": ["hi"]})", "messages[0]"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": {}})", "messages"},
      {R"({"prompt": "x"})", "messages"},
      // An image, as OpenAI-style chat requests carry it: refused by name.
      {R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})",
       "messages[0].content[1]: an image; this runtime serves text only"},
      {R"({"messages": [{"role": "user", "content": "a"},
          {"role": "user", "content": [{"type": "image", "url": "cat.png"}]}]})",
       "messages[1].content[0]: an image"},
  };
  for (const auto& [text, field] : bad) {
    m = ParseMessages(nlohmann::json::parse(text));
    ASSERT_FALSE(m.ok()) << text;
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_TRUE(m.status().message().starts_with(field)) << text << " -> " << m.status().message();
  }
}

TEST(ChatTemplateTest, UnsupportedFamilyIsUnimplemented) {
  const nlohmann::json config = {
      {"chat_template", "{% for m in messages %}<｜User｜>{{ m['content'] }}{% endfor %}"}};
  StatusOr<ChatTemplate> chat = ChatTemplate::FromConfig(config, nullptr, "deepseek config");
  ASSERT_FALSE(chat.ok());
  EXPECT_EQ(chat.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(chat.status().message().find("deepseek config"), std::string::npos);
  EXPECT_EQ(ChatTemplate::FromConfig({{"bos_token", "<s>"}}, nullptr, "c").status().code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace df11
