// SPDX-License-Identifier: Apache-2.0
// CoordinatorServer and ControlClient over loopback on an ephemeral port, with a worker group
// simulated through the client API: submit -> lease -> report -> paged results, the token on
// every call, an oversized request that fails alone, per-line errors for malformed batch lines,
// and 200 clients polling while items complete.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "launcher/control/batch_input.h"
#include "launcher/control/control_client.h"
#include "launcher/control/coordinator_server.h"
#include "launcher/control/job_store.h"
#include "launcher/control/result_output.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

constexpr char kToken[] = "s3cret-token";

std::vector<rpc::ItemInput> Inputs(int n) {
  std::vector<rpc::ItemInput> items;
  for (int i = 0; i < n; ++i) {
    rpc::ItemInput in;
    in.custom_id = "req-" + std::to_string(i);
    in.request_json = "{\"prompt\":\"p" + std::to_string(i) + "\"}";
    items.push_back(in);
  }
  return items;
}

rpc::WorkerGroupInfo GroupInfo() {
  rpc::WorkerGroupInfo g;
  g.ranks = 2;
  g.hosts = {"node1"};
  g.devices = {"node1:cpu:0", "node1:cpu:1"};
  g.manifest_hash = "abc123";
  return g;
}

// Leases and answers items until the queue is empty; returns how many it answered.
int64_t DrainQueue(ControlClient& worker, const std::string& group_id, int32_t per_lease) {
  int64_t answered = 0;
  for (;;) {
    auto items = worker.LeaseWork(group_id, per_lease);
    EXPECT_TRUE(items.ok()) << items.status().ToString();
    if (!items.ok() || items->empty()) return answered;
    std::map<int64_t, rpc::ItemOutcome> results;
    for (const rpc::Item& item : *items) {
      rpc::ItemOutcome o;
      o.response_json = nlohmann::json{{"text", "echo " + item.custom_id}}.dump();
      o.completion_tokens = 2;
      results[item.item_id] = o;
    }
    auto reply = worker.ReportResults(group_id, results);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    answered += reply.ok() ? reply->stored : 0;
  }
}

class ControlServerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    server_.reset();
    store_.reset();
  }
  void StartServer(int64_t max_message_bytes = 1 << 20) {
    auto store = JobStore::Open({dir_ + "/jobs.db", {}});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    CoordinatorOptions options;
    options.token = kToken;
    options.lease_s = 30;
    options.max_message_bytes = max_message_bytes;
    auto server = CoordinatorServer::Start(options, store_.get());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    ASSERT_GT(server_->port(), 0);
  }
  ControlClientOptions ClientOptions(const std::string& token = kToken) const {
    ControlClientOptions o;
    o.port = server_->port();
    o.token = token;
    o.rpc_timeout_ms = 20000;
    return o;
  }

  test_support::TempDir tmp_{"df11_control_server_test"};
  const std::string dir_ = tmp_.path();
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<CoordinatorServer> server_;
};

TEST_F(ControlServerTest, SubmitLeaseReportFetchPaged) {
  StartServer();
  ControlClient user(ClientOptions());
  auto job = user.SubmitJob(Inputs(25), "paged");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->state, rpc::JobState::QUEUED);
  EXPECT_EQ(job->items_total, 25);
  EXPECT_EQ(job->label, "paged");

  ControlClient worker(ClientOptions());
  auto reg = worker.RegisterWorkerGroup(GroupInfo());
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  EXPECT_EQ(reg->lease_s, 30);
  auto first = worker.LeaseWork(reg->group_id, 10);
  ASSERT_EQ(first->size(), 10u);
  EXPECT_FALSE((*first)[0].lease_id.empty());
  EXPECT_EQ((*first)[0].job_id, job->id);
  EXPECT_EQ((*first)[0].request_json, "{\"prompt\":\"p0\"}");
  auto running = user.GetJob(job->id);
  EXPECT_EQ(running->state, rpc::JobState::RUNNING);
  rpc::GroupProgress progress;
  progress.items_in_flight = 10;
  auto hb = worker.Heartbeat(reg->group_id, progress);
  ASSERT_TRUE(hb.ok()) << hb.status().ToString();
  EXPECT_TRUE(hb->ok);
  auto cluster = user.ClusterStatus();
  ASSERT_TRUE(cluster.ok());
  ASSERT_EQ(cluster->groups.size(), 1u);
  EXPECT_TRUE(cluster->groups[0].alive);
  EXPECT_EQ(cluster->groups[0].items_leased, 10);
  EXPECT_EQ(cluster->items_queued, 15);

  std::map<int64_t, rpc::ItemOutcome> results;
  for (const rpc::Item& item : *first) results[item.item_id].response_json = "{\"text\":\"a\"}";
  EXPECT_EQ(worker.ReportResults(reg->group_id, results)->stored, 10);
  EXPECT_EQ(worker.ReportResults(reg->group_id, results)->duplicates, 10);
  EXPECT_EQ(DrainQueue(worker, reg->group_id, 4), 15);

  std::set<std::string> ids;
  int64_t offset = 0;
  int pages = 0;
  for (bool end = false; !end; ++pages) {
    auto page = user.FetchResults(job->id, offset, 7);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    for (const auto& r : page->results) ids.insert(r.custom_id);
    offset = page->next_offset;
    end = page->end_of_job;
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 4);
  EXPECT_EQ(ids.size(), 25u);
  auto done = user.GetJob(job->id);
  EXPECT_EQ(done->state, rpc::JobState::DONE);
  EXPECT_EQ(done->items_done, 25);
  EXPECT_EQ(user.ListJobs()->size(), 1u);
}

