// SPDX-License-Identifier: Apache-2.0
#include "launcher/control/job_store.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "launcher/control/job_schema.h"

namespace df11 {
namespace {

constexpr char kJobColumns[] =
    "id, label, state, items_total, items_done, items_failed, items_invalid, tokens_generated, "
    "created_ms, updated_ms, started_ms";

JobState ParseJobState(const std::string& s) {
  if (s == "RUNNING") return JobState::kRunning;
  if (s == "DONE") return JobState::kDone;
  if (s == "CANCELLED") return JobState::kCancelled;
  if (s == "FAILED") return JobState::kFailed;
  return JobState::kQueued;
}

bool IsFinished(JobState s) {
  return s == JobState::kDone || s == JobState::kCancelled || s == JobState::kFailed;
}

// Reads a row selected with kJobColumns and derives the rate and ETA at `now_ms`.
JobInfo ReadJob(const SqliteStatement& st, int64_t now_ms) {
  JobInfo j;
  j.id = st.Text(0);
  j.label = st.Text(1);
  j.state = ParseJobState(st.Text(2));
  j.items_total = st.Int(3);
  j.items_done = st.Int(4);
  j.items_failed = st.Int(5);
  const int64_t invalid = st.Int(6);
  j.tokens_generated = st.Int(7);
  j.created_ms = st.Int(8);
  j.updated_ms = st.Int(9);
  j.started_ms = st.Int(10);
  if (IsFinished(j.state)) j.eta_s = 0;
  if (j.started_ms > 0) {
    const int64_t end_ms = IsFinished(j.state) ? j.updated_ms : now_ms;
    const double elapsed_s = std::max<int64_t>(end_ms - j.started_ms, 1) / 1000.0;
    j.tokens_per_s = j.tokens_generated / elapsed_s;
    const int64_t worked = j.items_done + j.items_failed - invalid;
    if (!IsFinished(j.state) && worked > 0) {
      const int64_t remaining = j.items_total - j.items_done - j.items_failed;
      j.eta_s = remaining * elapsed_s / worked;
    }
  }
  return j;
}

// The error of an item whose leases expired `attempts` times.
std::string ExpiredAttemptsError(int64_t attempts, int32_t max_attempts) {
  return "no result after " + std::to_string(attempts) + (attempts == 1 ? " attempt" : " attempts") +
         ": each worker group that leased the item stopped heartbeating before reporting it (it "
         "died or hung; the request may crash it); df11-coordinator --max-attempts is " +
         std::to_string(max_attempts);
}

std::string JsonList(const std::vector<std::string>& v) { return nlohmann::json(v).dump(); }

std::vector<std::string> ParseJsonList(const std::string& s) {
  nlohmann::json j = nlohmann::json::parse(s, nullptr, false);
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& x : j) {
    if (x.is_string()) out.push_back(x.get<std::string>());
  }
  return out;
}

}  // namespace

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "QUEUED";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kDone:
      return "DONE";
    case JobState::kCancelled:
      return "CANCELLED";
    case JobState::kFailed:
      return "FAILED";
  }
  return "QUEUED";
}

JobStore::JobStore(JobStoreOptions options, std::unique_ptr<SqliteDb> db)
    : options_(std::move(options)), db_(std::move(db)) {
  std::random_device rd;
  id_state_ = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
              static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

StatusOr<std::unique_ptr<JobStore>> JobStore::Open(JobStoreOptions options) {
  if (options.path.empty()) return Status::InvalidArgument("job store: empty database path");
  if (options.max_attempts < 1) {
    return Status::InvalidArgument("job store: max attempts " +
                                   std::to_string(options.max_attempts) + " < 1");
  }
  DF11_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(options.path));
  std::unique_ptr<JobStore> store(new JobStore(std::move(options), std::move(db)));
  DF11_RETURN_IF_ERROR(store->CreateSchema());
  return store;
}

Status JobStore::CreateSchema() {
  // WAL keeps readers off the writer's path; FULL syncs the WAL on every commit, so a
  // committed state change survives power loss, not only a process kill.
  DF11_RETURN_IF_ERROR(db_->Exec("PRAGMA journal_mode=WAL"));
  DF11_RETURN_IF_ERROR(db_->Exec("PRAGMA synchronous=FULL"));
  DF11_RETURN_IF_ERROR(db_->Exec("PRAGMA foreign_keys=ON"));
  DF11_RETURN_IF_ERROR(db_->Exec("PRAGMA busy_timeout=10000"));
  SqliteTransaction tx(*db_);
  DF11_RETURN_IF_ERROR(tx.status());
  DF11_RETURN_IF_ERROR(db_->Exec(kSchema));
  return tx.Commit();
}

