// SPDX-License-Identifier: Apache-2.0
// ReadBatchInput: OpenAI batch lines and plain lines become items; each bad line gets its own
// error naming the line and the field, and the lines around it are unaffected.
#include "launcher/control/batch_input.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace df11 {
namespace {

std::vector<BatchInputLine> Read(const std::string& text) {
  std::istringstream in(text);
  return ReadBatchInput(in);
}

TEST(BatchInput, AcceptsOpenAiAndPlainLines) {
  auto lines = Read(
      R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "hi", "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "seed": 7, "stop": ["\n"]}})"
      "\n\n"
      R"({"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}})"
      "\n"
      R"({"prompt": "plain", "max_tokens": 2, "stop": "."})"
      "\n");
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& l : lines) EXPECT_EQ(l.error, "") << l.line_number;
  EXPECT_EQ(lines[0].custom_id, "a");
  EXPECT_EQ(lines[1].custom_id, "b");
  EXPECT_EQ(lines[2].line_number, 4);
  EXPECT_EQ(lines[2].custom_id, "line-4");
  auto j = nlohmann::json::parse(lines[2].request_json);
  EXPECT_EQ(j["custom_id"], "line-4");  // the worker sees the id the results will carry
  EXPECT_EQ(j["prompt"], "plain");
  EXPECT_EQ(nlohmann::json::parse(lines[0].request_json)["body"]["seed"], 7);
}

TEST(BatchInput, ReportsEachBadLine) {
  auto lines = Read(
      "not json\n"
      R"({"custom_id": "x", "url": "/v1/embeddings", "body": {"input": "a"}})"
      "\n"
      R"({"custom_id": "y", "url": "/v1/completions", "body": {"messages": []}})"
      "\n"
      R"({"custom_id": "z", "prompt": "ok", "max_tokens": 0})"
      "\n"
      R"({"custom_id": "w", "prompt": "ok", "temperature": "hot"})"
      "\n"
      R"({"custom_id": "v", "messages": [{"role": "user"}]})"
      "\n"
      R"({"custom_id": "ok", "prompt": "fine"})"
      "\n"
      R"({"custom_id": "ok", "prompt": "again"})"
      "\n"
      R"({"custom_id": 5, "prompt": "id"})"
      "\n"
      R"({"custom_id": "u", "prompt": "p", "method": "GET", "url": "/v1/completions", "body": {"prompt": "p"}})"
      "\n"
      R"({"custom_id": "t", "prompt": "p", "messages": [{"role": "user", "content": "c"}]})"
      "\n"
      R"({"custom_id": "s", "prompt": "p", "stop": [1]})"
      "\n");
  ASSERT_EQ(lines.size(), 12u);
  const std::vector<std::string> expected = {
      "line 1: not a JSON object",
      "line 2: \"url\" = \"/v1/embeddings\" is not /v1/completions or /v1/chat/completions",
      "line 3: /v1/completions needs \"prompt\"",
      "line 4: \"max_tokens\" = 0: expected an integer >= 1 (new tokens)",
      "line 5: \"temperature\" = \"hot\": expected a number",
      "line 6: messages[0].content must be a string or a list of parts",
      "",
      "line 8: duplicate custom_id \"ok\" (first on line 7)",
      "line 9: \"custom_id\" must be a non-empty string",
      "line 10: \"method\" must be \"POST\"",
      "line 11: needs exactly one of \"prompt\" and \"messages\"",
      "line 12: \"stop\" must be a string or a list of strings",
  };
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(lines[i].error, expected[i]) << i;
  EXPECT_EQ(lines[1].custom_id, "x");
  EXPECT_EQ(lines[0].custom_id, "line-1");
}

// df11-ctl refuses what the worker's sampler cannot serve (the worker's own rules), each line
// keeping its custom_id; values the sampler serves pass, however unusual.
TEST(BatchInput, SamplingRulesAreTheWorkers) {
  auto lines = Read(
      R"({"custom_id": "p0", "prompt": "x", "temperature": 0.7, "top_p": 0})" "\n"
      R"({"custom_id": "inf", "prompt": "x", "temperature": 1e999})" "\n"
      R"({"custom_id": "big", "prompt": "x", "temperature": 1e300})" "\n"
      R"({"custom_id": "rp", "body": {"prompt": "x", "repetition_penalty": 0}, "url": "/v1/completions"})" "\n"
      R"({"custom_id": "k", "prompt": "x", "top_k": 2.5})" "\n"
      R"({"custom_id": "hot", "prompt": "x", "temperature": 250, "top_k": 1e9, "max_tokens": 1e12, "repetition_penalty": 1000})" "\n");
  ASSERT_EQ(lines.size(), 6u);
  const std::vector<std::string> expected = {
      "line 1: \"top_p\" = 0: expected a number in (0, 1] (1: off)",
      "line 2: \"temperature\" = 1e999: out of range (a double holds at most 1.8e308)",
      "line 3: \"temperature\" = 1e+300: out of range (a float holds at most 3.4e38)",
      "line 4: \"repetition_penalty\" = 0: expected a finite number > 0 (1: off)",
      "line 5: \"top_k\" = 2.5: expected a 32-bit integer",
      "",
  };
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(lines[i].error, expected[i]) << i;
  EXPECT_EQ(lines[1].custom_id, "inf");
}

}  // namespace
}  // namespace df11
