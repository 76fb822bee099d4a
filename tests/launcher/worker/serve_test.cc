// SPDX-License-Identifier: Apache-2.0
// `df11-run serve` on one process against a real df11-coordinator, driven with df11-ctl: a job of
// plain, OpenAI-form and invalid lines finishes with every item exactly once and the same texts
// `df11-run generate` gives; two worker groups share a job; the coordinator killed with SIGKILL
// mid-job and restarted on the same database still finishes it exactly once; finished items are
// reported while the rest of their lease runs; a coordinator that stays away makes the worker
// exit non-zero after the lease time; items the sampler cannot serve fail alone and the job
// completes; an item that takes down every group serving it fails after three attempts while the
// items it shared a lease with finish, and its job ends. With speculative decoding a job gets
// the tokens `generate` gives without it.
#include <regex>

#include "launcher/control/control_client.h"
#include "tests/launcher/worker/serve_cluster.h"

namespace df11::testing {
namespace {

class Serve : public TinyModelSuite {
 protected:
  static std::string Model() { return dir_ + "/df11"; }
};

// "served N items" from a worker's log, or -1.
int64_t Served(const std::string& log) {
  std::smatch m;
  static const std::regex re("served ([0-9]+) items");
  return std::regex_search(log, m, re) ? std::stoll(m[1]) : -1;
}

TEST_F(Serve, JobMatchesGenerateEveryItemOnce) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/10);
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += "word ";
  const std::vector<std::string> lines = {
      R"({"custom_id": "p1", "prompt": "The sky is", "max_tokens": 8})",
      R"({"custom_id": "p2", "prompt": "Once upon a time", "temperature": 0.8, "seed": 7})",
      R"({"custom_id": "o1", "method": "POST", "url": "/v1/completions", )"
      R"("body": {"prompt": "Hello", "max_tokens": 6}})",
      R"({"custom_id": "o2", "method": "POST", "url": "/v1/chat/completions", )"
      R"("body": {"messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 7}})",
      R"({"custom_id": "bad", "prompt": 5})",
      R"({"custom_id": "long", "prompt": ")" + long_prompt + R"("})",
      R"({"prompt": "No id", "max_tokens": 4})"};
  const std::string job = c.Submit(lines, "batch.jsonl");
  ASSERT_FALSE(job.empty());
  Child worker = Child::Start(kRun + " " + c.ServeArgs(Model(), "-n 12 --idle-exit-seconds 3"),
                              c.dir() + "/worker.log");
  const nlohmann::json status = c.WaitFinished(job, 45);
  const int rc = worker.Wait(30);
  ASSERT_EQ(status.value("state", ""), "DONE") << status << worker.Output();
  EXPECT_EQ(rc, 0) << worker.Output();
  EXPECT_EQ(status["items_done"], 5) << status;
  EXPECT_EQ(status["items_failed"], 2) << status;  // "bad" (at submit) and "long" (by the worker)

  std::map<std::string, int> count;
  std::vector<nlohmann::json> results = c.Results(job, &count);
  ExpectExactlyOnce(count, {"p1", "p2", "o1", "o2", "bad", "long", "line-7"});

  CommandResult gen = RunCommandSeparateStderr(kRun + " generate --model " + Model() + " --input " +
                                                   c.dir() + "/batch.jsonl --output " + c.dir() +
                                                   "/gen.jsonl -n 12 --threads 1",
                                               kCommandLimitS);
  ASSERT_EQ(gen.status, 0) << gen.err;
  auto expected = ByCustomId(ReadFile(c.dir() + "/gen.jsonl"));
  for (const nlohmann::json& r : results) {
    const std::string id = r["custom_id"];
    if (id == "bad" || id == "long") {
      EXPECT_TRUE(r["response"].is_null()) << r;
      EXPECT_TRUE(expected[id].contains("error")) << expected[id];
      continue;
    }
    ASSERT_FALSE(r["response"].is_null()) << r;
    const nlohmann::json& body = r["response"]["body"];
    EXPECT_EQ(body["text"], expected[id]["text"]) << id;
    EXPECT_EQ(body["token_ids"], expected[id]["token_ids"]) << id;
    EXPECT_EQ(body["custom_id"], id);
  }
  for (const nlohmann::json& r : results) {
    if (r["custom_id"] == "long") {
      EXPECT_NE(r["error"]["message"].get<std::string>().find("context"), std::string::npos) << r;
    }
  }
  // The group registered itself: one rank, a model hash.
  CommandResult cluster = c.Ctl("cluster");
  auto groups = nlohmann::json::parse(cluster.output)["groups"];
  ASSERT_EQ(groups.size(), 1u) << cluster.output;
  EXPECT_EQ(groups[0]["ranks"], 1);
  EXPECT_EQ(groups[0]["manifest_hash"].get<std::string>().size(), 16u) << groups[0];
  std::printf("job of %zu lines served and worker exited in %.2f s\n", lines.size(),
              Since(worker.started));
}