int64_t JobStore::NowMs() const {
  if (options_.clock_ms) return options_.clock_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string JobStore::NewId(const char* prefix) {
  // splitmix64 over a random seed: ids are unique within a store and unlikely to repeat across
  // stores, which keeps a job id from an old database from naming a job in a new one.
  id_state_ += 0x9e3779b97f4a7c15ULL;
  uint64_t z = id_state_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%s-%016llx", prefix, static_cast<unsigned long long>(z));
  return buf;
}

StatusOr<JobInfo> JobStore::CreateJob(const std::vector<NewItem>& items, const std::string& label) {
  if (items.empty()) return Status::InvalidArgument("job has no items");
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = NowMs();
  const std::string job_id = NewId("job");
  int64_t invalid = 0;
  for (const NewItem& item : items) invalid += item.error.empty() ? 0 : 1;
  SqliteTransaction tx(*db_);
  DF11_RETURN_IF_ERROR(tx.status());
  const bool all_invalid = invalid == static_cast<int64_t>(items.size());
  SqliteStatement job(*db_,
                      "INSERT INTO jobs (id, label, state, items_total, items_failed, "
                      "items_invalid, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  DF11_RETURN_IF_ERROR(job.Bind(1, job_id)
                           .Bind(2, label)
                           .Bind(3, std::string(all_invalid ? "FAILED" : "QUEUED"))
                           .Bind(4, static_cast<int64_t>(items.size()))
                           .Bind(5, invalid)
                           .Bind(6, invalid)
                           .Bind(7, now)
                           .Bind(8, now)
                           .Run());
  SqliteStatement insert_item(*db_,
                              "INSERT INTO items (job_id, line, custom_id, request_json, state) "
                              "VALUES (?, ?, ?, ?, ?)");
  SqliteStatement insert_result(*db_,
                                "INSERT INTO results (item_id, job_id, seq, response_json, error, "
                                "completion_tokens, group_id, stored_ms) "
                                "VALUES (?, ?, ?, '', ?, 0, '', ?)");
  int64_t seq = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const NewItem& item = items[i];
    insert_item.Reset();
    DF11_RETURN_IF_ERROR(insert_item.Bind(1, job_id)
                             .Bind(2, static_cast<int64_t>(i))
                             .Bind(3, item.custom_id)
                             .Bind(4, item.request_json)
                             .Bind(5, std::string(item.error.empty() ? "QUEUED" : "FAILED"))
                             .Run());
    if (item.error.empty()) continue;
    const int64_t item_id = sqlite3_last_insert_rowid(db_->handle());
    insert_result.Reset();
    DF11_RETURN_IF_ERROR(insert_result.Bind(1, item_id)
                             .Bind(2, job_id)
                             .Bind(3, seq++)
                             .Bind(4, item.error)
                             .Bind(5, now)
                             .Run());
  }
  DF11_RETURN_IF_ERROR(tx.Commit());
  return GetJobLocked(job_id);
}

StatusOr<JobInfo> JobStore::GetJobLocked(const std::string& job_id) {
  SqliteStatement st(*db_,
                     (std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?").c_str());
  st.Bind(1, job_id);
  DF11_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("no job \"" + job_id + "\"");
  return ReadJob(st, NowMs());
}

StatusOr<JobInfo> JobStore::GetJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return GetJobLocked(job_id);
}

StatusOr<std::vector<JobInfo>> JobStore::ListJobs(int32_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  SqliteStatement st(*db_, (std::string("SELECT ") + kJobColumns +
                            " FROM jobs ORDER BY created_ms DESC, rowid DESC LIMIT ?")
                               .c_str());
  st.Bind(1, static_cast<int64_t>(limit > 0 ? limit : -1));
  std::vector<JobInfo> jobs;
  const int64_t now = NowMs();
  for (;;) {
    DF11_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    jobs.push_back(ReadJob(st, now));
  }
  return jobs;
}

StatusOr<JobInfo> JobStore::CancelJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  SqliteTransaction tx(*db_);
  DF11_RETURN_IF_ERROR(tx.status());
  DF11_ASSIGN_OR_RETURN(JobInfo job, GetJobLocked(job_id));
  if (IsFinished(job.state)) return job;
  SqliteStatement update(*db_, "UPDATE jobs SET state = 'CANCELLED', updated_ms = ? WHERE id = ?");
  DF11_RETURN_IF_ERROR(update.Bind(1, NowMs()).Bind(2, job_id).Run());
  SqliteStatement items(
      *db_, "UPDATE items SET state = 'CANCELLED' WHERE job_id = ? AND state = 'QUEUED'");
  DF11_RETURN_IF_ERROR(items.Bind(1, job_id).Run());
  DF11_RETURN_IF_ERROR(tx.Commit());
  return GetJobLocked(job_id);
}

