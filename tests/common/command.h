// SPDX-License-Identifier: Apache-2.0
// Running a shell command from a test, as a user would type it: `/bin/sh -c COMMAND`, its output
// captured and its exit status decoded. RunCommand keeps stdout and stderr together (as a terminal
// shows them); RunCommandSeparateStderr keeps them apart. Either may bound the run: past the
// limit the command's whole process group is killed. Safe to call from several threads.
#pragma once

#include <string>

namespace df11::test_support {

struct CommandResult {
  // The status the shell reports, as `$?` shows it: the exit code, or 128 + N when the command
  // (or the shell itself) was killed by signal N (139 for a segmentation fault, 137 for SIGKILL).
  int status = -1;
  // N when the status says "killed by signal N" (128 < status < 128 + NSIG), else 0.
  int signal = 0;
  // The limit passed and the command was killed (status 137, signal 9).
  bool timed_out = false;
  std::string output;  // stdout; with RunCommand, stderr too, interleaved as written
  std::string err;     // stderr, with RunCommandSeparateStderr; empty with RunCommand
  double seconds = 0;  // wall-clock time the command ran
};

// No limit on how long a command may run.
constexpr int kNoTimeLimit = 0;

// Runs `command` with stdout and stderr both in `output`. With `limit_s` > 0 the command runs in
// its own process group, killed with SIGKILL after `limit_s` seconds.
CommandResult RunCommand(const std::string& command, int limit_s = kNoTimeLimit);

// Runs `command` with stdout in `output` and stderr in `err`; `limit_s` as for RunCommand.
CommandResult RunCommandSeparateStderr(const std::string& command, int limit_s = kNoTimeLimit);

}  // namespace df11::test_support
