// SPDX-License-Identifier: Apache-2.0
// JobStore against a real SQLite file with a fake clock: leases expire and requeue, a heartbeat
// extends them, results are stored once per item, cancel stops leasing, results page in the
// order stored, and everything committed survives closing the store and a kill -9 of a writer.
#include "launcher/control/job_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>

#include "tests/common/temp_files.h"

namespace df11 {
namespace {

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void TearDown() override { store_.reset(); }
  void Reopen() {
    store_.reset();
    auto s = JobStore::Open({dir_ + "/jobs.db", [this] { return now_.load(); }});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  static std::vector<NewItem> Items(int n) {
    std::vector<NewItem> items;
    for (int i = 0; i < n; ++i) {
      items.push_back(
          {"req-" + std::to_string(i), "{\"prompt\":\"p" + std::to_string(i) + "\"}", ""});
    }
    return items;
  }
  std::string Group() {
    auto g = store_->RegisterGroup({2, {"node1"}, {"node1:cpu:0", "node1:cpu:1"}, "abc"});
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    return g.ok() ? *g : "";
  }
  static ItemOutcome Ok(int64_t item_id, const std::string& text, int64_t tokens = 3) {
    return {item_id, "{\"text\":\"" + text + "\"}", "", tokens};
  }

  test_support::TempDir tmp_{"df11_job_store_test"};
  const std::string dir_ = tmp_.path();
  std::atomic<int64_t> now_{1'000'000};
  std::unique_ptr<JobStore> store_;
};

TEST_F(JobStoreTest, LeaseExpireRequeue) {
  auto job = store_->CreateJob(Items(5), "t");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->state, JobState::kQueued);
  const std::string a = Group();
  auto first = store_->LeaseItems(a, 3, 30);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->size(), 3u);
  EXPECT_EQ((*first)[0].custom_id, "req-0");
  EXPECT_EQ((*first)[2].custom_id, "req-2");
  EXPECT_EQ((*first)[0].lease_expiry_ms, now_ + 30'000);
  EXPECT_NE((*first)[0].lease_id, (*first)[1].lease_id);
  EXPECT_EQ(store_->GetJob(job->id)->state, JobState::kRunning);
  EXPECT_EQ(store_->LeaseItems(a, 10, 30)->size(), 2u);
  EXPECT_EQ(store_->LeaseItems(a, 10, 30)->size(), 0u);
  EXPECT_EQ(store_->CountQueue()->items_leased, 5);

  now_ += 20'000;
  ASSERT_TRUE(store_->Heartbeat(a, {5, 0, 0}, 30).ok());  // leases now end at +50 s
  EXPECT_EQ(store_->ExpireLeases(now_ + 29'000)->requeued, 0);
  EXPECT_EQ(store_->ExpireLeases(now_ + 30'000)->requeued, 5);
  EXPECT_EQ(store_->CountQueue()->items_queued, 5);

  // Items of an expired lease come back one per lease, with new lease ids.
  const std::string b = Group();
  std::set<std::string> lease_ids;
  for (const auto& l : *first) lease_ids.insert(l.lease_id);
  for (int i = 0; i < 5; ++i) {
    auto again = store_->LeaseItems(b, 10, 30);
    ASSERT_EQ(again->size(), 1u);
    EXPECT_EQ((*again)[0].custom_id, "req-" + std::to_string(i));
    EXPECT_EQ(lease_ids.count((*again)[0].lease_id), 0u);
  }
  EXPECT_EQ(store_->ListGroups()->at(1).items_leased, 5);
}

TEST_F(JobStoreTest, RepeatedLeaseRequestGetsItsItemsBack) {
  // A group's LeaseWork reply is lost (the coordinator restarted mid-call); its heartbeats keep
  // the lease alive, so only the retry of the same request can hand those items out again.
  auto job = store_->CreateJob(Items(5), "t");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  const std::string a = Group();
  auto first = store_->LeaseItems(a, 2, 30, "lease-0");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].lease_id, (*first)[1].lease_id) << "one lease id per request";
  Reopen();  // the restart: everything comes back from the database
  now_ += 20'000;
  ASSERT_TRUE(store_->Heartbeat(a, {2, 0, 0}, 30).ok());
  EXPECT_EQ(store_->ExpireLeases(now_ + 25'000)->requeued, 0)
      << "the live group's leases are extended";

  now_ += 1'000;
  auto retry = store_->LeaseItems(a, 2, 30, "lease-0");
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  ASSERT_EQ(retry->size(), 2u);
  EXPECT_EQ((*retry)[0].item_id, (*first)[0].item_id);
  EXPECT_EQ((*retry)[1].item_id, (*first)[1].item_id);
  EXPECT_EQ((*retry)[0].lease_expiry_ms, now_ + 30'000) << "renewed";
  EXPECT_EQ(store_->CountQueue()->items_leased, 2) << "nothing more was leased";

  // The next request leases the next items; another group's request id never matches.
  auto next = store_->LeaseItems(a, 2, 30, "lease-1");
  ASSERT_EQ(next->size(), 2u);
  EXPECT_EQ((*next)[0].custom_id, "req-2");
  const std::string b = Group();
  auto other = store_->LeaseItems(b, 5, 30, "lease-0");
  ASSERT_EQ(other->size(), 1u);
  EXPECT_EQ((*other)[0].custom_id, "req-4");

  // Once reported, a request's items are no longer handed out by a repeat of it.
  ASSERT_TRUE(store_->CompleteItems(a, {Ok((*first)[0].item_id, "x"), Ok((*first)[1].item_id, "y")})
                  .ok());
  EXPECT_EQ(store_->LeaseItems(a, 2, 30, "lease-0")->size(), 0u) << "the queue is empty";
  EXPECT_EQ(store_->LeaseItems(a, 1, 30, std::string(201, 'x')).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(JobStoreTest, LeaseChecksGroupAndArguments) {
  ASSERT_TRUE(store_->CreateJob(Items(1), "t").ok());
  EXPECT_EQ(store_->LeaseItems("group-nope", 1, 30).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->LeaseItems(Group(), 0, 30).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->CreateJob({}, "empty").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetJob("job-nope").status().code(), StatusCode::kNotFound);
}

// A poison item (one that crashes every group serving it) shared its first lease with innocent
// items: after that lease expires each of them is leased alone, the innocent ones finish, the
// poison one fails after its third expired lease with an error naming the attempts, and the job
// is DONE with every result stored once, the one reported before the crash included.
TEST_F(JobStoreTest, ItemWhoseLeasesKeepExpiringFailsAloneAndItsJobEnds) {
  auto job = store_->CreateJob(Items(6), "t");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  const std::string a = Group();
  auto first = store_->LeaseItems(a, 4, 30);
  ASSERT_EQ(first->size(), 4u);
  const int64_t poison = (*first)[2].item_id;  // req-2
  ASSERT_EQ(store_->CompleteItems(a, {Ok((*first)[1].item_id, "before the crash")})->stored, 1);
  now_ += 31'000;  // group a died
  ExpiredLeases e = *store_->ExpireLeases(now_);
  EXPECT_EQ(e.requeued, 3);
  EXPECT_EQ(e.failed, 0);

  // Alone from now on: req-0, then req-2 (whose group dies again), then req-3; the fresh items
  // after them are leased together as before.
  const std::string b = Group();
  auto l0 = store_->LeaseItems(b, 8, 30);
  ASSERT_EQ(l0->size(), 1u);
  EXPECT_EQ((*l0)[0].custom_id, "req-0");
  ASSERT_EQ(store_->CompleteItems(b, {Ok((*l0)[0].item_id, "x")})->stored, 1);
  auto l2 = store_->LeaseItems(b, 8, 30);
  ASSERT_EQ(l2->size(), 1u);
  EXPECT_EQ((*l2)[0].item_id, poison);
  const std::string c = Group();
  auto l3 = store_->LeaseItems(c, 8, 30);
  ASSERT_EQ(l3->size(), 1u);
  EXPECT_EQ((*l3)[0].custom_id, "req-3");
  auto fresh = store_->LeaseItems(c, 8, 30);
  ASSERT_EQ(fresh->size(), 2u);
  EXPECT_EQ((*fresh)[0].custom_id, "req-4");
  EXPECT_EQ((*fresh)[1].custom_id, "req-5");
  ASSERT_EQ(store_
                ->CompleteItems(c, {Ok((*l3)[0].item_id, "x"), Ok((*fresh)[0].item_id, "x"),
                                    Ok((*fresh)[1].item_id, "x")})
                ->stored,
            3);
  now_ += 31'000;  // group b died with the poison item: attempt 2
  e = *store_->ExpireLeases(now_);
  EXPECT_EQ(e.requeued, 1);
  EXPECT_EQ(store_->GetJob(job->id)->state, JobState::kRunning);
  const std::string d = Group();
  auto l2again = store_->LeaseItems(d, 8, 30);
  ASSERT_EQ(l2again->size(), 1u);
  EXPECT_EQ((*l2again)[0].item_id, poison);
  now_ += 31'000;  // group d died too: attempt 3 of 3
  e = *store_->ExpireLeases(now_);
  EXPECT_EQ(e.requeued, 0);
  EXPECT_EQ(e.failed, 1);

  auto done = store_->GetJob(job->id);
  EXPECT_EQ(done->state, JobState::kDone);
  EXPECT_EQ(done->items_done, 5);
  EXPECT_EQ(done->items_failed, 1);
  EXPECT_EQ(store_->CountQueue()->items_queued + store_->CountQueue()->items_leased, 0);
  auto page = store_->FetchResults(job->id, 0, 100);
  ASSERT_EQ(page->results.size(), 6u);
  EXPECT_TRUE(page->end_of_job);
  std::set<std::string> ids;
  for (const StoredResult& r : page->results) {
    ids.insert(r.custom_id);
    if (r.item_id == poison) {
      EXPECT_NE(r.error.find("no result after 3 attempts"), std::string::npos) << r.error;
      EXPECT_NE(r.error.find("--max-attempts is 3"), std::string::npos) << r.error;
    } else {
      EXPECT_TRUE(r.error.empty()) << r.custom_id << ": " << r.error;
    }
  }
  EXPECT_EQ(ids.size(), 6u);
  EXPECT_EQ(page->results[0].response_json, "{\"text\":\"before the crash\"}");
  // A late report from a group that was only slow is a duplicate: the outcome stands.
  EXPECT_EQ(store_->CompleteItems(d, {Ok(poison, "late")})->duplicates, 1);
}

TEST_F(JobStoreTest, MaxAttemptsIsConfigurable) {
  EXPECT_EQ(JobStore::Open({dir_ + "/zero.db", {}, 0}).status().code(),
            StatusCode::kInvalidArgument);
  store_.reset();
  auto once = JobStore::Open({dir_ + "/jobs.db", [this] { return now_.load(); }, 1});
  ASSERT_TRUE(once.ok()) << once.status().ToString();
  store_ = std::move(once).value();
  auto job = store_->CreateJob(Items(1), "t");
  auto leased = store_->LeaseItems(Group(), 1, 30);
  ASSERT_EQ(leased->size(), 1u);
  now_ += 31'000;
  EXPECT_EQ(store_->ExpireLeases(now_)->failed, 1);
  auto failed = store_->GetJob(job->id);
  EXPECT_EQ(failed->state, JobState::kFailed) << "its only item failed";
  auto page = store_->FetchResults(job->id, 0, 10);
  ASSERT_EQ(page->results.size(), 1u);
  EXPECT_NE(page->results[0].error.find("no result after 1 attempt:"), std::string::npos)
      << page->results[0].error;
}

TEST_F(JobStoreTest, ResultIsStoredOncePerItem) {
  auto job = store_->CreateJob(Items(2), "t");
  const std::string a = Group();
  auto leased = store_->LeaseItems(a, 2, 30);
  const int64_t id0 = (*leased)[0].item_id;
  auto c1 = store_->CompleteItems(a, {Ok(id0, "first")});
  ASSERT_TRUE(c1.ok()) << c1.status().ToString();
  EXPECT_EQ(c1->stored, 1);
  auto c2 = store_->CompleteItems(a, {Ok(id0, "second")});
  EXPECT_EQ(c2->stored, 0);
  EXPECT_EQ(c2->duplicates, 1);

  // The other item's lease lapses, another group takes it, and both groups report it.
  now_ += 31'000;
  EXPECT_EQ(store_->ExpireLeases(now_)->requeued, 1);
  const std::string b = Group();
  auto re = store_->LeaseItems(b, 5, 30);
  ASSERT_EQ(re->size(), 1u);
  const int64_t id1 = (*re)[0].item_id;
  EXPECT_EQ(store_->CompleteItems(a, {Ok(id1, "late")})->stored, 1);
  EXPECT_EQ(store_->CompleteItems(b, {Ok(id1, "retry")})->duplicates, 1);

  auto page = store_->FetchResults(job->id, 0, 100);
  ASSERT_EQ(page->results.size(), 2u);
  EXPECT_EQ(page->results[0].response_json, "{\"text\":\"first\"}");
  EXPECT_EQ(page->results[1].response_json, "{\"text\":\"late\"}");
  EXPECT_TRUE(page->end_of_job);
  auto done = store_->GetJob(job->id);
  EXPECT_EQ(done->state, JobState::kDone);
  EXPECT_EQ(done->items_done, 2);
  EXPECT_EQ(done->tokens_generated, 6);
  EXPECT_EQ(done->eta_s, 0);
}

TEST_F(JobStoreTest, UnknownItemRejectsTheWholeReport) {
  auto job = store_->CreateJob(Items(1), "t");
  const std::string a = Group();
  auto leased = store_->LeaseItems(a, 1, 30);
  auto r = store_->CompleteItems(a, {Ok((*leased)[0].item_id, "x"), Ok(987654, "y")});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("987654"), std::string::npos);
  EXPECT_EQ(store_->FetchResults(job->id, 0, 10)->results.size(), 0u);
  EXPECT_EQ(store_->CompleteItems("group-nope", {Ok((*leased)[0].item_id, "x")}).status().code(),
            StatusCode::kNotFound);
}

TEST_F(JobStoreTest, InvalidLinesAreFailedItemsAndAllFailedJobFails) {
  std::vector<NewItem> items = Items(3);
  items[1].error = "line 2: not a JSON object";
  auto job = store_->CreateJob(items, "t");
  EXPECT_EQ(job->items_failed, 1);
  EXPECT_EQ(job->state, JobState::kQueued);
  auto page = store_->FetchResults(job->id, 0, 10);
  ASSERT_EQ(page->results.size(), 1u);
  EXPECT_EQ(page->results[0].custom_id, "req-1");
  EXPECT_EQ(page->results[0].error, "line 2: not a JSON object");
  const std::string a = Group();
  EXPECT_EQ(store_->LeaseItems(a, 10, 30)->size(), 2u);  // the invalid line is never leased

  std::vector<NewItem> bad = Items(2);
  for (auto& i : bad) i.error = "bad";
  EXPECT_EQ(store_->CreateJob(bad, "t")->state, JobState::kFailed);

  auto errors = store_->CreateJob(Items(1), "t");
  auto leased = store_->LeaseItems(a, 1, 30);
  ASSERT_EQ((*leased)[0].job_id, errors->id);
  ASSERT_TRUE(store_->CompleteItems(a, {{(*leased)[0].item_id, "", "prompt too long", 0}}).ok());
  EXPECT_EQ(store_->GetJob(errors->id)->state, JobState::kFailed);
}

TEST_F(JobStoreTest, CancelStopsLeasingAndTellsTheGroup) {
  auto job = store_->CreateJob(Items(4), "t");
  const std::string a = Group();
  auto leased = store_->LeaseItems(a, 2, 30);
  auto cancelled = store_->CancelJob(job->id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status().ToString();
  EXPECT_EQ(cancelled->state, JobState::kCancelled);
  EXPECT_EQ(store_->LeaseItems(a, 10, 30)->size(), 0u);
  auto hb = store_->Heartbeat(a, {}, 30);
  ASSERT_EQ(hb->cancel_job_ids.size(), 1u);
  EXPECT_EQ(hb->cancel_job_ids[0], job->id);
  // A result that was already on its way is kept; an expiring lease does not requeue.
  EXPECT_EQ(store_->CompleteItems(a, {Ok((*leased)[0].item_id, "x")})->stored, 1);
  now_ += 60'000;
  EXPECT_EQ(store_->ExpireLeases(now_)->cancelled, 1);
  EXPECT_EQ(store_->CountQueue()->items_queued, 0);
  EXPECT_EQ(store_->GetJob(job->id)->state, JobState::kCancelled);
  EXPECT_EQ(store_->CancelJob("job-nope").status().code(), StatusCode::kNotFound);

  auto done = store_->CreateJob(Items(1), "t");
  auto l = store_->LeaseItems(a, 1, 30);
  ASSERT_TRUE(store_->CompleteItems(a, {Ok((*l)[0].item_id, "x")}).ok());
  EXPECT_EQ(store_->CancelJob(done->id)->state, JobState::kDone);
}

TEST_F(JobStoreTest, ResultsPageInStoredOrder) {
  auto job = store_->CreateJob(Items(25), "t");
  const std::string a = Group();
  auto leased = store_->LeaseItems(a, 25, 30);
  for (int i = 24; i >= 0; --i) {
    ASSERT_TRUE(store_->CompleteItems(a, {Ok((*leased)[i].item_id, std::to_string(i))}).ok());
  }
  std::vector<std::string> seen;
  int64_t offset = 0;
  int pages = 0;
  for (;;) {
    auto page = store_->FetchResults(job->id, offset, 10);
    ASSERT_TRUE(page.ok());
    ++pages;
    for (const auto& r : page->results) seen.push_back(r.custom_id);
    offset = page->next_offset;
    if (page->end_of_job) break;
    ASSERT_LT(pages, 5);
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(offset, 25);
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "req-24");
  EXPECT_EQ(seen.back(), "req-0");
  EXPECT_EQ(store_->FetchResults(job->id, -1, 10).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(JobStoreTest, ProgressRateAndEta) {
  auto job = store_->CreateJob(Items(4), "t");
  const std::string a = Group();
  auto leased = store_->LeaseItems(a, 4, 300);
  EXPECT_EQ(store_->GetJob(job->id)->eta_s, -1);
  now_ += 10'000;
  ASSERT_TRUE(store_->CompleteItems(a, {Ok((*leased)[0].item_id, "x", 100)}).ok());
  auto j = store_->GetJob(job->id);
  EXPECT_DOUBLE_EQ(j->tokens_per_s, 10.0);  // 100 tokens in 10 s
  EXPECT_DOUBLE_EQ(j->eta_s, 30.0);         // 3 items left at 10 s per item
}

TEST_F(JobStoreTest, StateSurvivesReopen) {
  auto job = store_->CreateJob(Items(3), "t");
  const std::string a = Group();
  auto leased = store_->LeaseItems(a, 2, 30);
  ASSERT_TRUE(store_->CompleteItems(a, {Ok((*leased)[0].item_id, "x")}).ok());
  Reopen();
  auto j = store_->GetJob(job->id);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ(j->state, JobState::kRunning);
  EXPECT_EQ(j->items_done, 1);
  EXPECT_EQ(store_->CountQueue()->items_leased, 1);
  EXPECT_EQ(store_->ListGroups()->size(), 1u);
  auto rest = store_->LeaseItems(a, 10, 30);
  ASSERT_EQ(rest->size(), 1u);
  ASSERT_TRUE(
      store_->CompleteItems(a, {Ok((*leased)[1].item_id, "y"), Ok((*rest)[0].item_id, "z")}).ok());
  Reopen();
  EXPECT_EQ(store_->GetJob(job->id)->state, JobState::kDone);
  EXPECT_EQ(store_->FetchResults(job->id, 0, 10)->results.size(), 3u);
}

// A child process writes in a loop and is killed with SIGKILL mid-way; the reopened database
// must be intact and every job's counters must agree with its results and item states.
TEST_F(JobStoreTest, KillNineMidTransactionLosesNothingCommitted) {
  store_.reset();
  const std::string path = dir_ + "/jobs.db";
  const std::string progress = dir_ + "/committed";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = JobStore::Open({path, {}});
    if (!s.ok()) _exit(3);
    auto& store = *s;
    auto g = store->RegisterGroup({1, {"h"}, {"h:cpu"}, "m"});
    for (int round = 0;; ++round) {
      auto job = store->CreateJob(Items(40), "r" + std::to_string(round));
      auto leased = store->LeaseItems(*g, 40, 30);
      if (!job.ok() || !leased.ok()) _exit(4);
      for (size_t i = 0; i < leased->size(); i += 8) {
        std::vector<ItemOutcome> batch;
        for (size_t k = i; k < i + 8 && k < leased->size(); ++k) {
          batch.push_back({(*leased)[k].item_id, "{}", "", 1});
        }
        if (!store->CompleteItems(*g, batch).ok()) _exit(5);
      }
      // The marker names the last job whose CompleteItems all returned OK.
      FILE* f = std::fopen((progress + ".tmp").c_str(), "w");
      std::fprintf(f, "%s\n", job->id.c_str());
      std::fclose(f);
      std::rename((progress + ".tmp").c_str(), progress.c_str());
    }
  }
  usleep(700 * 1000);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);

  auto db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok());
  SqliteStatement check(**db, "PRAGMA integrity_check");
  ASSERT_TRUE(*check.Step());
  EXPECT_EQ(check.Text(0), "ok");
  SqliteStatement mismatched(**db,
                             "SELECT COUNT(*) FROM jobs j WHERE j.items_done + j.items_failed != "
                             "(SELECT COUNT(*) FROM results r WHERE r.job_id = j.id) OR "
                             "j.items_done != (SELECT COUNT(*) FROM items i WHERE i.job_id = j.id "
                             "AND i.state = 'DONE')");
  ASSERT_TRUE(*mismatched.Step());
  EXPECT_EQ(mismatched.Int(0), 0);
  SqliteStatement jobs(**db, "SELECT COUNT(*) FROM jobs");
  ASSERT_TRUE(*jobs.Step());
  EXPECT_GT(jobs.Int(0), 0);

  Reopen();
  std::ifstream marker(progress);
  std::string last_done;
  if (marker >> last_done) {
    auto j = store_->GetJob(last_done);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    EXPECT_EQ(j->state, JobState::kDone);
    EXPECT_EQ(j->items_done, 40);
  }
  // The store carries on: the interrupted job's leases expire and its items can be finished.
  now_ = std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() +
         31'000;
  ASSERT_TRUE(store_->ExpireLeases(now_).ok());
  const std::string g = Group();
  for (;;) {
    auto leased = store_->LeaseItems(g, 100, 30);
    ASSERT_TRUE(leased.ok());
    if (leased->empty()) break;
    std::vector<ItemOutcome> batch;
    for (const auto& l : *leased) batch.push_back(Ok(l.item_id, "x"));
    ASSERT_TRUE(store_->CompleteItems(g, batch).ok());
  }
  auto jobs_after = store_->ListJobs(0);
  ASSERT_TRUE(jobs_after.ok());
  for (const JobInfo& j : *jobs_after) {
    EXPECT_EQ(j.state, JobState::kDone) << j.id;
    EXPECT_EQ(j.items_done, 40) << j.id;
  }
}

}  // namespace
}  // namespace df11
