// SPDX-License-Identifier: Apache-2.0
// The coordinator's durable state in one SQLite file (WAL, synchronous=FULL: a call that returned
// OK survives a kill -9 or power loss). Tables: jobs, items (QUEUED -> LEASED -> DONE | FAILED;
// CANCELLED when their job is), results (one row per item: item_id is the primary key, so a
// retried report is never stored twice) and worker_groups. Every state change is one IMMEDIATE
// transaction. Thread-safe: one connection behind a mutex.
// Poison items: an item whose lease expired (its group died or hung) is leased alone from then
// on, so an item that crashes every group serving it takes no other item down with it, and
// after max_attempts expired leases it fails with an error naming the attempts; its job ends.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "launcher/control/sqlite_db.h"
#include "runtime/core/status.h"

namespace df11 {

enum class JobState { kQueued, kRunning, kDone, kCancelled, kFailed };
const char* JobStateName(JobState state);  // "QUEUED", ...

struct JobStoreOptions {
  std::string path;                   // the SQLite file; created when missing
  std::function<int64_t()> clock_ms;  // ms since the epoch; empty: the system clock
  int32_t max_attempts = 3;           // an item whose lease expired this often fails; >= 1
};

// One input line of a job; a non-empty `error` makes it a failed item that is never leased.
struct NewItem {
  std::string custom_id;
  std::string request_json;
  std::string error;
};

struct JobInfo {
  std::string id;
  std::string label;
  JobState state = JobState::kQueued;
  int64_t items_total = 0;
  int64_t items_done = 0;    // with a response
  int64_t items_failed = 0;  // with an error, invalid input lines included
  int64_t tokens_generated = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t started_ms = 0;   // first lease; 0 before
  double eta_s = -1;        // -1: unknown; 0: finished
  double tokens_per_s = 0;  // since started_ms
};

struct LeasedItem {
  int64_t item_id = 0;
  std::string job_id;
  std::string custom_id;
  std::string request_json;
  std::string lease_id;
  int64_t lease_expiry_ms = 0;
};

// What a worker reports for an item: a response, or an error when `error` is non-empty.
struct ItemOutcome {
  int64_t item_id = 0;
  std::string response_json;
  std::string error;
  int64_t completion_tokens = 0;
};

struct StoredResult {
  int64_t item_id = 0;
  std::string custom_id;
  std::string response_json;
  std::string error;
  int64_t completion_tokens = 0;
};

struct ResultsPage {
  std::vector<StoredResult> results;  // in the order they were stored
  int64_t next_offset = 0;
  bool end_of_job = false;  // the job is finished and no result lies past next_offset
};

struct CompleteCounts {
  int64_t stored = 0;
  int64_t duplicates = 0;
};

struct GroupSpec {
  int32_t ranks = 0;
  std::vector<std::string> hosts;
  std::vector<std::string> devices;
  std::string manifest_hash;
};

struct GroupProgressInfo {
  int32_t items_in_flight = 0;
  int64_t tokens_generated = 0;
  double tokens_per_s = 0;
};

struct GroupInfo {
  std::string id;
  GroupSpec spec;
  int64_t registered_ms = 0;
  int64_t last_heartbeat_ms = 0;
  int64_t items_leased = 0;
  GroupProgressInfo progress;
};

struct HeartbeatResult {
  bool was_alive = true;                    // false: the last contact was more than a lease ago
  std::vector<std::string> cancel_job_ids;  // cancelled jobs whose items the group holds
};

struct ExpiredLeases {
  int64_t requeued = 0;   // items back in the queue (to be leased alone)
  int64_t failed = 0;     // items that had used up max_attempts: failed with an error
  int64_t cancelled = 0;  // items of cancelled jobs
};

struct QueueCounts {
  int64_t items_queued = 0;
  int64_t items_leased = 0;
  int32_t jobs_active = 0;  // QUEUED or RUNNING
};

class JobStore {
 public:
  static StatusOr<std::unique_ptr<JobStore>> Open(JobStoreOptions options);

  int64_t NowMs() const;

  // Jobs. CreateJob rejects an empty item list.
  StatusOr<JobInfo> CreateJob(const std::vector<NewItem>& items, const std::string& label);
  StatusOr<JobInfo> GetJob(const std::string& job_id);
  StatusOr<std::vector<JobInfo>> ListJobs(int32_t limit);  // newest first; limit <= 0: all
  // Marks the job CANCELLED and its queued items with it; a finished job is returned unchanged.
  StatusOr<JobInfo> CancelJob(const std::string& job_id);
  // Results with offset <= position < offset + limit (positions count stored results from 0).
  StatusOr<ResultsPage> FetchResults(const std::string& job_id, int64_t offset, int32_t limit);

  // Worker groups.
  StatusOr<std::string> RegisterGroup(const GroupSpec& spec);
  // Records the contact and extends every lease the group holds to now + lease_s.
  StatusOr<HeartbeatResult> Heartbeat(const std::string& group_id,
                                      const GroupProgressInfo& progress, int32_t lease_s);
  // Leases up to `n` queued items (oldest first) to the group for `lease_s` seconds; an item
  // whose earlier lease expired is leased alone. With a `request_id`, a repeated request returns
  // the items it leased the first time (still leased to the group and not yet reported), their
  // leases renewed, instead of leasing more.
  StatusOr<std::vector<LeasedItem>> LeaseItems(const std::string& group_id, int32_t n,
                                               int32_t lease_s, const std::string& request_id = "");
  // Stores each outcome unless its item already has one (idempotent). Unknown item ids reject
  // the whole call. `group_id` (empty, or a registered group) is recorded with the result.
  StatusOr<CompleteCounts> CompleteItems(const std::string& group_id,
                                         const std::vector<ItemOutcome>& outcomes);
  // Ends the leases that expired at or before `now_ms`: their items go back to the queue, or
  // fail once they have had max_attempts leases, or are cancelled with their job.
  StatusOr<ExpiredLeases> ExpireLeases(int64_t now_ms);

  StatusOr<std::vector<GroupInfo>> ListGroups();
  StatusOr<QueueCounts> CountQueue();

 private:
  JobStore(JobStoreOptions options, std::unique_ptr<SqliteDb> db);
  Status CreateSchema();
  StatusOr<JobInfo> GetJobLocked(const std::string& job_id);
  Status CheckGroupLocked(const std::string& group_id);
  // Stores `outcome` as its item's result unless it has one; *stored says whether it did.
  // Finishes the item and counts it in its job (which ends with its last item).
  Status StoreOutcomeLocked(const std::string& group_id, const ItemOutcome& outcome, int64_t now,
                            bool* stored);
  std::string NewId(const char* prefix);

  JobStoreOptions options_;
  std::mutex mu_;
  std::unique_ptr<SqliteDb> db_;  // guarded by mu_
  uint64_t id_state_;             // guarded by mu_
};

}  // namespace df11