StatusOr<ResultsPage> JobStore::FetchResults(const std::string& job_id, int64_t offset,
                                             int32_t limit) {
  if (offset < 0)
    return Status::InvalidArgument("results offset " + std::to_string(offset) + " < 0");
  if (limit <= 0)
    return Status::InvalidArgument("results limit " + std::to_string(limit) + " <= 0");
  std::lock_guard<std::mutex> lock(mu_);
  DF11_ASSIGN_OR_RETURN(JobInfo job, GetJobLocked(job_id));
  SqliteStatement st(
      *db_,
      "SELECT r.item_id, i.custom_id, r.response_json, r.error, "
      "r.completion_tokens, r.seq FROM results r JOIN items i ON i.item_id = r.item_id "
      "WHERE r.job_id = ? AND r.seq >= ? ORDER BY r.seq LIMIT ?");
  st.Bind(1, job_id).Bind(2, offset).Bind(3, static_cast<int64_t>(limit));
  ResultsPage page;
  page.next_offset = offset;
  for (;;) {
    DF11_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    page.results.push_back({st.Int(0), st.Text(1), st.Text(2), st.Text(3), st.Int(4)});
    page.next_offset = st.Int(5) + 1;
  }
  // The job row was read under the same lock, so its counts match the results table.
  page.end_of_job = IsFinished(job.state) && page.next_offset >= job.items_done + job.items_failed;
  return page;
}

StatusOr<std::string> JobStore::RegisterGroup(const GroupSpec& spec) {
  if (spec.ranks <= 0) return Status::InvalidArgument("worker group: ranks must be > 0");
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = NowMs();
  const std::string id = NewId("group");
  SqliteStatement st(*db_,
                     "INSERT INTO worker_groups (id, ranks, hosts, devices, manifest_hash, "
                     "registered_ms, last_heartbeat_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
  DF11_RETURN_IF_ERROR(st.Bind(1, id)
                           .Bind(2, static_cast<int64_t>(spec.ranks))
                           .Bind(3, JsonList(spec.hosts))
                           .Bind(4, JsonList(spec.devices))
                           .Bind(5, spec.manifest_hash)
                           .Bind(6, now)
                           .Bind(7, now)
                           .Run());
  return id;
}

Status JobStore::CheckGroupLocked(const std::string& group_id) {
  SqliteStatement st(*db_, "SELECT 1 FROM worker_groups WHERE id = ?");
  st.Bind(1, group_id);
  DF11_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("no worker group \"" + group_id + "\" (register first)");
  return Status::Ok();
}

StatusOr<HeartbeatResult> JobStore::Heartbeat(const std::string& group_id,
                                              const GroupProgressInfo& progress, int32_t lease_s) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = NowMs();
  SqliteTransaction tx(*db_);
  DF11_RETURN_IF_ERROR(tx.status());
  SqliteStatement last(*db_, "SELECT last_heartbeat_ms FROM worker_groups WHERE id = ?");
  last.Bind(1, group_id);
  DF11_ASSIGN_OR_RETURN(bool found, last.Step());
  if (!found) return Status::NotFound("no worker group \"" + group_id + "\" (register first)");
  HeartbeatResult result;
  result.was_alive = now - last.Int(0) <= int64_t{lease_s} * 1000;
  SqliteStatement group(*db_,
                        "UPDATE worker_groups SET last_heartbeat_ms = ?, items_in_flight = ?, "
                        "tokens_generated = ?, tokens_per_s = ? WHERE id = ?");
  DF11_RETURN_IF_ERROR(group.Bind(1, now)
                           .Bind(2, static_cast<int64_t>(progress.items_in_flight))
                           .Bind(3, progress.tokens_generated)
                           .Bind(4, progress.tokens_per_s)
                           .Bind(5, group_id)
                           .Run());
  SqliteStatement extend(
      *db_, "UPDATE items SET lease_expiry_ms = ? WHERE group_id = ? AND state = 'LEASED'");
  DF11_RETURN_IF_ERROR(extend.Bind(1, now + int64_t{lease_s} * 1000).Bind(2, group_id).Run());
  SqliteStatement cancelled(
      *db_,
      "SELECT DISTINCT i.job_id FROM items i JOIN jobs j ON j.id = i.job_id "
      "WHERE i.group_id = ? AND i.state = 'LEASED' AND j.state = 'CANCELLED'");
  cancelled.Bind(1, group_id);
  for (;;) {
    DF11_ASSIGN_OR_RETURN(bool row, cancelled.Step());
    if (!row) break;
    result.cancel_job_ids.push_back(cancelled.Text(0));
  }
  DF11_RETURN_IF_ERROR(tx.Commit());
  return result;
}

