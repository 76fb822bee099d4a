// SPDX-License-Identifier: Apache-2.0
// RunCommand and RunCommandSeparateStderr as the tests use them: output captured whole (merged or
// apart), the exit code, a crash read as its signal, and a time limit that ends the command and
// everything it started.
#include "tests/common/command.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

namespace df11::test_support {
namespace {

TEST(RunCommand, KeepsStdoutAndStderrTogetherInOrder) {
  CommandResult r = RunCommand("echo one; echo two >&2; echo three");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.signal, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.output, "one\ntwo\nthree\n");
  EXPECT_EQ(r.err, "");
}

TEST(RunCommand, SeparateStderrKeepsThemApart) {
  CommandResult r = RunCommandSeparateStderr("echo one; echo two >&2; echo three; exit 4");
  EXPECT_EQ(r.status, 4);
  EXPECT_EQ(r.output, "one\nthree\n");
  EXPECT_EQ(r.err, "two\n");
}

TEST(RunCommand, ExitCodesAndMissingCommands) {
  EXPECT_EQ(RunCommand("exit 3").status, 3);
  EXPECT_EQ(RunCommand("exit 255").signal, 0);
  CommandResult missing = RunCommand("df11-no-such-command --flag");
  EXPECT_EQ(missing.status, 127);
  EXPECT_NE(missing.output.find("not found"), std::string::npos) << missing.output;
}

TEST(RunCommand, CrashIsReadAsItsSignal) {
  // A program killed by SIGSEGV, and the shell itself killed by SIGABRT.
  CommandResult child = RunCommand("sh -c 'kill -SEGV $$'");
  EXPECT_EQ(child.status, 128 + SIGSEGV);
  EXPECT_EQ(child.signal, SIGSEGV);
  CommandResult shell = RunCommand("kill -ABRT $$");
  EXPECT_EQ(shell.status, 128 + SIGABRT);
  EXPECT_EQ(shell.signal, SIGABRT);
}

TEST(RunCommand, OutputLargerThanAPipeIsCapturedWhole) {
  CommandResult r = RunCommandSeparateStderr(
      "head -c 3000000 /dev/zero | tr '\\0' a; "
      "head -c 2000000 /dev/zero | tr '\\0' b >&2");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output, std::string(3000000, 'a'));
  EXPECT_EQ(r.err, std::string(2000000, 'b'));
}

// "R"unning, "S"leeping, ...; "" once the process is gone or a zombie.
std::string LiveState(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string stat;
  std::getline(in, stat);
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return "";
  const std::string state = stat.substr(paren + 2, 1);
  return state == "Z" ? "" : state;
}

TEST(RunCommand, TimeLimitKillsTheCommandAndWhatItStarted) {
  const auto start = std::chrono::steady_clock::now();
  CommandResult r = RunCommand("sleep 60 & echo $!; sleep 60; echo never", 1);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.status, 128 + SIGKILL);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(took, 30.0);
  EXPECT_GE(r.seconds, 1.0);
  // What it printed before the limit is kept; the background sleep is gone too.
  ASSERT_FALSE(r.output.empty());
  EXPECT_EQ(r.output.find("never"), std::string::npos) << r.output;
  const std::string background = r.output.substr(0, r.output.find('\n'));
  std::string state = LiveState(background);
  for (int i = 0; i < 100 && !state.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    state = LiveState(background);
  }
  EXPECT_EQ(state, "") << "pid " << background << " still runs";
}

TEST(RunCommand, FinishedWithinTheLimitIsNotTimedOut) {
  CommandResult r = RunCommandSeparateStderr("echo done; exit 2", 60);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.output, "done\n");
  EXPECT_LT(r.seconds, 30.0);
}

}  // namespace
}  // namespace df11::test_support
