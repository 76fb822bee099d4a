// SPDX-License-Identifier: Apache-2.0
// df11-coordinator and df11-ctl as a user runs them: the coordinator is killed with SIGKILL while
// a worker (simulated through ControlClient) reports results, restarted on the same database,
// and the job still ends with every item stored exactly once; df11-ctl submits a batch with
// bad lines from standard input, waits for it and writes one result line per item; `submit --wait` outlives a
// coordinator restart and gives up after --reconnect-seconds when it stays away; 1100 idle
// connections (half of them announcing 60 MB frames) neither keep calls with the token out nor
// keep SIGTERM from ending the coordinator, which runs with 1024 descriptors and 3 GiB of
// address space as a constrained machine would give it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "launcher/control/control_client.h"
#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

using test_support::CommandResult;
using test_support::RunCommand;
using test_support::TempDir;
using test_support::WriteOwnerOnlyFile;

constexpr char kToken[] = "process-test-token";

class CoordinatorProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteOwnerOnlyFile(dir_ + "/token", std::string(kToken) + "\n"); }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Starts df11-coordinator on `port` (0: a free one) and waits until it listens. `constrained`:
  // with a soft limit of 1024 open files and (unless built with a sanitizer, which needs the
  // address space) 3 GiB of address space.
  void StartCoordinator(int lease_s, int port = 0, bool constrained = false) {
    const std::string port_file = dir_ + "/port";
    std::filesystem::remove(port_file);
    const std::string lease = std::to_string(lease_s);
    const std::string db = dir_ + "/jobs.db";
    const std::string token = dir_ + "/token";
    const std::string log = dir_ + "/coordinator.log";
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    const std::string port_text = std::to_string(port);
    if (pid_ == 0) {
      FILE* out = std::fopen(log.c_str(), "a");
      dup2(fileno(out), 1);
      dup2(fileno(out), 2);
      if (constrained) {
        rlimit files;
        getrlimit(RLIMIT_NOFILE, &files);
        files.rlim_cur = std::min<rlim_t>(1024, files.rlim_max);
        setrlimit(RLIMIT_NOFILE, &files);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
        const rlimit memory{rlim_t{3} << 30, rlim_t{3} << 30};
        setrlimit(RLIMIT_AS, &memory);
#endif
      }
      execl(DF11_COORDINATOR, DF11_COORDINATOR, "--db", db.c_str(), "--port", port_text.c_str(),
            "--port-file", port_file.c_str(), "--token-file", token.c_str(), "--lease-seconds",
            lease.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 200 && !std::filesystem::exists(port_file); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    std::ifstream in(port_file);
    ASSERT_TRUE(in >> port_) << "coordinator did not start; log:\n" << Log();
  }
  void KillCoordinator() {
    ASSERT_EQ(kill(pid_, SIGKILL), 0);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Sends SIGTERM; returns the exit status, -1 for a signal, -2 if still running after limit_s.
  int TerminateCoordinator(double limit_s) {
    kill(pid_, SIGTERM);
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      int raw = 0;
      if (waitpid(pid_, &raw, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
      }
      if (std::chrono::steady_clock::now() - start > std::chrono::duration<double>(limit_s)) {
        return -2;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::string Log() const {
    std::ifstream in(dir_ + "/coordinator.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  ControlClientOptions Options() const {
    ControlClientOptions o;
    o.port = port_;
    o.token = kToken;
    o.rpc_timeout_ms = 10000;
    return o;
  }

  TempDir tmp_{"df11_coordinator_process_test"};
  const std::string dir_ = tmp_.path();
  pid_t pid_ = -1;
  int port_ = 0;
};

rpc::WorkerGroupInfo OneRankGroup() {
  rpc::WorkerGroupInfo g;
  g.ranks = 1;
  g.hosts = {"localhost"};
  g.devices = {"localhost:cpu"};
  return g;
}

std::map<int64_t, rpc::ItemOutcome> Answer(const std::vector<rpc::Item>& items) {
  std::map<int64_t, rpc::ItemOutcome> results;
  for (const rpc::Item& item : items) {
    results[item.item_id].response_json = nlohmann::json{{"text", item.custom_id}}.dump();
    results[item.item_id].completion_tokens = 1;
  }
  return results;
}

TEST_F(CoordinatorProcessTest, KillNineMidJobThenRestartFinishesEveryItemOnce) {
  constexpr int kItems = 400;
  StartCoordinator(/*lease_s=*/2);
  ControlClient user(Options());
  std::vector<rpc::ItemInput> inputs(kItems);
  for (int i = 0; i < kItems; ++i) {
    inputs[i].custom_id = "req-" + std::to_string(i);
    inputs[i].request_json = "{\"prompt\":\"p\"}";
  }
  auto job = user.SubmitJob(inputs, "restart");
  ASSERT_TRUE(job.ok()) << job.status().ToString();

  // The worker reports in small batches until the coordinator disappears under it.
  std::string group_id;
  std::atomic<int64_t> reported{0};
  std::atomic<bool> worker_done{false};
  std::thread worker([&] {
    ControlClient w(Options());
    auto reg = w.RegisterWorkerGroup(OneRankGroup());
    if (!reg.ok()) {
      ADD_FAILURE() << reg.status().ToString();
      worker_done = true;
      return;
    }
    group_id = reg->group_id;
    for (;;) {
      auto items = w.LeaseWork(group_id, 4);
      if (!items.ok() || items->empty()) break;
      auto reply = w.ReportResults(group_id, Answer(*items));
      if (!reply.ok()) break;
      reported += reply->stored;
    }
    worker_done = true;
  });
  while (reported < 60 && !worker_done) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  KillCoordinator();
  worker.join();
  ASSERT_FALSE(group_id.empty());
  EXPECT_LT(reported.load(), kItems);

  StartCoordinator(/*lease_s=*/2);
  ControlClient w(Options());
  auto before = w.GetJob(job->id);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_GE(before->items_done, reported.load());  // every confirmed report survived
  EXPECT_EQ(before->state, rpc::JobState::RUNNING);
  // The group registered before the crash is still known; leases it held lapse and requeue.
  ASSERT_TRUE(w.Heartbeat(group_id, {}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  int64_t duplicates = 0;
  for (;;) {
    auto items = w.LeaseWork(group_id, 50);
    ASSERT_TRUE(items.ok()) << items.status().ToString();
    if (items->empty()) break;
    auto reply = w.ReportResults(group_id, Answer(*items));
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    auto again = w.ReportResults(group_id, Answer(*items));  // a retried report
    duplicates += again->duplicates;
  }
  EXPECT_GT(duplicates, 0);
  auto done = w.GetJob(job->id);
  EXPECT_EQ(done->state, rpc::JobState::DONE);
  EXPECT_EQ(done->items_done, kItems);
  EXPECT_EQ(done->items_failed, 0);
  std::map<std::string, int> seen;
  for (int64_t offset = 0;;) {
    auto page = w.FetchResults(job->id, offset, 64);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    for (const auto& r : page->results) ++seen[r.custom_id];
    if (page->end_of_job) break;
    offset = page->next_offset;
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(kItems));
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
}

// `df11-ctl ARGS`, stdout and stderr together; a hang is killed after a minute.
CommandResult Ctl(const std::string& args) {
  return RunCommand(std::string(DF11_CTL) + " " + args, 60);
}

TEST_F(CoordinatorProcessTest, CtlSubmitWaitWritesOneLinePerItem) {
  StartCoordinator(/*lease_s=*/30);
  const std::string input = dir_ + "/batch.jsonl";
  std::ofstream(input)
      << R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}})"
         "\n"
      << "[1, 2]\n"
      << R"({"custom_id": "c", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})"
         "\n";
  const std::string flags =
      "--coordinator 127.0.0.1:" + std::to_string(port_) + " --token-file " + dir_ + "/token ";

  std::atomic<bool> stop{false};
  std::thread worker([&] {
    ControlClient w(Options());
    auto reg = w.RegisterWorkerGroup(OneRankGroup());
    while (reg.ok() && !stop) {
      auto items = w.LeaseWork(reg->group_id, 10);
      if (items.ok() && !items->empty()) (void)w.ReportResults(reg->group_id, Answer(*items));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  // The batch comes on standard input.
  CommandResult r = Ctl(flags + "submit --input - --wait --poll-seconds 0.1 --output " + dir_ +
                        "/out.jsonl < " + input);
  stop = true;
  worker.join();
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("line 2: not a JSON object"), std::string::npos) << r.output;
  std::ifstream out(dir_ + "/out.jsonl");
  std::map<std::string, nlohmann::json> by_id;
  for (std::string line; std::getline(out, line);) {
    auto j = nlohmann::json::parse(line);
    by_id[j["custom_id"]] = j;
  }
  ASSERT_EQ(by_id.size(), 3u);
  EXPECT_EQ(by_id["a"]["response"]["body"]["text"], "a");
  EXPECT_EQ(by_id["c"]["response"]["status_code"], 200);
  EXPECT_EQ(by_id["line-2"]["error"]["message"], "line 2: not a JSON object");

  CommandResult list = Ctl(flags + "list");
  ASSERT_EQ(list.status, 0) << list.output;
  auto job = nlohmann::json::parse(list.output);
  EXPECT_EQ(job["state"], "DONE");
  EXPECT_EQ(job["items_done"], 2);
  EXPECT_EQ(job["items_failed"], 1);
  CommandResult status = Ctl(flags + "status " + job["id"].get<std::string>());
  EXPECT_EQ(status.status, 0) << status.output;
  CommandResult results = Ctl(flags + "results " + job["id"].get<std::string>());
  EXPECT_EQ(std::count(results.output.begin(), results.output.end(), '\n'), 3) << results.output;
  CommandResult cluster = Ctl(flags + "cluster");
  ASSERT_EQ(cluster.status, 0) << cluster.output;
  EXPECT_EQ(nlohmann::json::parse(cluster.output)["groups"].size(), 1u);

  CommandResult missing = Ctl(flags + "status job-nope");
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.output.find("Not found"), std::string::npos) << missing.output;
  WriteOwnerOnlyFile(dir_ + "/wrong", "not-the-right-token\n");
  CommandResult wrong = Ctl("--coordinator 127.0.0.1:" + std::to_string(port_) + " --token-file " +
                            dir_ + "/wrong list");
  EXPECT_NE(wrong.status, 0);
  EXPECT_NE(wrong.output.find("Unauthenticated"), std::string::npos) << wrong.output;
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Answers the queue's items until `stop`, ignoring failed calls (the coordinator may be away).
void AnswerUntil(const ControlClientOptions& options, const std::atomic<bool>& stop) {
  ControlClient w(options);
  std::string group_id;
  while (!stop) {
    if (group_id.empty()) {
      auto reg = w.RegisterWorkerGroup(OneRankGroup());
      if (reg.ok()) group_id = reg->group_id;
    } else {
      auto items = w.LeaseWork(group_id, 10);
      if (items.ok() && !items->empty()) (void)w.ReportResults(group_id, Answer(*items));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

TEST_F(CoordinatorProcessTest, CtlWaitOutlivesACoordinatorRestart) {
  StartCoordinator(/*lease_s=*/30);
  const int port = port_;
  const std::string input = dir_ + "/batch.jsonl";
  {
    std::ofstream in(input);
    for (int i = 0; i < 6; ++i)
      in << R"({"custom_id": "r)" << i << R"(", "prompt": "x"})"
         << "\n";
  }
  const std::string flags =
      "--coordinator 127.0.0.1:" + std::to_string(port) + " --token-file " + dir_ + "/token ";
  CommandResult waited;
  std::thread ctl([&] {
    waited = Ctl(flags + "submit --input " + input + " --wait --poll-seconds 0.1 --output " + dir_ +
                 "/out.jsonl");
  });
  // Once the job is in, the coordinator goes away for 3 s (a restart), then a worker serves it.
  ControlClient user(Options());
  for (int i = 0; i < 200; ++i) {
    auto jobs = user.ListJobs();
    if (jobs.ok() && !jobs->empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  KillCoordinator();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  StartCoordinator(/*lease_s=*/30, port);
  std::atomic<bool> stop{false};
  std::thread worker([&] { AnswerUntil(Options(), stop); });
  ctl.join();
  stop = true;
  worker.join();
  ASSERT_EQ(waited.status, 0) << waited.output;
  EXPECT_NE(waited.output.find("out of reach"), std::string::npos) << waited.output;
  EXPECT_NE(waited.output.find("waiting for it to come back, up to 600 s (--reconnect-seconds)"),
            std::string::npos)
      << waited.output;
  EXPECT_NE(waited.output.find("back after"), std::string::npos) << waited.output;
  std::ifstream out(dir_ + "/out.jsonl");
  std::set<std::string> ids;
  for (std::string line; std::getline(out, line);) {
    ids.insert(nlohmann::json::parse(line)["custom_id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), 6u);

  // A coordinator that stays away: --wait gives up after --reconnect-seconds, exit 1, and says
  // where the job is.
  const auto start = std::chrono::steady_clock::now();
  std::thread give_up([&] {
    waited =
        Ctl(flags + "submit --input " + input + " --wait --poll-seconds 0.1 --reconnect-seconds 2");
  });
  for (int i = 0; i < 200; ++i) {
    auto jobs = user.ListJobs();
    if (jobs.ok() && jobs->size() == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  KillCoordinator();
  give_up.join();
  EXPECT_EQ(waited.status, 1) << waited.output;
  EXPECT_LT(SecondsSince(start), 20);
  EXPECT_NE(waited.output.find("(--reconnect-seconds 2): stopped waiting for job"),
            std::string::npos)
      << waited.output;
  EXPECT_NE(waited.output.find("which stays on the coordinator"), std::string::npos)
      << waited.output;
}

// Opens a TCP connection to 127.0.0.1:port that sends nothing, or only a frame size announcing
// a 60 MB frame (and one byte of it); -1 if it could not connect within 2 s.
int IdleConnection(int port, bool announce_large_frame) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const timeval two_s{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &two_s, sizeof(two_s));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  if (announce_large_frame) {
    const uint8_t start[5] = {0x03, 0xC0, 0x00, 0x00, 0x80};  // 60 MB, then a strict header byte
    (void)!send(fd, start, sizeof(start), MSG_NOSIGNAL);
  }
  return fd;
}

TEST_F(CoordinatorProcessTest, IdleConnectionFloodNeitherBlocksCallsNorSigterm) {
  constexpr int kIdle = 1100;
  rlimit files;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &files), 0);
  if (files.rlim_max < kIdle + 200) GTEST_SKIP() << "needs " << kIdle + 200 << " open files";
  files.rlim_cur = std::max<rlim_t>(files.rlim_cur, std::min<rlim_t>(files.rlim_max, 4096));
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &files), 0);
  StartCoordinator(/*lease_s=*/30, /*port=*/0, /*constrained=*/true);
  std::vector<int> idle;
  for (int i = 0; i < kIdle; ++i) {
    const int fd = IdleConnection(port_, i % 2 == 1);
    if (fd >= 0) idle.push_back(fd);
  }
  EXPECT_EQ(idle.size(), static_cast<size_t>(kIdle));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the coordinator takes them all in

  // While they are open, df11-ctl's calls go through within 10 s.
  const std::string flags = "--coordinator 127.0.0.1:" + std::to_string(port_) + " --token-file " +
                            dir_ + "/token --timeout 10 ";
  const std::string input = dir_ + "/batch.jsonl";
  std::ofstream(input) << R"({"custom_id": "a", "prompt": "x"})"
                       << "\n";
  for (const std::string& call :
       {std::string("list"), "submit --input " + input, std::string("cluster")}) {
    const auto start = std::chrono::steady_clock::now();
    CommandResult r = Ctl(flags + call);
    const double took = SecondsSince(start);
    EXPECT_EQ(r.status, 0) << call << " after " << took << " s: " << r.output << "\n" << Log();
    EXPECT_LT(took, 10.0) << call;
  }
  ControlClient user(Options());
  auto jobs = user.ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  EXPECT_EQ(jobs->size(), 1u);

  // SIGTERM ends it, cleanly and soon, with the flood still connected; the port is released.
  const auto term = std::chrono::steady_clock::now();
  EXPECT_EQ(TerminateCoordinator(10), 0) << Log();
  std::printf("SIGTERM to exit with %zu idle connections open: %.2f s\n", idle.size(),
              SecondsSince(term));
  EXPECT_EQ(IdleConnection(port_, false), -1) << "the port is still open";
  EXPECT_NE(Log().find("connections that sent no request with the token"), std::string::npos)
      << Log();
  for (int fd : idle) close(fd);
}

}  // namespace
}  // namespace df11
