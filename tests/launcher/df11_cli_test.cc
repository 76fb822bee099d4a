// SPDX-License-Identifier: Apache-2.0
// The `df11` command line as a user runs it: the main job (make-tiny, compress, verify, inspect,
// decompress) and the exit status and message for bad flags and bad directories.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace {

using df11::test_support::CommandResult;
using df11::test_support::RunCommand;
using df11::test_support::TempDir;

const std::string kDf11 = std::string(DF11_BINARY_DIR) + "/launcher/df11";

// `df11 ARGS`, stdout and stderr together.
CommandResult Df11(const std::string& args) { return RunCommand(kDf11 + " " + args); }

class Df11Cli : public ::testing::Test {
 protected:
  TempDir tmp_{"df11_cli_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(Df11Cli, MainJob) {
  CommandResult r = Df11(
      "-q make-tiny --arch qwen3 --layers 2 --hidden 128 --heads 4 --kv-heads 2 "
      "--head-dim 64 --vocab-from " DF11_TOKENIZER_DIR "/qwen3 " +
      dir_ + "/m");
  ASSERT_EQ(r.status, 0) << r.output;
  r = Df11("-q compress " + dir_ + "/m " + dir_ + "/m.df11");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("compressed 4 units"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/m.df11/tokenizer.json"));
  r = Df11("-q verify " + dir_ + "/m.df11 " + dir_ + "/m");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("bit-identical"), std::string::npos);
  r = Df11("inspect --json " + dir_ + "/m.df11");
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["total"]["units"], 4);
  r = Df11("-q decompress " + dir_ + "/m.df11 " + dir_ + "/back");
  ASSERT_EQ(r.status, 0) << r.output;
}

// Gemma3ForConditionalGeneration: its language model's layers are coded, the embedding and the
// vision tower stay as they are; verify, decompress and verify again cover every tensor.
TEST_F(Df11Cli, Gemma3MultimodalRoundTrip) {
  CommandResult r = Df11("-q make-tiny --arch gemma3 --layers 3 --sliding-window 4 " + dir_ + "/g");
  ASSERT_EQ(r.status, 0) << r.output;
  r = Df11("-q compress " + dir_ + "/g " + dir_ + "/g.df11");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("compressed 3 units"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/g.df11/language_model_model_layers_2.safetensors"));
  r = Df11("-q verify " + dir_ + "/g.df11 " + dir_ + "/g");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("bit-identical"), std::string::npos) << r.output;
  r = Df11("-q decompress " + dir_ + "/g.df11 " + dir_ + "/back");
  ASSERT_EQ(r.status, 0) << r.output;
  r = Df11("-q verify " + dir_ + "/g.df11 " + dir_ + "/back");
  ASSERT_EQ(r.status, 0) << r.output;
  r = Df11("-q shard " + dir_ + "/g.df11 " + dir_ + "/tp2 --tp 2");
  ASSERT_EQ(r.status, 0) << r.output;
}

TEST_F(Df11Cli, BadFlagsAndInputs) {
  CommandResult r = Df11("");
  EXPECT_NE(r.status, 0);
  r = Df11("frobnicate");
  EXPECT_NE(r.status, 0);
  r = Df11("make-tiny --hidden 0 " + dir_ + "/x");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--hidden"), std::string::npos) << r.output;
  r = Df11("make-tiny --arch gpt2 " + dir_ + "/x");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--arch"), std::string::npos) << r.output;
  r = Df11("compress " + dir_ + "/missing " + dir_ + "/out");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("missing/config.json"), std::string::npos) << r.output;
  r = Df11("verify " + dir_ + " " + dir_);
  EXPECT_NE(r.status, 0);
  r = Df11("compress --threads -3 a b");
  EXPECT_NE(r.status, 0);
  r = Df11("compress --pattern-dict @" + dir_ + "/no-such-file.json a b");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--pattern-dict"), std::string::npos) << r.output;
}

}  // namespace