// `serve --speculative prompt-lookup`: the texts of `generate` without it, an item that turns it
// off served without drafts, a malformed "speculative" refused at submit by name, and the
// acceptance figures in the stored usage.
TEST_F(Serve, SpeculativeDecodingServesTheTokensOfGenerateWithoutIt) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/10);
  const std::vector<std::string> lines = {
      R"({"custom_id": "rep", "prompt": "the cat sat on the mat. the cat sat on the mat. the"})",
      R"({"custom_id": "off", "prompt": "Once upon a time", "speculative": false})",
      R"({"custom_id": "s", "prompt": "x y x y x", "temperature": 0.8, "seed": 5})",
      R"({"custom_id": "bad", "prompt": "x", "speculative": "no"})"};
  const std::string job = c.Submit(lines, "spec.jsonl");
  ASSERT_FALSE(job.empty());
  Child worker = Child::Start(
      kRun + " " +
          c.ServeArgs(Model(), "-n 16 --idle-exit-seconds 3 --speculative prompt-lookup"),
      c.dir() + "/worker.log");
  const nlohmann::json status = c.WaitFinished(job, 45);
  EXPECT_EQ(worker.Wait(30), 0) << worker.Output();
  ASSERT_EQ(status.value("state", ""), "DONE") << status << worker.Output();
  EXPECT_EQ(status["items_failed"], 1) << status;
  CommandResult gen = RunCommandSeparateStderr(kRun + " generate --model " + Model() + " --input " +
                                                   c.dir() + "/spec.jsonl --output " + c.dir() +
                                                   "/gen.jsonl -n 16 --threads 1",
                                               kCommandLimitS);
  ASSERT_EQ(gen.status, 0) << gen.err;
  auto expected = ByCustomId(ReadFile(c.dir() + "/gen.jsonl"));
  std::map<std::string, int> count;
  for (const nlohmann::json& r : c.Results(job, &count)) {
    const std::string id = r["custom_id"];
    if (id == "bad") {
      EXPECT_NE(r.dump().find("speculative\\\" = \\\"no\\\": expected true or false"),
                std::string::npos)
          << r;
      continue;
    }
    ASSERT_FALSE(r["response"].is_null()) << r;
    const nlohmann::json& body = r["response"]["body"];
    EXPECT_EQ(body["token_ids"], expected[id]["token_ids"]) << id;
    EXPECT_EQ(body["usage"].contains("draft_tokens"), id != "off") << body;
    if (id == "rep") {
      EXPECT_GT(body["usage"]["accepted_draft_tokens"], 0) << body;
    }
  }
  ExpectExactlyOnce(count, {"rep", "off", "s", "bad"});
}

// Results are stored as they finish: with --batch-size 2 a lease holds four items (continuous
// batching refills the two places from it), and the three short answers are reported one by
// one while the long one still runs, instead of all four when the lease is done.
// "top_p": 0 and its kin once killed every worker group that leased them; now they fail alone
// (refused at submit by the worker's own rules) and the rest of the job is served.
TEST_F(Serve, ItemsTheSamplerCannotServeFailAloneAndTheJobCompletes) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/10);
  const std::string job = c.Submit(
      {R"({"custom_id": "a", "prompt": "The sky is", "max_tokens": 5})",
       R"({"custom_id": "p0", "prompt": "x", "temperature": 0.7, "top_p": 0})",
       R"({"custom_id": "inf", "prompt": "x", "temperature": 1e999})",
       R"({"custom_id": "b", "prompt": "Once", "max_tokens": 4, "temperature": 0.9, "seed": 3})"},
      "hostile.jsonl");
  ASSERT_FALSE(job.empty());
  Child worker = Child::Start(kRun + " " + c.ServeArgs(Model(), "--idle-exit-seconds 3"),
                              c.dir() + "/worker.log");
  const nlohmann::json status = c.WaitFinished(job, 45);
  EXPECT_EQ(worker.Wait(30), 0) << worker.Output();
  ASSERT_EQ(status.value("state", ""), "DONE") << status << worker.Output();
  EXPECT_EQ(status["items_done"], 2) << status;
  EXPECT_EQ(status["items_failed"], 2) << status;
  std::map<std::string, int> count;
  for (const nlohmann::json& r : c.Results(job, &count)) {
    const std::string id = r["custom_id"];
    if (id == "p0" || id == "inf") {
      EXPECT_NE(r.dump().find(id == "p0" ? "top_p" : "temperature"), std::string::npos) << r;
    } else {
      EXPECT_FALSE(r["response"].is_null()) << r;
    }
  }
  ExpectExactlyOnce(count, {"a", "p0", "inf", "b"});
}

