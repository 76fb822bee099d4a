// SPDX-License-Identifier: Apache-2.0
// Tokenizer against the golden tokenizations in tests/data/tokenizers/golden (made with
// transformers.js, see its README): every line's ids and decoded text must match exactly. Each
// tokenizer.json (9-33 MB) is loaded once per binary.
#include "runtime/text/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/text/utf8.h"

namespace df11 {
namespace {

const std::string kTokenizerDir = DF11_TOKENIZER_DIR;
const std::string kGoldenDir = DF11_TEST_DATA_DIR "/tokenizers/golden";

// Loads each family's tokenizer on first use and keeps it for the whole binary.
const Tokenizer& Load(const std::string& family) {
  static auto* cache = new std::map<std::string, Tokenizer>();
  auto it = cache->find(family);
  if (it == cache->end()) {
    StatusOr<Tokenizer> t = Tokenizer::FromDirectory(kTokenizerDir + "/" + family);
    if (!t.ok()) {
      std::fprintf(stderr, "cannot load the %s tokenizer: %s\n", family.c_str(),
                   t.status().ToString().c_str());
      std::abort();
    }
    it = cache->emplace(family, std::move(t).value()).first;
  }
  return it->second;
}

std::string Join(const std::vector<int32_t>& ids) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? "," : "") << ids[i];
  out << "]";
  return out.str();
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, EveryLineMatchesIdsAndDecodedText) {
  const std::string family = GetParam();
  const Tokenizer& tokenizer = Load(family);
  const std::string path = kGoldenDir + "/dev-" + family + ".jsonl";
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot open " << path;
  std::string line;
  int line_number = 0, matched = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const nlohmann::json golden = nlohmann::json::parse(line);
    const std::string text = golden.at("text").get<std::string>();
    const std::vector<int32_t> want_ids = golden.at("ids").get<std::vector<int32_t>>();
    const std::string want_decoded = golden.at("decoded").get<std::string>();

    StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << path << ":" << line_number << ": " << ids.status().ToString();
    StatusOr<std::string> decoded = tokenizer.Decode(want_ids, /*skip_special_tokens=*/false);
    ASSERT_TRUE(decoded.ok()) << path << ":" << line_number << ": " << decoded.status().ToString();
    const bool ok = *ids == want_ids && *decoded == want_decoded;
    matched += ok;
    EXPECT_EQ(Join(*ids), Join(want_ids)) << path << ":" << line_number << " text: " << text;
    EXPECT_EQ(*decoded, want_decoded) << path << ":" << line_number << " text: " << text;
  }
  EXPECT_GT(line_number, 0) << path << " is empty";
  std::printf("%s: %d/%d golden lines matched\n", family.c_str(), matched, line_number);
}

INSTANTIATE_TEST_SUITE_P(Families, GoldenTest, ::testing::Values("llama-3.1", "qwen3", "gemma3"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = std::isalnum(c) ? c : '_';
                           return name;
                         });

TEST(TokenizerTest, SpecialTokensAndVocab) {
  const Tokenizer& llama = Load("llama-3.1");
  EXPECT_EQ(llama.vocab_size(), 128256);
  EXPECT_EQ(llama.bos_id(), 128000);
  EXPECT_EQ(llama.eos_id(), 128009);  // <|eot_id|> from tokenizer_config.json
  EXPECT_EQ(llama.TokenToId("<|begin_of_text|>"), 128000);
  EXPECT_EQ(llama.IdToToken(9906), "Hello");
  EXPECT_FALSE(llama.IdToToken(-1).has_value());
  EXPECT_FALSE(llama.TokenToId("no such token").has_value());

  StatusOr<std::vector<int32_t>> with_bos = llama.Encode("Hello", /*add_special_tokens=*/true);
  ASSERT_TRUE(with_bos.ok());
  EXPECT_EQ(*with_bos, (std::vector<int32_t>{128000, 9906}));
  StatusOr<std::string> skipped = llama.Decode(*with_bos, /*skip_special_tokens=*/true);
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(*skipped, "Hello");

  const Tokenizer& qwen = Load("qwen3");
  EXPECT_FALSE(qwen.bos_id().has_value());
  EXPECT_EQ(qwen.eos_id(), qwen.TokenToId("<|im_end|>"));
  StatusOr<std::vector<int32_t>> no_bos = qwen.Encode("Hello", /*add_special_tokens=*/true);
  ASSERT_TRUE(no_bos.ok());
  EXPECT_EQ(no_bos->size(), 1u);

  const Tokenizer& gemma = Load("gemma3");
  StatusOr<std::vector<int32_t>> gemma_bos = gemma.Encode("Hi", /*add_special_tokens=*/true);
  ASSERT_TRUE(gemma_bos.ok());
  ASSERT_FALSE(gemma_bos->empty());
  EXPECT_EQ((*gemma_bos)[0], gemma.bos_id());
}