StatusOr<std::vector<LeasedItem>> JobStore::LeaseItems(const std::string& group_id, int32_t n,
                                                       int32_t lease_s,
                                                       const std::string& request_id) {
  if (n <= 0) return Status::InvalidArgument("lease: max items " + std::to_string(n) + " <= 0");
  if (lease_s <= 0) return Status::InvalidArgument("lease: duration must be > 0 s");
  if (request_id.size() > 200) {
    return Status::InvalidArgument("lease: request id longer than 200 bytes");
  }
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = NowMs();
  const int64_t expiry = now + int64_t{lease_s} * 1000;
  SqliteTransaction tx(*db_);
  DF11_RETURN_IF_ERROR(tx.status());
  DF11_RETURN_IF_ERROR(CheckGroupLocked(group_id));
  // A request's items share the lease id "<group>/<request>"; a repeat finds them by it.
  const std::string request_lease = request_id.empty() ? "" : group_id + "/" + request_id;
  if (!request_lease.empty()) {
    SqliteStatement again(*db_,
                          "SELECT item_id, job_id, custom_id, request_json FROM items "
                          "WHERE state = 'LEASED' AND group_id = ? AND lease_id = ? "
                          "ORDER BY item_id");
    again.Bind(1, group_id).Bind(2, request_lease);
    std::vector<LeasedItem> items;
    for (;;) {
      DF11_ASSIGN_OR_RETURN(bool row, again.Step());
      if (!row) break;
      items.push_back({again.Int(0), again.Text(1), again.Text(2), again.Text(3), request_lease,
                       expiry});
    }
    if (!items.empty()) {
      SqliteStatement renew(*db_, "UPDATE items SET lease_expiry_ms = ? WHERE lease_id = ? AND "
                                  "state = 'LEASED'");
      DF11_RETURN_IF_ERROR(renew.Bind(1, expiry).Bind(2, request_lease).Run());
      SqliteStatement touch(*db_, "UPDATE worker_groups SET last_heartbeat_ms = ? WHERE id = ?");
      DF11_RETURN_IF_ERROR(touch.Bind(1, now).Bind(2, group_id).Run());
      DF11_RETURN_IF_ERROR(tx.Commit());
      return items;
    }
  }
  // An item leased before (attempts > 0) is back because that lease expired: it goes out alone,
  // so if it is what kills its groups, no other item is in the lease it takes down.
  SqliteStatement select(*db_,
                         "SELECT item_id, job_id, custom_id, request_json, attempts FROM items "
                         "WHERE state = 'QUEUED' ORDER BY item_id LIMIT ?");
  select.Bind(1, static_cast<int64_t>(n));
  std::vector<LeasedItem> items;
  for (;;) {
    DF11_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    const bool retry = select.Int(4) > 0;
    if (retry && !items.empty()) break;
    items.push_back({select.Int(0), select.Text(1), select.Text(2), select.Text(3),
                     request_lease.empty() ? NewId("lease") : request_lease, expiry});
    if (retry) break;
  }
  SqliteStatement lease(*db_,
                        "UPDATE items SET state = 'LEASED', lease_id = ?, lease_expiry_ms = ?, "
                        "group_id = ?, attempts = attempts + 1 WHERE item_id = ?");
  SqliteStatement start(*db_,
                        "UPDATE jobs SET state = 'RUNNING', started_ms = ?, updated_ms = ? "
                        "WHERE id = ? AND state = 'QUEUED'");
  for (const LeasedItem& item : items) {
    lease.Reset();
    DF11_RETURN_IF_ERROR(
        lease.Bind(1, item.lease_id).Bind(2, expiry).Bind(3, group_id).Bind(4, item.item_id).Run());
    start.Reset();
    DF11_RETURN_IF_ERROR(start.Bind(1, now).Bind(2, now).Bind(3, item.job_id).Run());
  }
  SqliteStatement touch(*db_, "UPDATE worker_groups SET last_heartbeat_ms = ? WHERE id = ?");
  DF11_RETURN_IF_ERROR(touch.Bind(1, now).Bind(2, group_id).Run());
  DF11_RETURN_IF_ERROR(tx.Commit());
  return items;
}