TEST_F(Serve, FinishedItemsAreReportedWhileTheLeaseRuns) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/10);
  const std::vector<std::string> lines = {
      R"({"custom_id": "long", "prompt": "Tell a long story", "max_tokens": 40})",
      R"({"custom_id": "s1", "prompt": "One", "max_tokens": 2})",
      R"({"custom_id": "s2", "prompt": "Two", "max_tokens": 2})",
      R"({"custom_id": "s3", "prompt": "Three", "max_tokens": 2})"};
  const std::string job = c.Submit(lines, "mixed.jsonl");
  ASSERT_FALSE(job.empty());
  Child worker = Child::Start(
      kRun + " " + c.ServeArgs(Model(), "--batch-size 2 --idle-exit-seconds 3"),
      c.dir() + "/worker.log");
  const nlohmann::json status = c.WaitFinished(job, 45);
  const int rc = worker.Wait(30);
  ASSERT_EQ(status.value("state", ""), "DONE") << status << worker.Output();
  EXPECT_EQ(rc, 0) << worker.Output();
  EXPECT_EQ(status["items_done"], 4) << status;
  std::map<std::string, int> count;
  std::vector<nlohmann::json> results = c.Results(job, &count);
  ExpectExactlyOnce(count, {"long", "s1", "s2", "s3"});
  for (const nlohmann::json& r : results) {
    if (r["custom_id"] == "long") {
      EXPECT_EQ(r["response"]["body"]["token_ids"].size(), 40u) << r;
    }
  }
  // The worker's report lines, in order.
  const std::string log = worker.Output();
  static const std::regex re("reported ([0-9]+) items");
  std::vector<int> reports;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator();
       ++it) {
    reports.push_back(std::stoi((*it)[1]));
  }
  EXPECT_EQ(reports, (std::vector<int>{1, 1, 1, 1})) << log;
}

TEST_F(Serve, TwoGroupsShareOneJob) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/10);
  const std::vector<std::string> lines = ManyLines("t", 24, 24);
  const std::string job = c.Submit(lines, "two.jsonl");
  ASSERT_FALSE(job.empty());
  const std::string args = c.ServeArgs(Model(), "--batch-size 2 --idle-exit-seconds 3");
  Child a = Child::Start(kRun + " " + args, c.dir() + "/a.log");
  Child b = Child::Start(kRun + " " + args, c.dir() + "/b.log");
  const nlohmann::json status = c.WaitFinished(job, 50);
  const int rc_a = a.Wait(20), rc_b = b.Wait(20);
  ASSERT_EQ(status.value("state", ""), "DONE") << status << a.Output() << b.Output();
  EXPECT_EQ(rc_a, 0) << a.Output();
  EXPECT_EQ(rc_b, 0) << b.Output();
  std::map<std::string, int> count;
  c.Results(job, &count);
  std::vector<std::string> ids;
  for (int i = 0; i < 24; ++i) ids.push_back("t" + std::to_string(i));
  ExpectExactlyOnce(count, ids);
  const int64_t na = Served(a.Output()), nb = Served(b.Output());
  EXPECT_EQ(na + nb, 24) << a.Output() << b.Output();
  EXPECT_GT(na, 0);
  EXPECT_GT(nb, 0);
  std::printf("two groups: %lld + %lld items in %.2f s\n", static_cast<long long>(na),
              static_cast<long long>(nb), Since(a.started));
}

TEST_F(Serve, CoordinatorKilledMidJobAndRestartedFinishesOnce) {
  ServeCluster c(TestDir());
  // A LeaseWork whose reply the kill swallows is retried with the same request id, which hands
  // the worker that request's items again (its heartbeats keep their leases alive, so they would
  // never expire); a reply lost another way still expires after the lease (6 s), within the
  // worker's idle exit (12 s).
  c.StartCoordinator(/*lease_s=*/6);
  const std::vector<std::string> lines = ManyLines("k", 30, 24);
  const std::string job = c.Submit(lines, "kill.jsonl");
  ASSERT_FALSE(job.empty());
  Child worker = Child::Start(
      kRun + " " + c.ServeArgs(Model(), "--batch-size 2 --idle-exit-seconds 12"),
      c.dir() + "/worker.log");
  ASSERT_TRUE(c.WaitItems(job, 6, 30)) << worker.Output();
  const int port = c.port();
  c.KillCoordinator();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  c.StartCoordinator(/*lease_s=*/6, port);
  const nlohmann::json status = c.WaitFinished(job, 50);
  const int rc = worker.Wait(30);
  ASSERT_EQ(status.value("state", ""), "DONE") << status << worker.Output();
  EXPECT_EQ(rc, 0) << worker.Output();
  EXPECT_EQ(status["items_done"], 30);
  std::map<std::string, int> count;
  c.Results(job, &count);
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) ids.push_back("k" + std::to_string(i));
  ExpectExactlyOnce(count, ids);
}

