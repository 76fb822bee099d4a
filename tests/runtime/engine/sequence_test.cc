// SPDX-License-Identifier: Apache-2.0
// A running sequence with the real Llama 3.1 tokenizer: its text is the decoding of its tokens
// however it ends — at an end-of-sequence id, at the length limit — also when the last token
// leaves a character unfinished (U+FFFD, as Tokenizer::Decode); a stop string cuts the text
// before it and ends the sequence; prompt tokens are fed in chunks before the first new token.
#include <gtest/gtest.h>

#include "runtime/engine/sequence.h"

namespace df11 {
namespace {

const std::string kLlamaTokenizer = std::string(DF11_TOKENIZER_DIR) + "/llama-3.1";

class SequenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = Tokenizer::FromDirectory(kLlamaTokenizer);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tokenizer_.emplace(std::move(t).value());
    ASSERT_TRUE(tokenizer_->eos_id().has_value());
    eos_ = {*tokenizer_->eos_id()};
    request_.prompt = {791, 13180, 374};
    request_.max_tokens = 8;
  }
  // The ids of `text` without special tokens.
  std::vector<int32_t> Ids(const std::string& text) {
    auto ids = tokenizer_->Encode(text, false);
    EXPECT_TRUE(ids.ok()) << ids.status().ToString();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }
  std::string Decoded(const std::vector<int32_t>& ids) {
    auto text = tokenizer_->Decode(ids, true);
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    return text.ok() ? *text : "";
  }

  std::optional<Tokenizer> tokenizer_;
  std::vector<int32_t> eos_;
  GenerationRequest request_;
};

// A four-byte character is several byte-level tokens: its first token alone is no character.
TEST_F(SequenceTest, TextIsTheDecodingOfTheTokensHoweverTheSequenceEnds) {
  const std::vector<int32_t> clef = Ids("\xF0\x9D\x84\x9E");  // U+1D11E
  ASSERT_GE(clef.size(), 2u);
  const std::vector<int32_t> generated = {Ids(" Hello")[0], clef[0]};
  const std::string expected = Decoded(generated);
  ASSERT_NE(expected.find("\xEF\xBF\xBD"), std::string::npos) << expected;  // U+FFFD

  RunningSequence at_eos(0, request_, 8, KvCache(), &*tokenizer_);
  for (int32_t t : generated) at_eos.TakeToken(t, eos_, {});
  EXPECT_FALSE(at_eos.done());
  at_eos.TakeToken(eos_[0], eos_, {});
  ASSERT_TRUE(at_eos.done());
  EXPECT_EQ(at_eos.result().finish_reason, "stop");
  EXPECT_EQ(at_eos.result().tokens, generated);
  EXPECT_EQ(at_eos.result().text, expected);

  RunningSequence at_length(1, request_, 2, KvCache(), &*tokenizer_);
  for (int32_t t : generated) at_length.TakeToken(t, eos_, {});
  ASSERT_TRUE(at_length.done());
  EXPECT_EQ(at_length.result().finish_reason, "length");
  EXPECT_EQ(at_length.result().text, expected);
}

TEST_F(SequenceTest, StopStringCutsTheTextAndEndsTheSequence) {
  request_.stop = {"lazy"};
  RunningSequence s(0, request_, 8, KvCache(), &*tokenizer_);
  const std::vector<int32_t> ids = Ids(" the quick lazy dog");
  size_t taken = 0;
  while (!s.done() && taken < ids.size()) s.TakeToken(ids[taken++], eos_, request_.stop);
  ASSERT_TRUE(s.done());
  EXPECT_LT(taken, ids.size());
  EXPECT_EQ(s.result().finish_reason, "stop");
  EXPECT_EQ(s.result().text, " the quick ");
}

TEST_F(SequenceTest, PromptIsFedInChunksThenOneTokenAStep) {
  RunningSequence s(3, request_, 8, KvCache(), nullptr);
  EXPECT_EQ(s.index(), 3u);
  EXPECT_EQ(s.kv_reservation(), 3 + 8);
  EXPECT_FALSE(s.decoding());
  EXPECT_EQ(s.unfed(), 3);
  SequenceStep first = s.Feed(2);
  EXPECT_EQ(std::vector<int32_t>(first.tokens.begin(), first.tokens.end()),
            (std::vector<int32_t>{791, 13180}));
  EXPECT_FALSE(s.CompletesWith(2));
  s.Fed(2);
  EXPECT_EQ(s.unfed(), 1);
  EXPECT_TRUE(s.CompletesWith(1));
  s.TakeToken(42, eos_, {});
  EXPECT_TRUE(s.decoding());
  EXPECT_EQ(s.unfed(), 1);
  EXPECT_EQ(s.Feed(1).tokens[0], 42);
  EXPECT_EQ(s.history(), (std::vector<int32_t>{791, 13180, 374, 42}));
  EXPECT_TRUE(s.result().text.empty());  // no tokenizer: ids only
}

}  // namespace
}  // namespace df11
