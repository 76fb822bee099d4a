// SPDX-License-Identifier: Apache-2.0
// `df11-run generate --speculative prompt-lookup` as a user runs it on one process: a JSONL batch
// (greedy requests that repeat themselves, one that turns speculation off, a sampled one) gives
// the same token ids as without speculation at batch sizes 1 and 8, with drafts accepted; the
// results carry acceptance figures in "usage" (not the opted-out one) and the summary its line;
// a malformed "speculative" field is an error for its line only, and bad flags exit 2 naming
// the flag. `--speculative draft:DIR`: the target itself as draft model has every greedy draft
// accepted, a model of another seed none, both with the same tokens; a draft model with
// another vocabulary, or a sharded one, exits 2 naming it.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace {

using df11::test_support::CommandResult;
using df11::test_support::RunCommandSeparateStderr;
using df11::test_support::TempDir;

const std::string kBin = std::string(DF11_BINARY_DIR) + "/launcher/";
constexpr int kLimitS = 240;

std::map<std::string, nlohmann::json> ReadById(const std::string& path) {
  std::map<std::string, nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    out[j["custom_id"].get<std::string>()] = j;
  }
  return out;
}

class Df11RunSpeculative : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_.emplace("df11_run_speculative");
    dir_ = tmp_->path();
    CommandResult r = RunCommandSeparateStderr(
        kBin + "df11 -q make-tiny --layers 4 --hidden 128 --heads 4 --kv-heads 2 "
               "--intermediate 256 --vocab-from " DF11_TOKENIZER_DIR "/llama-3.1 " + dir_ + "/m",
        kLimitS);
    ASSERT_EQ(r.status, 0) << r.err;
    r = RunCommandSeparateStderr(kBin + "df11 -q compress " + dir_ + "/m " + dir_ + "/m.df11",
                                 kLimitS);
    ASSERT_EQ(r.status, 0) << r.err;
    r = RunCommandSeparateStderr(
        kBin + "df11 -q make-tiny --layers 2 --hidden 64 --heads 4 --kv-heads 2 "
               "--intermediate 128 --vocab-from " DF11_TOKENIZER_DIR "/llama-3.1 --seed 9 " +
               dir_ + "/other",
        kLimitS);
    ASSERT_EQ(r.status, 0) << r.err;
    r = RunCommandSeparateStderr(kBin + "df11 -q make-tiny --vocab 1000 " + dir_ + "/v1000",
                                 kLimitS);
    ASSERT_EQ(r.status, 0) << r.err;
    r = RunCommandSeparateStderr(
        kBin + "df11 -q shard " + dir_ + "/m.df11 " + dir_ + "/m.tp2 --tp 2 --pp 1", kLimitS);
    ASSERT_EQ(r.status, 0) << r.err;
    std::ofstream f(dir_ + "/in.jsonl");
    f << R"({"custom_id": "repeat", "prompt": "Repeat: the cat sat on the mat. the cat sat on )"
         R"(the mat. the cat", "max_tokens": 40})" "\n";
    f << R"({"custom_id": "plain", "prompt": "Once upon a time", "max_tokens": 40})" "\n";
    f << R"({"custom_id": "off", "prompt": "Once upon a time there", "max_tokens": 30, )"
         R"("speculative": false})" "\n";
    f << R"({"custom_id": "sampled", "prompt": "x y z x y z x y", "max_tokens": 30, )"
         R"("temperature": 0.8, "seed": 3})" "\n";
    f << R"({"custom_id": "bad", "prompt": "x", "speculative": 1})" "\n";
  }
  static void TearDownTestSuite() { tmp_.reset(); }

  static CommandResult Generate(const std::string& out, const std::string& flags) {
    return RunCommandSeparateStderr(kBin + "df11-run generate --model " + dir_ +
                                        "/m.df11 --threads 2 --input " + dir_ +
                                        "/in.jsonl --output " + dir_ + "/" + out + " " + flags,
                                    kLimitS);
  }

  static std::optional<TempDir> tmp_;
  static std::string dir_;
};
std::optional<TempDir> Df11RunSpeculative::tmp_;
std::string Df11RunSpeculative::dir_;