TEST_F(Serve, CoordinatorGoneWorkerExitsAfterLease) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/3);
  const std::string job = c.Submit(ManyLines("g", 40, 24), "gone.jsonl");
  ASSERT_FALSE(job.empty());
  Child worker = Child::Start(kRun + " " + c.ServeArgs(Model(), "--batch-size 2"),
                              c.dir() + "/worker.log");
  ASSERT_TRUE(c.WaitItems(job, 4, 30)) << worker.Output();
  c.KillCoordinator();
  const auto killed = Clock::now();
  const int rc = worker.Wait(40);
  const double after = Since(killed);
  EXPECT_GT(rc, 0) << worker.Output();
  EXPECT_LT(after, 20.0);
  EXPECT_NE(worker.Output().find("unreachable"), std::string::npos) << worker.Output();
  std::printf("coordinator gone: worker exit %d %.2f s after the kill\n", rc, after);
}

// A poison item: whatever group leases it dies (here: SIGKILL the moment the group holds a lease,
// as a request that crashes its process would). It is the first line, so the first group's
// lease holds it and three innocent items; from then on it is leased alone, dies alone twice
// more and fails naming its attempts, while the innocent items (alone after the first expiry)
// and the rest finish: the job is DONE, every item has exactly one result.
TEST_F(Serve, ItemThatKillsEveryGroupFailsAloneAfterThreeAttempts) {
  ServeCluster c(TestDir());
  c.StartCoordinator(/*lease_s=*/2);
  std::vector<std::string> lines = {
      R"({"custom_id": "poison", "prompt": "Never ending", "max_tokens": 100})"};
  for (const std::string& l : ManyLines("i", 5, 30)) lines.push_back(l);
  const std::string job = c.Submit(lines, "poison.jsonl");
  ASSERT_FALSE(job.empty());
  ControlClientOptions o;
  o.port = c.port();
  o.token = kToken;
  o.rpc_timeout_ms = 10000;
  ControlClient client(o);
  auto leased = [&]() -> int64_t {
    auto s = client.ClusterStatus();
    return s.ok() ? s->items_leased : -1;
  };
  const std::string args = c.ServeArgs(Model(), "--batch-size 2 --idle-exit-seconds 3");
  for (int round = 1; round <= 3; ++round) {
    Child worker = Child::Start(kRun + " " + args, c.dir() + "/w" + std::to_string(round) + ".log");
    const auto start = Clock::now();
    while (leased() <= 0 && Since(start) < 30) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    worker.Kill();  // the request "crashes" the group while it holds its lease
    ASSERT_LT(Since(start), 30) << "round " << round << ": nothing leased\n" << worker.Output();
    // The lease lapses (2 s without a heartbeat) before the next group starts.
    while (leased() != 0 && Since(start) < 40) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_EQ(leased(), 0) << "round " << round << ": the lease never expired";
  }
  Child last = Child::Start(kRun + " " + args, c.dir() + "/w4.log");
  const nlohmann::json status = c.WaitFinished(job, 60);
  EXPECT_EQ(last.Wait(30), 0) << last.Output();
  ASSERT_EQ(status.value("state", ""), "DONE") << status << last.Output();
  EXPECT_EQ(status["items_done"], 5) << status;
  EXPECT_EQ(status["items_failed"], 1) << status;
  std::map<std::string, int> count;
  std::vector<nlohmann::json> results = c.Results(job, &count);
  ExpectExactlyOnce(count, {"poison", "i0", "i1", "i2", "i3", "i4"});
  for (const nlohmann::json& r : results) {
    if (r["custom_id"] == "poison") {
      EXPECT_TRUE(r["response"].is_null()) << r;
      const std::string error = r["error"].is_object() ? r["error"].value("message", "") : "";
      EXPECT_NE(error.find("no result after 3 attempts"), std::string::npos) << r;
    } else {
      EXPECT_TRUE(r["error"].is_null()) << r;
      EXPECT_EQ(r["response"]["body"]["token_ids"].size(), 30u) << r;
    }
  }
}

}  // namespace
}  // namespace df11::testing
