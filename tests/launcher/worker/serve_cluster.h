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
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace df11::testing {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline const std::string kBin = std::string(DF11_BINARY_DIR) + "/launcher/";
inline const std::string kRun = kBin + "df11-run";
constexpr char kToken[] = "serve-test-token";

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

struct Result {
  int status = -1;  // exit status; -1 when killed by a signal
  std::string out, err;
  double seconds = 0;
};

// Runs `cmd` under sh (hard-capped at `limit_s`), stdout and stderr captured.
inline Result Sh(const std::string& dir, const std::string& cmd, int limit_s = 120) {
  static int n = 0;
  const std::string out = dir + "/sh" + std::to_string(n) + ".out";
  const std::string err = dir + "/sh" + std::to_string(n++) + ".err";
  const std::string full =
      "timeout -s KILL " + std::to_string(limit_s) + " " + cmd + " >" + out + " 2>" + err;
  const auto start = Clock::now();
  const int raw = std::system(full.c_str());
  Result r;
  r.seconds = Since(start);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
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
    Result r = Sh(dir, kBin + "df11 -q make-tiny --layers 2 --hidden 64 --heads 4 --kv-heads 2 "
                            "--intermediate 128 --seed 5 --vocab-from " DF11_TOKENIZER_DIR
                            "/llama-3.1 " + dir + "/bf16");
    if (r.status != 0) {
      *error = r.err;
      return false;
    }
    auto j = nlohmann::json::parse(ReadFile(dir + "/bf16/config.json"));
    j["max_position_embeddings"] = 128;
    std::ofstream(dir + "/bf16/config.json") << j.dump(2);
    r = Sh(dir, kBin + "df11 -q compress " + dir + "/bf16 " + dir + "/df11");
    if (r.status != 0) *error = r.err;
    return r.status == 0;
  }

  // `dir`: created, with the token file.
  explicit ServeCluster(std::string dir) : dir_(std::move(dir)) {
    fs::create_directories(dir_);
    std::ofstream(dir_ + "/token") << kToken << "\n";
    fs::permissions(dir_ + "/token", fs::perms::owner_read | fs::perms::owner_write);
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

  Result Ctl(const std::string& args) {
    return Sh(dir_, kBin + "df11-ctl --coordinator " + address() + " --token-file " + dir_ +
                        "/token --timeout 10 " + args, 60);
  }
  // Submits `lines` as a job; returns its id.
  std::string Submit(const std::vector<std::string>& lines, const std::string& name) {
    const std::string path = WriteLines(name, lines);
    Result r = Ctl("submit --input " + path);
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded() || !j.contains("id")) {
      ADD_FAILURE() << "submit printed " << r.out << r.err;
      return "";
    }
    return j["id"].get<std::string>();
  }
  nlohmann::json Status(const std::string& job) {
    Result r = Ctl("status " + job);
    auto j = nlohmann::json::parse(r.out, nullptr, false);
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
    Result r = Ctl("results " + job);
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<nlohmann::json> out;
    for (const std::string& line : Lines(r.out)) {
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