Status JobStore::StoreOutcomeLocked(const std::string& group_id, const ItemOutcome& outcome,
                                    int64_t now, bool* stored) {
  *stored = false;
  SqliteStatement item(*db_,
                       "SELECT i.job_id, j.items_done + j.items_failed FROM items i "
                       "JOIN jobs j ON j.id = i.job_id WHERE i.item_id = ?");
  item.Bind(1, outcome.item_id);
  DF11_ASSIGN_OR_RETURN(bool found, item.Step());
  if (!found) return Status::InvalidArgument("no item " + std::to_string(outcome.item_id));
  const std::string job_id = item.Text(0);
  const int64_t seq = item.Int(1);
  SqliteStatement insert(*db_,
                         "INSERT INTO results (item_id, job_id, seq, response_json, error, "
                         "completion_tokens, group_id, stored_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT (item_id) DO NOTHING");
  DF11_RETURN_IF_ERROR(insert.Bind(1, outcome.item_id)
                           .Bind(2, job_id)
                           .Bind(3, seq)
                           .Bind(4, outcome.response_json)
                           .Bind(5, outcome.error)
                           .Bind(6, outcome.completion_tokens)
                           .Bind(7, group_id)
                           .Bind(8, now)
                           .Run());
  if (db_->Changes() == 0) return Status::Ok();  // already has a result
  *stored = true;
  const bool ok = outcome.error.empty();
  SqliteStatement finish(*db_,
                         "UPDATE items SET state = ?, lease_id = NULL, lease_expiry_ms = NULL "
                         "WHERE item_id = ?");
  DF11_RETURN_IF_ERROR(
      finish.Bind(1, std::string(ok ? "DONE" : "FAILED")).Bind(2, outcome.item_id).Run());
  // A job whose last item lands here becomes DONE, or FAILED when no item succeeded.
  SqliteStatement count(
      *db_,
      "UPDATE jobs SET items_done = items_done + ?, items_failed = items_failed + ?, "
      "tokens_generated = tokens_generated + ?, updated_ms = ?, "
      "state = CASE WHEN state IN ('QUEUED', 'RUNNING') AND "
      "items_done + items_failed + 1 >= items_total THEN "
      "(CASE WHEN items_done + ? > 0 THEN 'DONE' ELSE 'FAILED' END) "
      "ELSE state END WHERE id = ?");
  return count.Bind(1, int64_t{ok ? 1 : 0})
      .Bind(2, int64_t{ok ? 0 : 1})
      .Bind(3, outcome.completion_tokens)
      .Bind(4, now)
      .Bind(5, int64_t{ok ? 1 : 0})
      .Bind(6, job_id)
      .Run();
}

StatusOr<CompleteCounts> JobStore::CompleteItems(const std::string& group_id,
                                                 const std::vector<ItemOutcome>& outcomes) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = NowMs();
  SqliteTransaction tx(*db_);
  DF11_RETURN_IF_ERROR(tx.status());
  if (!group_id.empty()) DF11_RETURN_IF_ERROR(CheckGroupLocked(group_id));
  CompleteCounts counts;
  for (const ItemOutcome& outcome : outcomes) {
    bool stored = false;
    DF11_RETURN_IF_ERROR(StoreOutcomeLocked(group_id, outcome, now, &stored));
    ++(stored ? counts.stored : counts.duplicates);
  }
  DF11_RETURN_IF_ERROR(tx.Commit());
  return counts;
}

