// SPDX-License-Identifier: Apache-2.0
// Test helpers for df11-run serve end to end: a tiny DF11 model (and shards), a real
// df11-coordinator child process, df11-ctl calls, and worker groups (df11-run serve, alone or
// under mpirun) as child processes whose exit is timed.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace df11::testing {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using test_support::CommandResult;
using test_support::RunCommandSeparateStderr;

inline const std::string kBin = std::string(DF11_BINARY_DIR) + "/launcher/";
inline const std::string kRun = kBin + "df11-run";
constexpr char kToken[] = "serve-test-token";
// A command of these tests that runs longer is killed (a hang fails the test, not ctest).
constexpr int kCommandLimitS = 120;

inline double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// A child process (sh -c cmd) with output in `log`.
struct Child {
  pid_t pid = -1;
  std::string log;
  Clock::time_point started;

  static Child Start(const std::string& cmd, const std::string& log) {
    Child c;
    c.log = log;
    c.started = Clock::now();
    c.pid = fork();
    if (c.pid == 0) {
      setpgid(0, 0);  // its own process group, so the whole tree can be killed
      FILE* out = std::fopen(log.c_str(), "a");
      dup2(fileno(out), 1);
      dup2(fileno(out), 2);
      execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    return c;
  }
  // Waits up to `limit_s`; returns the exit status (-1 for a signal, -2 on timeout: then killed).
  int Wait(double limit_s) {
    if (pid <= 0) return -3;
    const auto start = Clock::now();
    for (;;) {
      int raw = 0;
      const pid_t r = waitpid(pid, &raw, WNOHANG);
      if (r == pid) {
        pid = -1;
        return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
      }
      if (Since(start) > limit_s) {
        Kill();
        return -2;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void Kill() {
    if (pid <= 0) return;
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
  std::string Output() const { return ReadFile(log); }
};

// A test directory with a tiny model, a coordinator and df11-ctl.
class ServeCluster {
 public:
  // Makes the tiny BF16 model (context 128, so a long prompt fails) and its DF11 form (dir/df11).
  static bool MakeModel(const std::string& dir, std::string* error) {
    CommandResult r = RunCommandSeparateStderr(
        kBin +
            "df11 -q make-tiny --layers 2 --hidden 64 --heads 4 --kv-heads 2 "
            "--intermediate 128 --seed 5 --vocab-from " DF11_TOKENIZER_DIR "/llama-3.1 " +
            dir + "/bf16",
        kCommandLimitS);
    if (r.status != 0) {
      *error = r.err;
      return false;
    }
    auto j = nlohmann::json::parse(ReadFile(dir + "/bf16/config.json"));
    j["max_position_embeddings"] = 128;
    std::ofstream(dir + "/bf16/config.json") << j.dump(2);
    r = RunCommandSeparateStderr(kBin + "df11 -q compress " + dir + "/bf16 " + dir + "/df11",
                                 kCommandLimitS);
    if (r.status != 0) *error = r.err;
    return r.status == 0;
  }

  // `dir`: created, with the token file.
  explicit ServeCluster(std::string dir) : dir_(std::move(dir)) {
    fs::create_directories(dir_);
    test_support::WriteOwnerOnlyFile(dir_ + "/token", std::string(kToken) + "\n");
  }
  const std::string& dir() const { return dir_; }
  ~ServeCluster() { coordinator_.Kill(); }

  // Starts df11-coordinator on `port` (0: a free one) over dir/jobs.db; waits until it listens.
  void StartCoordinator(int lease_s, int port = 0) {
    const std::string port_file = dir_ + "/port";
    fs::remove(port_file);
    coordinator_ = Child::Start(kBin + "df11-coordinator --db " + dir_ + "/jobs.db --port " +
                                    std::to_string(port) + " --port-file " + port_file +
                                    " --token-file " + dir_ + "/token --lease-seconds " +
                                    std::to_string(lease_s),
                                dir_ + "/coordinator.log");
    for (int i = 0; i < 400 && !fs::exists(port_file); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    std::ifstream in(port_file);
    ASSERT_TRUE(in >> port_) << "coordinator did not start:\n" << ReadFile(dir_ + "/coordinator.log");
  }
  void KillCoordinator() { coordinator_.Kill(); }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  CommandResult Ctl(const std::string& args) {
    return RunCommandSeparateStderr(kBin + "df11-ctl --coordinator " + address() +
                                        " --token-file " + dir_ + "/token --timeout 10 " + args,
                                    60);
  }
  // Submits `lines` as a job; returns its id.
  std::string Submit(const std::vector<std::string>& lines, const std::string& name) {
    const std::string path = WriteLines(name, lines);
    CommandResult r = Ctl("submit --input " + path);
    EXPECT_EQ(r.status, 0) << r.output << r.err;
    auto j = nlohmann::json::parse(r.output, nullptr, false);
    if (j.is_discarded() || !j.contains("id")) {
      ADD_FAILURE() << "submit printed " << r.output << r.err;
      return "";
    }
    return j["id"].get<std::string>();
  }
  nlohmann::json Status(const std::string& job) {
    CommandResult r = Ctl("status " + job);
    auto j = nlohmann::json::parse(r.output, nullptr, false);
    return j.is_discarded() ? nlohmann::json{{"state", "UNREACHABLE"}, {"items_done", 0}} : j;
  }
  // Polls until the job is DONE (or FAILED/CANCELLED) or `limit_s` passes; returns its status.
  nlohmann::json WaitFinished(const std::string& job, double limit_s) {
    const auto start = Clock::now();
    nlohmann::json s;
    while (Since(start) < limit_s) {
      s = Status(job);
      const std::string state = s.value("state", "");
      if (state == "DONE" || state == "FAILED" || state == "CANCELLED") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return s;
  }
  // Polls until at least `n` items of the job are finished.
  bool WaitItems(const std::string& job, int64_t n, double limit_s) {
    const auto start = Clock::now();
    while (Since(start) < limit_s) {
      nlohmann::json s = Status(job);
      if (s.value("items_done", int64_t{0}) + s.value("items_failed", int64_t{0}) >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // The job's result lines (df11-ctl results), and how often each custom_id occurs.
  std::vector<nlohmann::json> Results(const std::string& job, std::map<std::string, int>* count) {
    CommandResult r = Ctl("results " + job);
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<nlohmann::json> out;
    for (const std::string& line : Lines(r.output)) {
      out.push_back(nlohmann::json::parse(line));
      ++(*count)[out.back()["custom_id"].get<std::string>()];
    }
    return out;
  }

  std::string WriteLines(const std::string& name, const std::vector<std::string>& lines) {
    const std::string path = dir_ + "/" + name;
    std::ofstream f(path);
    for (const auto& l : lines) f << l << "\n";
    return path;
  }
  // `df11-run serve` arguments for this coordinator.
  std::string ServeArgs(const std::string& model, const std::string& extra) const {
    return "serve --model " + model + " --coordinator " + address() + " --token-file " + dir_ +
           "/token --threads 1 " + extra;
  }

 private:
  std::string dir_;
  Child coordinator_;
  int port_ = 0;
};

// A suite whose tests share one tiny model (ServeCluster::MakeModel) in dir_, a temporary
// directory made before the suite's first test and removed after its last.
class TinyModelSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_.emplace(std::string("df11_") +
                 ::testing::UnitTest::GetInstance()->current_test_suite()->name());
    dir_ = tmp_->path();
    std::string error;
    ASSERT_TRUE(ServeCluster::MakeModel(dir_, &error)) << error;
  }
  static void TearDownTestSuite() { tmp_.reset(); }

  // A fresh directory name for the running test: dir_/<test name>.
  static std::string TestDir() {
    return dir_ + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  // Writes `lines` to dir_/name, one a line; returns the path.
  static std::string Write(const std::string& name, const std::vector<std::string>& lines) {
    const std::string path = dir_ + "/" + name;
    std::ofstream f(path);
    for (const auto& l : lines) f << l << "\n";
    return path;
  }

  static inline std::optional<test_support::TempDir> tmp_;
  static inline std::string dir_;
};

// `df11-run generate` output lines by custom_id.
inline std::map<std::string, nlohmann::json> ByCustomId(const std::string& text) {
  std::map<std::string, nlohmann::json> out;
  for (const std::string& line : Lines(text)) {
    auto j = nlohmann::json::parse(line);
    out[j["custom_id"].get<std::string>()] = j;
  }
  return out;
}

// Batch lines "<prefix>N" asking for `tokens` tokens each.
inline std::vector<std::string> ManyLines(const std::string& prefix, int n, int tokens) {
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i) {
    lines.push_back(R"({"custom_id": ")" + prefix + std::to_string(i) +
                    R"(", "prompt": "Item number )" + std::to_string(i) +
                    R"( says", "max_tokens": )" + std::to_string(tokens) + "}");
  }
  return lines;
}

// Every `ids` custom_id exactly once in `count`, nothing else.
inline void ExpectExactlyOnce(const std::map<std::string, int>& count,
                              const std::vector<std::string>& ids) {
  EXPECT_EQ(count.size(), ids.size());
  for (const std::string& id : ids) {
    auto it = count.find(id);
    EXPECT_TRUE(it != count.end() && it->second == 1)
        << id << " occurs " << (it == count.end() ? 0 : it->second) << " times";
  }
}

}  // namespace df11::testing
