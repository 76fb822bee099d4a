// SPDX-License-Identifier: Apache-2.0
#include "tests/common/command.h"

#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

extern char** environ;

namespace df11::test_support {
namespace {

using Clock = std::chrono::steady_clock;

// An anonymous in-memory file for one output stream (closed on exec in every other child).
int CaptureFile(const char* name) { return memfd_create(name, MFD_CLOEXEC); }

// Everything written to `fd` since it was made; closes it.
std::string ReadAndClose(int fd) {
  std::string text;
  if (lseek(fd, 0, SEEK_SET) == 0) {
    char buf[1 << 16];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) text.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return text;
}

// Waits for `pid`; past `limit_s` (if > 0) kills its process group. Returns the wait status.
int Wait(pid_t pid, int limit_s, bool* timed_out) {
  int raw = 0;
  if (limit_s <= 0) {
    while (waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
    }
    return raw;
  }
  const auto deadline = Clock::now() + std::chrono::seconds(limit_s);
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    const pid_t done = waitpid(pid, &raw, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) return raw;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
  *timed_out = true;
  kill(-pid, SIGKILL);
  while (waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
  }
  return raw;
}

CommandResult Run(const std::string& command, bool merge_stderr, int limit_s) {
  CommandResult r;
  const int out = CaptureFile("stdout");
  const int err = merge_stderr ? out : CaptureFile("stderr");
  if (out < 0 || err < 0) {
    r.output = std::string("cannot capture the output of `") + command + "`: " + strerror(errno);
    if (out >= 0) close(out);
    return r;
  }
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_adddup2(&files, out, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&files, err, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (limit_s > 0) {
    // Its own process group, so that the limit ends everything it started.
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  char* const argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"),
                        const_cast<char*>(command.c_str()), nullptr};
  const auto start = Clock::now();
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, "/bin/sh", &files, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  if (spawned != 0) {
    r.output = std::string("cannot start /bin/sh for `") + command + "`: " + strerror(spawned);
    close(out);
    if (!merge_stderr) close(err);
    return r;
  }
  const int raw = Wait(pid, limit_s, &r.timed_out);
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (WIFEXITED(raw)) r.status = WEXITSTATUS(raw);
  if (WIFSIGNALED(raw)) r.status = 128 + WTERMSIG(raw);
  r.signal = r.status > 128 && r.status < 128 + NSIG ? r.status - 128 : 0;
  r.output = ReadAndClose(out);
  if (!merge_stderr) r.err = ReadAndClose(err);
  return r;
}

}  // namespace

CommandResult RunCommand(const std::string& command, int limit_s) {
  return Run(command, /*merge_stderr=*/true, limit_s);
}

CommandResult RunCommandSeparateStderr(const std::string& command, int limit_s) {
  return Run(command, /*merge_stderr=*/false, limit_s);
}

}  // namespace df11::test_support