TEST(TokenizerTest, QwenNormalizesToNfcAndLlamaDoesNot) {
  const std::string decomposed = "cafe\xCC\x81 Zu\xCC\x88rich";  // e + U+0301, u + U+0308
  const std::string composed = "caf\xC3\xA9 Z\xC3\xBCrich";
  const Tokenizer& qwen = Load("qwen3");
  StatusOr<std::vector<int32_t>> ids = qwen.Encode(decomposed, false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, *qwen.Encode(composed, false));
  EXPECT_EQ(*qwen.Decode(*ids, false), composed);

  const Tokenizer& llama = Load("llama-3.1");
  ids = llama.Encode(decomposed, false);
  ASSERT_TRUE(ids.ok());
  EXPECT_NE(*ids, *llama.Encode(composed, false));
  EXPECT_EQ(*llama.Decode(*ids, false), decomposed);
}

TEST(TokenizerTest, InvalidUtf8IsAnErrorNamingTheOffset) {
  for (const std::string family : {"llama-3.1", "qwen3", "gemma3"}) {
    const Tokenizer& tokenizer = Load(family);
    for (const std::string& bad : {std::string("abc\xFF"), std::string("abc\xE2\x82"),
                                   std::string("abc\xED\xA0\x80"), std::string("abc\xC0\xAF")}) {
      StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(bad, false);
      ASSERT_FALSE(ids.ok()) << family;
      EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(ids.status().message().find("offset 3"), std::string::npos)
          << ids.status().message();
    }
  }
}

TEST(TokenizerTest, UnknownIdIsAnErrorNamingIt) {
  const Tokenizer& tokenizer = Load("llama-3.1");
  StatusOr<std::string> text = tokenizer.Decode({9906, 999999}, false);
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.status().message().find("999999"), std::string::npos);
  StreamDecoder stream(&tokenizer, false);
  StatusOr<std::string> piece = stream.Feed(-5);
  ASSERT_FALSE(piece.ok());
  EXPECT_NE(piece.status().message().find("-5"), std::string::npos);
}

TEST(StreamDecoderTest, MultiByteCharactersSplitAcrossTokensComeOutWhole) {
  const std::string text =
      "emoji 🤗🦙👩‍👩‍👧 and CJK 你好世界，こんにちは 한국어 done";
  for (const std::string family : {"llama-3.1", "qwen3", "gemma3"}) {
    const Tokenizer& tokenizer = Load(family);
    StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, false);
    ASSERT_TRUE(ids.ok());
    // The test is only meaningful if some token holds part of a character.
    int partial_tokens = 0;
    for (int32_t id : *ids) {
      const std::string_view bytes = *tokenizer.IdToBytes(id);
      partial_tokens += FindInvalidUtf8(bytes) != std::string_view::npos;
    }
    EXPECT_GT(partial_tokens, 0) << family;

    StreamDecoder stream(&tokenizer, false);
    std::string joined;
    for (int32_t id : *ids) {
      StatusOr<std::string> piece = stream.Feed(id);
      ASSERT_TRUE(piece.ok());
      EXPECT_EQ(FindInvalidUtf8(*piece), std::string_view::npos)
          << family << ": partial character emitted for id " << id;
      joined += *piece;
    }
    joined += stream.Flush();
    EXPECT_EQ(joined, text) << family;
  }
}

TEST(StreamDecoderTest, FlushTurnsAnUnfinishedCharacterIntoReplacement) {
  const Tokenizer& tokenizer = Load("llama-3.1");
  StatusOr<std::vector<int32_t>> ids = tokenizer.Encode("🤗", false);
  ASSERT_TRUE(ids.ok());
  ASSERT_GT(ids->size(), 1u);
  StreamDecoder stream(&tokenizer, false);
  StatusOr<std::string> first = stream.Feed((*ids)[0]);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "");
  EXPECT_EQ(stream.Flush(), kReplacementCharacter);
  EXPECT_EQ(stream.Flush(), "");
}

TEST(TokenizerTest, LongInputsEncodeAndRoundTrip) {
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "The quick brown fox 🦊 jumps over 13 lazy dogs.\n";
  text += std::string(100000, ' ');
  for (const std::string family : {"llama-3.1", "qwen3", "gemma3"}) {
    const Tokenizer& tokenizer = Load(family);
    StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, false);
    ASSERT_TRUE(ids.ok()) << family;
    StatusOr<std::string> decoded = tokenizer.Decode(*ids, false);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, text) << family;
  }
}

TEST(TokenizerTest, ConcurrentEncodesAgreeWithSerialOnes) {
  const Tokenizer& tokenizer = Load("qwen3");
  std::vector<std::string> texts;
  for (int i = 0; i < 400; ++i) {
    texts.push_back("request " + std::to_string(i * 7919) + ": héllo wörld 你好 🤗 x" +
                    std::string(i % 7, ' ') + std::to_string(i));
  }
  std::vector<std::vector<int32_t>> serial;
  for (const std::string& text : texts) serial.push_back(*tokenizer.Encode(text, false));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          StatusOr<std::vector<int32_t>> ids =
              tokenizer.Encode(texts[(i + t * 97) % texts.size()], false);
          mismatches[t] += !ids.ok() || *ids != serial[(i + t * 97) % texts.size()];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace df11
