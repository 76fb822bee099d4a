// SPDX-License-Identifier: Apache-2.0
// The control plane: df11-ctl and worker groups (df11-run serve) talk to df11-coordinator.
// Jobs, health and results only; never per-step tensors (those go over MPI/NCCL).
// Every call carries `token` (the coordinator's shared secret); a wrong one raises Unauthorized.
// Times are milliseconds since the Unix epoch; durations are seconds.

namespace cpp df11.rpc

enum JobState {
  QUEUED = 1,     // no item leased yet
  RUNNING = 2,    // some items leased or finished
  DONE = 3,       // every item has a result (some of them may be errors)
  CANCELLED = 4,  // cancelled by a user; results stored so far stay readable
  FAILED = 5,     // every item failed (e.g. every input line was invalid)
}

exception InvalidRequest { 1: string message }
exception Unauthorized { 1: string message }
exception NotFound { 1: string message }

// One input line of a submitted batch. A non-empty `error` records a line df11-ctl could not
// parse: the item is stored as failed with that error and is never leased.
struct ItemInput {
  1: string custom_id,
  2: string request_json,
  3: string error,
}

// A unit of work as a worker group leases it.
struct Item {
  1: i64 item_id,
  2: string job_id,
  3: string custom_id,
  4: string request_json,
  5: string lease_id,         // set by LeaseWork
  6: i64 lease_expiry_ms,     // set by LeaseWork; Heartbeat extends it
}

struct Job {
  1: string id,
  2: JobState state,
  3: i64 items_total,
  4: i64 items_done,          // finished with a response
  5: i64 items_failed,        // finished with an error (invalid lines included)
  6: i64 tokens_generated,
  7: i64 created_ms,
  8: i64 updated_ms,
  9: double eta_s,            // -1 while unknown, 0 once finished
  10: double tokens_per_s,    // since the first lease
  11: string label,
}

// What a worker reports for one item: `response_json` on success, else `error`.
struct ItemOutcome {
  1: string response_json,
  2: string error,
  3: i64 completion_tokens,
}

struct ItemResult {
  1: i64 item_id,
  2: string custom_id,
  3: string response_json,
  4: string error,
  5: i64 completion_tokens,
}

// Results in the order they were stored; `next_offset` is the offset of the next page.
struct ResultPage {
  1: list<ItemResult> results,
  2: i64 next_offset,
  3: bool end_of_job,         // the job is finished and this page holds its last results
}

struct WorkerGroupInfo {
  1: i32 ranks,
  2: list<string> hosts,
  3: list<string> devices,    // e.g. "node1:cuda:0", one per rank
  4: string manifest_hash,    // identifies the sharded model the group serves
}

struct Registration {
  1: string group_id,
  2: i32 lease_s,             // leases last this long unless a heartbeat extends them
}

struct GroupProgress {
  1: i32 items_in_flight,
  2: i64 tokens_generated,
  3: double tokens_per_s,
}

struct HeartbeatReply {
  // false: the coordinator had declared the group dead (no heartbeat for longer than a lease),
  // so some of its leases may have gone back to the queue; its late results are still accepted.
  1: bool ok,
  2: list<string> cancel_job_ids,   // stop work on these jobs' items
}

struct ReportReply {
  1: i32 stored,              // results stored by this call
  2: i32 duplicates,          // items that already had a result (ignored)
}

struct GroupStatus {
  1: string group_id,
  2: i32 ranks,
  3: list<string> hosts,
  4: list<string> devices,
  5: string manifest_hash,
  6: i64 registered_ms,
  7: i64 last_heartbeat_ms,
  8: bool alive,
  9: i32 items_leased,
  10: GroupProgress progress,
}

struct ClusterState {
  1: list<GroupStatus> groups,
  2: i64 items_queued,
  3: i64 items_leased,
  4: i32 jobs_active,
  5: i64 now_ms,
}

service Df11Control {
  Job SubmitJob(1: string token, 2: list<ItemInput> items, 3: string label)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized),
  Job GetJob(1: string token, 2: string job_id)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized, 3: NotFound not_found),
  // Newest first, at most `limit` (<= 0: all).
  list<Job> ListJobs(1: string token, 2: i32 limit)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized),
  Job CancelJob(1: string token, 2: string job_id)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized, 3: NotFound not_found),
  ResultPage FetchResults(1: string token, 2: string job_id, 3: i64 offset, 4: i32 limit)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized, 3: NotFound not_found),

  Registration RegisterWorkerGroup(1: string token, 2: WorkerGroupInfo group)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized),
  HeartbeatReply Heartbeat(1: string token, 2: string group_id, 3: GroupProgress progress)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized, 3: NotFound not_found),
  // request_id: chosen by the group, the same for every retry of one request. A retry whose
  // first reply was lost (e.g. the coordinator restarted) gets the same items back: the group's
  // heartbeats keep its leases alive, so items leased by a lost reply would otherwise be stranded.
  // Empty: every call leases new items.
  list<Item> LeaseWork(1: string token, 2: string group_id, 3: i32 max_items, 4: string request_id)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized, 3: NotFound not_found),
  ReportReply ReportResults(1: string token, 2: string group_id, 3: map<i64, ItemOutcome> results)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized, 3: NotFound not_found),
  ClusterState ClusterStatus(1: string token)
      throws (1: InvalidRequest invalid, 2: Unauthorized unauthorized),
}
