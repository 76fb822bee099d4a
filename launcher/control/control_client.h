// SPDX-License-Identifier: Apache-2.0
// ControlClient: a Df11Control connection for df11-ctl and for a worker group's leader. Every
// method returns a Status instead of throwing: InvalidRequest -> kInvalidArgument, Unauthorized
// -> kUnauthenticated, NotFound -> kNotFound, a transport failure or timeout -> kIoError. It
// connects on first use and reconnects after a failure; calls that are safe to repeat (all but
// SubmitJob) are retried once on a fresh connection. Not thread-safe: one client per thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "Df11Control.h"
#include "runtime/core/status.h"

namespace apache::thrift::transport {
class TTransport;
}

namespace df11 {

struct ControlClientOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string token;
  int32_t connect_timeout_ms = 5000;
  int32_t rpc_timeout_ms = 60000;        // bound on each send and receive
  int64_t max_message_bytes = 64 << 20;  // largest response accepted
};

// Parses "HOST:PORT" (the host may be a name or an IPv4 address).
Status ParseHostPort(const std::string& text, std::string* host, int* port);

class ControlClient {
 public:
  explicit ControlClient(ControlClientOptions options);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Jobs.
  StatusOr<rpc::Job> SubmitJob(const std::vector<rpc::ItemInput>& items, const std::string& label);
  StatusOr<rpc::Job> GetJob(const std::string& job_id);
  StatusOr<std::vector<rpc::Job>> ListJobs(int32_t limit = 0);
  StatusOr<rpc::Job> CancelJob(const std::string& job_id);
  StatusOr<rpc::ResultPage> FetchResults(const std::string& job_id, int64_t offset, int32_t limit);

  // Worker groups (the leader rank of df11-run serve).
  StatusOr<rpc::Registration> RegisterWorkerGroup(const rpc::WorkerGroupInfo& group);
  StatusOr<rpc::HeartbeatReply> Heartbeat(const std::string& group_id,
                                          const rpc::GroupProgress& progress);
  // `request_id`: the same for every retry of one request (see df11.thrift); "" leases anew.
  StatusOr<std::vector<rpc::Item>> LeaseWork(const std::string& group_id, int32_t max_items,
                                             const std::string& request_id = "");
  StatusOr<rpc::ReportReply> ReportResults(const std::string& group_id,
                                           const std::map<int64_t, rpc::ItemOutcome>& results);
  StatusOr<rpc::ClusterState> ClusterStatus();

  const ControlClientOptions& options() const { return options_; }

 private:
  // Runs `call(client)`, mapping Thrift exceptions to a Status; `retry`: once more after a
  // transport failure.
  template <typename Fn>
  Status Call(const char* what, bool retry, Fn&& call);
  Status Connect();
  void Disconnect();

  ControlClientOptions options_;
  std::shared_ptr<apache::thrift::transport::TTransport> transport_;
  std::unique_ptr<rpc::Df11ControlClient> client_;
};

}  // namespace df11
