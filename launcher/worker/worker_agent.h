// SPDX-License-Identifier: Apache-2.0
// The control loop of `df11-run serve` on a worker group's leader (rank 0). It registers the
// group with df11-coordinator, heartbeats from a background thread over its own connection (the
// calling thread computes), leases items, hands them to an ItemProcessor (the model) and reports
// outcomes keyed by item id as they come (a few at a time while the lease's other items still
// run, so a finished result is stored before the lease ends; the coordinator stores each once, so
// a retried report is harmless). With no work it polls with backoff and, after `idle_exit_s` without any, returns.
// Items of a job a heartbeat reply names as cancelled are dropped unreported. When no call has
// reached the coordinator for longer than its lease, RunWorker fails: the group exits and the
// coordinator requeues its leases for whichever group comes next (fail-stop, DESIGN.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "launcher/control/control_client.h"
#include "runtime/core/status.h"

namespace df11 {

// Takes one item's outcome; a non-OK Status stops the processor (fatal).
using OutcomeSink = std::function<Status(int64_t item_id, rpc::ItemOutcome outcome)>;

class ItemProcessor {
 public:
  virtual ~ItemProcessor() = default;
  // Serves the items, passing each one's outcome to `done` as soon as it is final (an error
  // outcome for an item that cannot be served). A non-OK Status is fatal: the model failed, and
  // the group exits.
  virtual Status Process(const std::vector<rpc::Item>& items, const OutcomeSink& done) = 0;
  // Called from the RunWorker thread at least every WorkerOptions::keepalive_s while it waits
  // (for work, for the coordinator): a distributed leader keeps its followers' timeouts away.
  virtual void KeepAlive() {}
};

struct WorkerOptions {
  ControlClientOptions control;  // coordinator address, token, timeouts
  rpc::WorkerGroupInfo group;    // what is registered
  int32_t lease_items = 8;       // items asked for per LeaseWork
  int64_t max_items = 0;         // return after serving this many (0: no limit)
  double heartbeat_s = 0;        // 0: a third of the coordinator's lease
  double idle_exit_s = 0;        // return after this long without work (0: never)
  double keepalive_s = 5;        // ItemProcessor::KeepAlive period while waiting
  double register_timeout_s = 60;  // how long to keep trying to reach the coordinator at start
  double max_poll_s = 2;           // longest pause between polls for work
};

struct WorkerSummary {
  std::string group_id;
  int64_t items = 0;   // outcomes reported and stored (errors included)
  int64_t failed = 0;  // of those, errors
  int64_t dropped = 0; // items of cancelled jobs, not reported
  int64_t tokens = 0;  // completion tokens generated
  double seconds = 0;
};

// Runs until idle_exit_s without work or max_items served (OK), or until a fatal error.
StatusOr<WorkerSummary> RunWorker(const WorkerOptions& options, ItemProcessor* processor);

}  // namespace df11