TEST_F(Df11RunSpeculative, SameTokensAsWithoutAtBatch1And8WithAcceptanceInUsage) {
  CommandResult plain = Generate("plain.jsonl", "--batch-size 8");
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_EQ(plain.err.find("speculative decoding:"), std::string::npos) << plain.err;
  const auto want = ReadById(dir_ + "/plain.jsonl");
  ASSERT_EQ(want.size(), 5u);
  for (const char* batch : {"1", "8"}) {
    const std::string out = std::string("spec") + batch + ".jsonl";
    CommandResult spec = Generate(out, std::string("--batch-size ") + batch +
                                           " --speculative prompt-lookup");
    ASSERT_EQ(spec.status, 0) << spec.err;
    EXPECT_NE(spec.err.find("drafted tokens accepted"), std::string::npos) << spec.err;
    const auto got = ReadById(dir_ + "/" + out);
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [id, line] : want) {
      EXPECT_EQ(got.at(id).value("token_ids", nlohmann::json()),
                line.value("token_ids", nlohmann::json()))
          << "batch " << batch << " " << id;
    }
    const nlohmann::json& usage = got.at("repeat")["usage"];
    EXPECT_GT(usage["accepted_draft_tokens"].get<int64_t>(), 0) << usage.dump();
    EXPECT_GT(usage["tokens_per_step"].get<double>(), 1.0) << usage.dump();
    EXPECT_GT(usage["acceptance_rate"].get<double>(), 0.0) << usage.dump();
    EXPECT_TRUE(got.at("sampled")["usage"].contains("draft_tokens"));
    EXPECT_FALSE(got.at("off")["usage"].contains("draft_tokens")) << got.at("off").dump();
    EXPECT_FALSE(want.at("repeat")["usage"].contains("draft_tokens"));
    const std::string error = got.at("bad").value("error", "");
    EXPECT_NE(error.find("\"speculative\" = 1: expected true or false"), std::string::npos)
        << error;
  }
}

TEST_F(Df11RunSpeculative, BadFlagsExit2NamingTheFlag) {
  struct Case {
    std::string flags, expect;
  };
  for (const Case& c : {Case{"--speculative lookup", "--speculative"},
                        Case{"--speculative prompt-lookup --num-speculative-tokens 0",
                             "--num-speculative-tokens"},
                        Case{"--speculative prompt-lookup --speculative-ngram 100",
                             "--speculative-ngram"}}) {
    CommandResult r = Generate("never.jsonl", c.flags);
    EXPECT_EQ(r.status, 2) << c.flags << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.flags << "\n" << r.err;
  }
}

TEST_F(Df11RunSpeculative, DraftModelsGiveTheSameTokens) {
  CommandResult plain = Generate("plain-d.jsonl", "--batch-size 4");
  ASSERT_EQ(plain.status, 0) << plain.err;
  const auto want = ReadById(dir_ + "/plain-d.jsonl");
  struct Case {
    std::string draft;
    bool all_greedy_accepted;
  };
  for (const Case& c : {Case{"m.df11", true}, Case{"m", true}, Case{"other", false}}) {
    const std::string out = "draft-" + c.draft + ".jsonl";
    CommandResult spec =
        Generate(out, "--batch-size 4 --speculative draft:" + dir_ + "/" + c.draft);
    ASSERT_EQ(spec.status, 0) << spec.err;
    EXPECT_NE(spec.err.find("loaded draft model"), std::string::npos) << spec.err;
    const auto got = ReadById(dir_ + "/" + out);
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [id, line] : want) {
      EXPECT_EQ(got.at(id).value("token_ids", nlohmann::json()),
                line.value("token_ids", nlohmann::json()))
          << c.draft << " " << id;
    }
    for (const char* id : {"repeat", "plain"}) {
      const nlohmann::json& usage = got.at(id)["usage"];
      EXPECT_GT(usage["draft_tokens"].get<int64_t>(), 0) << c.draft << " " << usage.dump();
      EXPECT_EQ(usage["accepted_draft_tokens"] == usage["draft_tokens"], c.all_greedy_accepted)
          << c.draft << " " << usage.dump();
    }
  }
}

TEST_F(Df11RunSpeculative, UnfitDraftModelsExit2NamingThem) {
  CommandResult vocab = Generate("never.jsonl", "--speculative draft:" + dir_ + "/v1000");
  EXPECT_EQ(vocab.status, 2) << vocab.err;
  EXPECT_NE(vocab.err.find("draft:" + dir_ + "/v1000: config.json has vocab_size 1000"),
            std::string::npos)
      << vocab.err;
  CommandResult sharded = Generate("never.jsonl", "--speculative draft:" + dir_ + "/m.tp2");
  EXPECT_EQ(sharded.status, 2) << sharded.err;
  EXPECT_NE(sharded.err.find("a sharded model directory"), std::string::npos) << sharded.err;
  CommandResult empty = Generate("never.jsonl", "--speculative draft:");
  EXPECT_EQ(empty.status, 2) << empty.err;
  EXPECT_NE(empty.err.find("expected prompt-lookup or draft:DIR"), std::string::npos) << empty.err;
}

}  // namespace
