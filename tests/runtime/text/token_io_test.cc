// SPDX-License-Identifier: Apache-2.0
// TokenizeJsonl / DetokenizeJsonl with the Llama 3.1 tokenizer: the golden texts of
// tests/data/tokenizers/golden/dev-llama-3.1.jsonl go through both directions unchanged, and bad
// lines become per-line errors while the other lines still convert.
#include "runtime/text/token_io.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace df11 {
namespace {

const std::string kTokenizerDir = DF11_TOKENIZER_DIR;
const std::string kGoldenDir = DF11_TEST_DATA_DIR "/tokenizers/golden";

const Tokenizer& Llama() {
  static const Tokenizer* tokenizer = [] {
    StatusOr<Tokenizer> t = Tokenizer::FromDirectory(kTokenizerDir + "/llama-3.1");
    if (!t.ok()) {
      std::fprintf(stderr, "cannot load the llama-3.1 tokenizer: %s\n",
                   t.status().ToString().c_str());
      std::abort();
    }
    return new Tokenizer(std::move(t).value());
  }();
  return *tokenizer;
}

std::vector<nlohmann::json> ParseLines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(TokenIoTest, GoldenTextsRoundTrip) {
  std::ifstream golden(kGoldenDir + "/dev-llama-3.1.jsonl");
  ASSERT_TRUE(golden);
  std::vector<nlohmann::json> expected;
  std::string input, line;
  while (std::getline(golden, line)) {
    expected.push_back(nlohmann::json::parse(line));
    input += nlohmann::json{{"text", expected.back()["text"]}}.dump() + "\n";
  }
  ASSERT_GT(expected.size(), 10u);

  std::istringstream text_in(input);
  std::ostringstream ids_out;
  ASSERT_TRUE(TokenizeJsonl(Llama(), text_in, ids_out, /*bos=*/false).ok());
  const std::vector<nlohmann::json> ids = ParseLines(ids_out.str());
  ASSERT_EQ(ids.size(), expected.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(ids[i], nlohmann::json({{"ids", expected[i]["ids"]}})) << "line " << i + 1;
  }

  std::istringstream ids_in(ids_out.str());
  std::ostringstream text_out;
  ASSERT_TRUE(DetokenizeJsonl(Llama(), ids_in, text_out).ok());
  const std::vector<nlohmann::json> texts = ParseLines(text_out.str());
  ASSERT_EQ(texts.size(), expected.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(texts[i], nlohmann::json({{"text", expected[i]["decoded"]}})) << "line " << i + 1;
  }
}

TEST(TokenIoTest, BosOnlyWhenAsked) {
  std::istringstream in1("{\"text\": \"Hello\"}\n"), in2("{\"text\": \"Hello\"}\n");
  std::ostringstream plain, with_bos;
  ASSERT_TRUE(TokenizeJsonl(Llama(), in1, plain, false).ok());
  ASSERT_TRUE(TokenizeJsonl(Llama(), in2, with_bos, true).ok());
  EXPECT_EQ(plain.str(), "{\"ids\":[9906]}\n");
  EXPECT_EQ(with_bos.str(), "{\"ids\":[128000,9906]}\n");
}

TEST(TokenIoTest, SpecialTokensSurviveDetokenize) {
  std::istringstream in("{\"ids\": [128000, 9906, 128009]}\n");
  std::ostringstream out;
  ASSERT_TRUE(DetokenizeJsonl(Llama(), in, out).ok());
  EXPECT_EQ(out.str(), "{\"text\":\"<|begin_of_text|>Hello<|eot_id|>\"}\n");
}

// Each output line is either the expected result or an error that starts with "line N:".
void ExpectLines(const std::string& output, const std::vector<std::string>& expected) {
  const std::vector<nlohmann::json> lines = ParseLines(output);
  ASSERT_EQ(lines.size(), expected.size()) << output;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (expected[i].starts_with("line ")) {
      ASSERT_TRUE(lines[i].contains("error")) << lines[i];
      EXPECT_TRUE(lines[i]["error"].get<std::string>().starts_with(expected[i]))
          << lines[i] << " should start with " << expected[i];
    } else {
      EXPECT_EQ(lines[i].dump(), expected[i]);
    }
  }
}

TEST(TokenIoTest, TokenizeReportsBadLinesAndGoesOn) {
  std::istringstream in(
      "{\"text\": \"Hello\"}\n"
      "not json\n"
      "\n"
      "{\"txt\": \"x\"}\n"
      "{\"text\": 5}\n"
      "   \r\n"
      "[\"Hello\"]\n"
      "{\"text\": \"bad \xC3\"}\n"
      "{\"text\": \"\"}\n"
      "{\"text\": \"Hello\"}");  // no final newline
  std::ostringstream out;
  ASSERT_TRUE(TokenizeJsonl(Llama(), in, out, false).ok());
  ExpectLines(out.str(),
              {"{\"ids\":[9906]}", "line 2: not valid JSON", "line 4: \"text\" is missing",
               "line 5: \"text\" must be a string", "line 7: expected a JSON object",
               "line 8: invalid UTF-8", "{\"ids\":[]}", "{\"ids\":[9906]}"});
}

TEST(TokenIoTest, DetokenizeReportsBadLinesAndGoesOn) {
  std::istringstream in(
      "{\"ids\": [9906]}\n"
      "{\"ids\": [9906, \"a\"]}\n"
      "{\"ids\": [999999999]}\n"
      "{\"ids\": [-1]}\n"
      "{\"ids\": [1.5]}\n"
      "{\"ids\": 9906}\n"
      "{\"text\": \"Hello\"}\n"
      "{\"ids\": [9906, 128256]}\n"
      "{\"ids\": []}\n");
  std::ostringstream out;
  ASSERT_TRUE(DetokenizeJsonl(Llama(), in, out).ok());
  ExpectLines(out.str(),
              {"{\"text\":\"Hello\"}", "line 2: ids[1] must be an integer",
               "line 3: ids[0] = 999999999 is not a token id", "line 4: ids[0] = -1 is not",
               "line 5: ids[0] must be an integer", "line 6: \"ids\" must be an array",
               "line 7: \"ids\" is missing", "line 8: ids[1] = 128256 is not", "{\"text\":\"\"}"});
}

TEST(TokenIoTest, FailedOutputStreamIsAnIoError) {
  std::istringstream in("{\"text\": \"Hello\"}\n");
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  EXPECT_EQ(TokenizeJsonl(Llama(), in, out, false).code(), StatusCode::kIoError);
}

}  // namespace
}  // namespace df11
