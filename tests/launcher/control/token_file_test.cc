// SPDX-License-Identifier: Apache-2.0
// The token file check shared by df11-coordinator, df11-ctl and df11-run serve: a file group or
// others may access, or a token shorter than 16 bytes, is refused with exit 2 and a message that
// names the file, its mode or length and what is expected, before anything else happens (no
// port is bound, no coordinator called, no weight read); --allow-insecure-token-file accepts it
// with a warning.
#include "launcher/control/token_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;
using test_support::CommandResult;
using test_support::RunCommand;
using test_support::TempDir;

// Every command here ends within a second or two; a hang is killed.
constexpr int kLimitS = 60;

const std::string kBin = std::string(DF11_BINARY_DIR) + "/launcher/";

class TokenFileTest : public ::testing::Test {
 protected:
  // Writes `content` to dir/name with `mode`; returns the path.
  std::string Write(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << content;
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }
  TempDir tmp_{"df11_token_file_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(TokenFileTest, PrivateLongTokenIsRead) {
  auto token = ReadTokenFile(Write("t", "  0123456789abcdef0123\n", 0600), false);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(*token, "0123456789abcdef0123");
  EXPECT_TRUE(ReadTokenFile(Write("r", "0123456789abcdef", 0400), false).ok());
}

TEST_F(TokenFileTest, ReadableByOthersIsRefusedNamingModeAndFix) {
  for (mode_t mode : {0644, 0640, 0604, 0620, 0602}) {
    const std::string path = Write("t" + std::to_string(mode), "0123456789abcdef0123\n", mode);
    auto token = ReadTokenFile(path, false);
    ASSERT_FALSE(token.ok()) << std::oct << mode;
    EXPECT_EQ(token.status().code(), StatusCode::kInvalidArgument);
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", static_cast<unsigned>(mode));
    const std::string& m = token.status().message();
    EXPECT_NE(m.find("token file " + path + " has mode " + octal), std::string::npos) << m;
    EXPECT_NE(m.find("expected 0600 or stricter"), std::string::npos) << m;
    EXPECT_NE(m.find("--allow-insecure-token-file"), std::string::npos) << m;
    auto accepted = ReadTokenFile(path, true);
    ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
    EXPECT_EQ(*accepted, "0123456789abcdef0123");
  }
}

TEST_F(TokenFileTest, ShortTokenIsRefusedNamingItsLength) {
  const std::string path = Write("short", "abc123\n", 0600);
  auto token = ReadTokenFile(path, false);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(token.status().message().find("token file " + path +
                                          " holds a 6-byte token; "
                                          "expected at least 16 bytes"),
            std::string::npos)
      << token.status().message();
  EXPECT_EQ(*ReadTokenFile(path, true), "abc123");
  // 15 bytes: one short; whitespace around the token does not count.
  EXPECT_FALSE(ReadTokenFile(Write("15", "\n 0123456789abcde \n", 0600), false).ok());
  EXPECT_TRUE(ReadTokenFile(Write("16", "\n 0123456789abcdef \n", 0600), false).ok());
}

TEST_F(TokenFileTest, EmptyMissingOrDirectoryIsRefusedEvenWithTheFlag) {
  EXPECT_EQ(ReadTokenFile(Write("empty", " \n", 0600), true).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadTokenFile(dir_ + "/missing", true).status().code(), StatusCode::kNotFound);
  auto dir = ReadTokenFile(dir_, true);
  EXPECT_EQ(dir.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dir.status().message().find("not a regular file"), std::string::npos);
}

// Each of the three commands refuses an open or short token file with exit 2 before it does
// anything else, and accepts it with the flag.
TEST_F(TokenFileTest, EveryCommandRefusesAnInsecureTokenFileWithExitTwo) {
  const std::string open = Write("open", "0123456789abcdef0123\n", 0644);
  const std::string shrt = Write("short", "abc123\n", 0600);
  const std::string db = dir_ + "/jobs.db";
  const std::string coordinator = kBin + "df11-coordinator --db " + db + " --port 0 --port-file " +
                                  dir_ + "/port --token-file ";
  // Port 1 has no coordinator: a call that gets past the token check fails to connect (exit 1).
  const std::string ctl = kBin + "df11-ctl --coordinator 127.0.0.1:1 --timeout 2 --token-file ";
  // No model there: a serve that gets past the token check fails to load it (exit 1).
  const std::string serve =
      kBin + "df11-run serve --model " + dir_ + "/no-model --coordinator 127.0.0.1:1 --token-file ";
  for (const std::string& file : {open, shrt}) {
    const std::string what = file == open ? "has mode 0644" : "holds a 6-byte token";
    CommandResult c = RunCommand(coordinator + file, kLimitS);
    EXPECT_EQ(c.status, 2) << c.output;
    EXPECT_NE(c.output.find("token file " + file + " " + what), std::string::npos) << c.output;
    EXPECT_FALSE(fs::exists(dir_ + "/port")) << "refused before listening";
    EXPECT_FALSE(fs::exists(db)) << "refused before opening the database";

    CommandResult l = RunCommand(ctl + file + " list", kLimitS);
    EXPECT_EQ(l.status, 2) << l.output;
    EXPECT_NE(l.output.find("token file " + file + " " + what), std::string::npos) << l.output;
    EXPECT_EQ(l.output.find("cannot connect"), std::string::npos) << l.output;
    CommandResult lf = RunCommand(ctl + file + " --allow-insecure-token-file list", kLimitS);
    EXPECT_EQ(lf.status, 1) << lf.output;
    EXPECT_NE(lf.output.find("warning: token file " + file), std::string::npos) << lf.output;
    EXPECT_NE(lf.output.find("cannot connect"), std::string::npos) << lf.output;

    CommandResult s = RunCommand(serve + file, kLimitS);
    EXPECT_EQ(s.status, 2) << s.output;
    EXPECT_NE(s.output.find("token file " + file + " " + what), std::string::npos) << s.output;
    EXPECT_EQ(s.output.find("no-model"), std::string::npos)
        << "refused before the model: " << s.output;
    CommandResult sf = RunCommand(serve + file + " --allow-insecure-token-file", kLimitS);
    EXPECT_EQ(sf.status, 1) << sf.output;
    EXPECT_NE(sf.output.find("no-model"), std::string::npos) << sf.output;
  }
  // With the flag the coordinator starts (and is stopped by SIGTERM at once).
  CommandResult c =
      RunCommand("sh -c '" + coordinator + open +
                     " --allow-insecure-token-file & pid=$!; for i in $(seq 100); do "
                     "[ -s " +
                     dir_ + "/port ] && break; sleep 0.05; done; kill -TERM $pid; wait $pid'",
                 kLimitS);
  EXPECT_EQ(c.status, 0) << c.output;
  EXPECT_NE(c.output.find("warning: token file " + open + " has mode 0644"), std::string::npos)
      << c.output;
  EXPECT_NE(c.output.find("listening on"), std::string::npos) << c.output;
}

}  // namespace
}  // namespace df11