StatusOr<ExpiredLeases> JobStore::ExpireLeases(int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  SqliteTransaction tx(*db_);
  DF11_RETURN_IF_ERROR(tx.status());
  ExpiredLeases expired;
  // An item of a cancelled job goes to CANCELLED instead of back to the queue.
  SqliteStatement cancel(
      *db_,
      "UPDATE items SET state = 'CANCELLED', lease_id = NULL, lease_expiry_ms = NULL, "
      "group_id = NULL WHERE state = 'LEASED' AND lease_expiry_ms <= ? AND "
      "(SELECT state FROM jobs WHERE jobs.id = items.job_id) = 'CANCELLED'");
  DF11_RETURN_IF_ERROR(cancel.Bind(1, now_ms).Run());
  expired.cancelled = db_->Changes();
  // Every lease of an item ended this way (a result ends it otherwise), so `attempts` counts
  // expired leases: an item that has had max_attempts fails, whatever it does to its groups.
  SqliteStatement used_up(*db_,
                          "SELECT item_id, attempts FROM items WHERE state = 'LEASED' AND "
                          "lease_expiry_ms <= ? AND attempts >= ? ORDER BY item_id");
  used_up.Bind(1, now_ms).Bind(2, static_cast<int64_t>(options_.max_attempts));
  std::vector<ItemOutcome> failures;
  for (;;) {
    DF11_ASSIGN_OR_RETURN(bool row, used_up.Step());
    if (!row) break;
    failures.push_back(
        {used_up.Int(0), "", ExpiredAttemptsError(used_up.Int(1), options_.max_attempts), 0});
  }
  for (const ItemOutcome& failure : failures) {
    bool stored = false;
    DF11_RETURN_IF_ERROR(StoreOutcomeLocked("", failure, now_ms, &stored));
    expired.failed += stored ? 1 : 0;
  }
  SqliteStatement requeue(*db_,
                          "UPDATE items SET state = 'QUEUED', lease_id = NULL, "
                          "lease_expiry_ms = NULL, group_id = NULL "
                          "WHERE state = 'LEASED' AND lease_expiry_ms <= ?");
  DF11_RETURN_IF_ERROR(requeue.Bind(1, now_ms).Run());
  expired.requeued = db_->Changes();
  DF11_RETURN_IF_ERROR(tx.Commit());
  return expired;
}

StatusOr<std::vector<GroupInfo>> JobStore::ListGroups() {
  std::lock_guard<std::mutex> lock(mu_);
  SqliteStatement st(
      *db_,
      "SELECT g.id, g.ranks, g.hosts, g.devices, g.manifest_hash, g.registered_ms, "
      "g.last_heartbeat_ms, g.items_in_flight, g.tokens_generated, g.tokens_per_s, "
      "(SELECT COUNT(*) FROM items i WHERE i.group_id = g.id AND i.state = 'LEASED') "
      "FROM worker_groups g ORDER BY g.registered_ms, g.id");
  std::vector<GroupInfo> groups;
  for (;;) {
    DF11_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    GroupInfo g;
    g.id = st.Text(0);
    g.spec.ranks = static_cast<int32_t>(st.Int(1));
    g.spec.hosts = ParseJsonList(st.Text(2));
    g.spec.devices = ParseJsonList(st.Text(3));
    g.spec.manifest_hash = st.Text(4);
    g.registered_ms = st.Int(5);
    g.last_heartbeat_ms = st.Int(6);
    g.progress = {static_cast<int32_t>(st.Int(7)), st.Int(8), st.Double(9)};
    g.items_leased = st.Int(10);
    groups.push_back(std::move(g));
  }
  return groups;
}

StatusOr<QueueCounts> JobStore::CountQueue() {
  std::lock_guard<std::mutex> lock(mu_);
  SqliteStatement st(*db_,
                     "SELECT (SELECT COUNT(*) FROM items WHERE state = 'QUEUED'), "
                     "(SELECT COUNT(*) FROM items WHERE state = 'LEASED'), "
                     "(SELECT COUNT(*) FROM jobs WHERE state IN ('QUEUED', 'RUNNING'))");
  DF11_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::Internal("queue counts: no row");
  return QueueCounts{st.Int(0), st.Int(1), static_cast<int32_t>(st.Int(2))};
}

}  // namespace df11