TEST_F(ControlServerTest, EveryCallNeedsTheToken) {
  StartServer();
  for (const std::string token : {"", "s3cret-tokeX", "s3cret-token-longer"}) {
    ControlClient c(ClientOptions(token));
    EXPECT_EQ(c.SubmitJob(Inputs(1), "x").status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.GetJob("job-x").status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.ListJobs().status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.CancelJob("job-x").status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.FetchResults("job-x", 0, 1).status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.RegisterWorkerGroup(GroupInfo()).status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.Heartbeat("g", {}).status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.LeaseWork("g", 1).status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.ReportResults("g", {}).status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(c.ClusterStatus().status().code(), StatusCode::kUnauthenticated);
  }
  ControlClient good(ClientOptions());
  EXPECT_TRUE(good.ListJobs().ok());
  EXPECT_EQ(good.ListJobs()->size(), 0u);  // nothing was submitted without the token
  EXPECT_FALSE(TokenMatches("", ""));
  EXPECT_TRUE(TokenMatches("abc", "abc"));
  EXPECT_FALSE(TokenMatches("abd", "abc"));
}

TEST_F(ControlServerTest, BadInputBecomesTypedErrors) {
  StartServer();
  ControlClient c(ClientOptions());
  EXPECT_EQ(c.GetJob("job-none").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(c.LeaseWork("group-none", 1).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(c.Heartbeat("group-none", {}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(c.SubmitJob({}, "empty").status().code(), StatusCode::kInvalidArgument);
  auto job = c.SubmitJob(Inputs(1), "x");
  EXPECT_EQ(c.FetchResults(job->id, 0, 0).status().code(), StatusCode::kInvalidArgument);
  auto reg = c.RegisterWorkerGroup(GroupInfo());
  EXPECT_EQ(c.LeaseWork(reg->group_id, 1'000'000).status().code(), StatusCode::kInvalidArgument);
  std::map<int64_t, rpc::ItemOutcome> unknown{{424242, {}}};
  EXPECT_EQ(c.ReportResults(reg->group_id, unknown).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(c.GetJob(job->id).ok());  // the connection is still good after each error

  // A cancelled job's items stop being leased and its group is told on the next heartbeat.
  auto leased = c.LeaseWork(reg->group_id, 1);
  ASSERT_EQ(leased->size(), 1u);
  EXPECT_EQ(c.CancelJob(job->id)->state, rpc::JobState::CANCELLED);
  auto hb = c.Heartbeat(reg->group_id, {});
  ASSERT_EQ(hb->cancel_job_ids.size(), 1u);
  EXPECT_EQ(hb->cancel_job_ids[0], job->id);
}

TEST_F(ControlServerTest, OversizedRequestFailsAloneAndServerServesOn) {
  StartServer(/*max_message_bytes=*/64 << 10);
  ControlClient c(ClientOptions());
  ASSERT_TRUE(c.ListJobs().ok());
  std::vector<rpc::ItemInput> big = Inputs(1);
  big[0].request_json = "{\"prompt\":\"" + std::string(256 << 10, 'x') + "\"}";
  auto refused = c.SubmitJob(big, "big");
  EXPECT_EQ(refused.status().code(), StatusCode::kIoError) << refused.status().ToString();
  // The same client reconnects; others were never affected.
  auto jobs = c.ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  EXPECT_EQ(jobs->size(), 0u);
  ControlClient other(ClientOptions());
  auto small = other.SubmitJob(Inputs(3), "small");
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_EQ(small->items_total, 3);
}

TEST_F(ControlServerTest, MalformedLinesFailWhileValidLinesComplete) {
  StartServer();
  std::istringstream batch(
      R"({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "max_tokens": 4}})"
      "\n"
      "{broken\n"
      R"({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}]}})"
      "\n"
      R"({"custom_id": "d", "prompt": "y", "top_p": 7})"
      "\n"
      R"({"custom_id": "e", "prompt": "z"})"
      "\n");
  std::vector<rpc::ItemInput> items;
  for (const BatchInputLine& line : ReadBatchInput(batch)) {
    rpc::ItemInput in;
    in.custom_id = line.custom_id;
    in.request_json = line.request_json;
    in.error = line.error;
    items.push_back(in);
  }
  ControlClient c(ClientOptions());
  auto job = c.SubmitJob(items, "mixed");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->items_failed, 2);
  auto reg = c.RegisterWorkerGroup(GroupInfo());
  EXPECT_EQ(DrainQueue(c, reg->group_id, 10), 3);
  auto done = c.GetJob(job->id);
  EXPECT_EQ(done->state, rpc::JobState::DONE);
  EXPECT_EQ(done->items_done, 3);
  EXPECT_EQ(done->items_failed, 2);

  std::ostringstream out;
  auto written = WriteJobResults(c, job->id, out, 2);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(*written, 5);
  std::map<std::string, nlohmann::json> by_id;
  std::istringstream lines(out.str());
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);
    by_id[j["custom_id"]] = j;
  }
  ASSERT_EQ(by_id.size(), 5u);
  EXPECT_EQ(by_id["line-2"]["error"]["message"], "line 2: not a JSON object");
  EXPECT_TRUE(by_id["line-2"]["response"].is_null());
  EXPECT_EQ(by_id["d"]["error"]["message"],
            "line 4: \"top_p\" = 7: expected a number in (0, 1] (1: off)");
  for (const char* ok : {"a", "c", "e"}) {
    EXPECT_TRUE(by_id[ok]["error"].is_null()) << ok;
    EXPECT_EQ(by_id[ok]["response"]["status_code"], 200);
    EXPECT_EQ(by_id[ok]["response"]["body"]["text"], std::string("echo ") + ok);
  }
}

TEST_F(ControlServerTest, TwoHundredClientsPollWhileItemsComplete) {
  StartServer();
  constexpr int kItems = 300;
  constexpr int kClients = 200;
  ControlClient submitter(ClientOptions());
  auto job = submitter.SubmitJob(Inputs(kItems), "busy");
  ASSERT_TRUE(job.ok());
  std::atomic<bool> finished{false};
  std::atomic<int> errors{0};
  std::atomic<int64_t> polls{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      ControlClient c(ClientOptions());
      int64_t last_done = 0;
      for (bool last_round = false; !last_round;) {
        last_round = finished.load();
        auto j = c.GetJob(job->id);
        if (!j.ok() || j->items_done < last_done) {
          ++errors;
          ADD_FAILURE() << "client " << t << ": " << j.status().ToString();
          return;
        }
        last_done = j->items_done;
        int64_t seen = 0;
        for (int64_t offset = 0;;) {
          auto page = c.FetchResults(job->id, offset, 100);
          if (!page.ok()) {
            ++errors;
            ADD_FAILURE() << "client " << t << ": " << page.status().ToString();
            return;
          }
          seen += static_cast<int64_t>(page->results.size());
          if (page->results.empty() || page->end_of_job) break;
          offset = page->next_offset;
        }
        if (seen < last_done) ++errors;  // results are stored with the counts, never after
        ++polls;
        if (last_round && seen != kItems) ++errors;
      }
    });
  }
  ControlClient worker(ClientOptions());
  auto reg = worker.RegisterWorkerGroup(GroupInfo());
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ(DrainQueue(worker, reg->group_id, 3), kItems);
  finished = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GE(polls.load(), kClients);
  EXPECT_EQ(submitter.GetJob(job->id)->state, rpc::JobState::DONE);
}

}  // namespace
}  // namespace df11
