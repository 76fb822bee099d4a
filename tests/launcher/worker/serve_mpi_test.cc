// SPDX-License-Identifier: Apache-2.0
// `mpirun -np 2 df11-run serve` on a tp 2 shard against a real df11-coordinator: the followers
// outlive a wait for work longer than their collective timeout (the leader keeps them alive), the
// job's texts equal one process's `df11-run generate`; a rank killed with SIGKILL mid-job ends
// the whole group within a bounded time and a relaunched group finishes the job, every item once.
#include "tests/launcher/worker/serve_cluster.h"
#include "tests/launcher/mpi_rank_pid.h"

namespace df11::testing {
namespace {

class ServeMpi : public TinyModelSuite {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    TinyModelSuite::SetUpTestSuite();
    if (HasFatalFailure()) return;
    CommandResult r = RunCommandSeparateStderr(
        kBin + "df11 -q shard " + dir_ + "/df11 " + dir_ + "/tp2 --tp 2", kCommandLimitS);
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static std::string Shard() { return dir_ + "/tp2"; }
  static std::string Mpirun(const std::string& args) {
    return std::string(DF11_MPIEXEC) + " --oversubscribe -np 2 " + kRun + " " + args;
  }
};

// The pid of the df11-run process that is rank `rank` of a `serve` job on `model`, or 0.
pid_t FindRank(const std::string& model, int rank) {
  return df11::FindMpiRankPid(kRun + " serve --model " + model, rank);
}

TEST_F(ServeMpi, GroupWaitsForWorkThenMatchesOneProcess) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/10);
  // The group starts first and waits for work longer than its collective timeout (4 s).
  Child group = Child::Start(
      Mpirun(c.ServeArgs(Shard(), "-n 12 --collective-timeout 4 --idle-exit-seconds 10")),
      c.dir() + "/group.log");
  std::this_thread::sleep_for(std::chrono::seconds(7));
  const std::vector<std::string> lines = {
      R"({"custom_id": "p1", "prompt": "The sky is", "max_tokens": 8})",
      R"({"custom_id": "p2", "prompt": "Once upon a time", "temperature": 0.8, "seed": 7})",
      R"({"custom_id": "o1", "method": "POST", "url": "/v1/completions", )"
      R"("body": {"prompt": "Hello", "max_tokens": 6}})",
      R"({"custom_id": "o2", "method": "POST", "url": "/v1/chat/completions", )"
      R"("body": {"messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 7}})",
      R"({"custom_id": "bad", "prompt": 5})"};
  const std::string job = c.Submit(lines, "batch.jsonl");
  ASSERT_FALSE(job.empty());
  const nlohmann::json status = c.WaitFinished(job, 30);
  ASSERT_EQ(status.value("state", ""), "DONE") << status << group.Output();
  CommandResult cluster = c.Ctl("cluster");
  const int rc = group.Wait(30);
  EXPECT_EQ(rc, 0) << group.Output();
  std::map<std::string, int> count;
  std::vector<nlohmann::json> results = c.Results(job, &count);
  ExpectExactlyOnce(count, {"p1", "p2", "o1", "o2", "bad"});

  CommandResult gen = RunCommandSeparateStderr(
      kRun + " generate --model " + dir_ + "/df11 --input " + c.dir() + "/batch.jsonl --output " +
          c.dir() + "/gen.jsonl -n 12 --threads 1",
      kCommandLimitS);
  ASSERT_EQ(gen.status, 0) << gen.err;
  auto expected = ByCustomId(ReadFile(c.dir() + "/gen.jsonl"));
  for (const nlohmann::json& r : results) {
    const std::string id = r["custom_id"];
    if (id == "bad") {
      EXPECT_TRUE(r["response"].is_null()) << r;
      continue;
    }
    ASSERT_FALSE(r["response"].is_null()) << r;
    EXPECT_EQ(r["response"]["body"]["text"], expected[id]["text"]) << id;
    EXPECT_EQ(r["response"]["body"]["token_ids"], expected[id]["token_ids"]) << id;
  }
  // Registered as one group of two ranks with the shard's source hash.
  auto groups = nlohmann::json::parse(cluster.output)["groups"];
  ASSERT_EQ(groups.size(), 1u) << cluster.output;
  EXPECT_EQ(groups[0]["ranks"], 2);
  EXPECT_EQ(groups[0]["hosts"].size(), 2u);
  auto manifest = nlohmann::json::parse(ReadFile(Shard() + "/manifest.json"));
  EXPECT_EQ(groups[0]["manifest_hash"], manifest["source"]["hash"]);
}

TEST_F(ServeMpi, RankKilledGroupExitsAndRelaunchFinishesOnce) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/3);
  const std::vector<std::string> lines = ManyLines("m", 40, 64);
  const std::string job = c.Submit(lines, "long.jsonl");
  ASSERT_FALSE(job.empty());
  Child group = Child::Start(
      Mpirun(c.ServeArgs(Shard(), "--batch-size 4 --collective-timeout 20")),
      c.dir() + "/group1.log");
  ASSERT_TRUE(c.WaitItems(job, 4, 40)) << group.Output();
  pid_t victim = 0;
  for (int i = 0; i < 50 && victim == 0; ++i) {
    victim = FindRank(Shard(), 1);
    if (victim == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(victim, 0) << group.Output();
  const auto killed = Clock::now();
  kill(victim, SIGKILL);
  const int rc = group.Wait(90);
  const double after = Since(killed);
  EXPECT_NE(rc, 0) << group.Output();
  EXPECT_LT(after, 60.0) << group.Output();
  const nlohmann::json mid = c.Status(job);
  EXPECT_LT(mid["items_done"].get<int64_t>(), 40) << mid;
  std::printf("rank 1 killed: group exit %d %.2f s later, %lld/40 items done\n", rc, after,
              static_cast<long long>(mid["items_done"].get<int64_t>()));

  // A new group takes over once the dead group's leases lapse.
  Child relaunch = Child::Start(
      Mpirun(c.ServeArgs(Shard(), "--batch-size 4 --idle-exit-seconds 8")),
      c.dir() + "/group2.log");
  const nlohmann::json status = c.WaitFinished(job, 60);
  const int rc2 = relaunch.Wait(30);
  ASSERT_EQ(status.value("state", ""), "DONE") << status << relaunch.Output();
  EXPECT_EQ(rc2, 0) << relaunch.Output();
  EXPECT_EQ(status["items_done"], 40);
  std::map<std::string, int> count;
  c.Results(job, &count);
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back("m" + std::to_string(i));
  ExpectExactlyOnce(count, ids);
}

}  // namespace
}  // namespace df11::testing
