// SPDX-License-Identifier: Apache-2.0
#include "launcher/control/coordinator_server.h"

#include <glog/logging.h>
#include <thrift/TApplicationException.h>
#include <thrift/TConfiguration.h>
#include <thrift/TOutput.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/server/TThreadedServer.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TServerSocket.h>

#include <chrono>

#include "Df11Control.h"

namespace df11 {
namespace {

using apache::thrift::TApplicationException;
using apache::thrift::TConfiguration;

constexpr int32_t kMaxLeaseItems = 10000;
constexpr int32_t kMaxPageItems = 10000;

// Wraps each accepted connection in a TFramedTransport whose frames are bounded by `config`:
// an oversized frame fails that connection's read and nothing else.
class BoundedFramedTransportFactory : public apache::thrift::transport::TTransportFactory {
 public:
  explicit BoundedFramedTransportFactory(std::shared_ptr<TConfiguration> config)
      : config_(std::move(config)) {}
  std::shared_ptr<apache::thrift::transport::TTransport> getTransport(
      std::shared_ptr<apache::thrift::transport::TTransport> trans) override {
    return std::make_shared<apache::thrift::transport::TFramedTransport>(trans, config_);
  }

 private:
  std::shared_ptr<TConfiguration> config_;
};

// Tells Start() that serve() has bound its socket.
class ReadyHandler : public apache::thrift::server::TServerEventHandler {
 public:
  explicit ReadyHandler(std::function<void()> ready) : ready_(std::move(ready)) {}
  void preServe() override { ready_(); }

 private:
  std::function<void()> ready_;
};

// Thrift's own messages (a client that died, an oversized frame) go to glog like ours.
void LogThriftMessage(const char* message) { LOG(WARNING) << "thrift: " << message; }

[[noreturn]] void ThrowStatus(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kFailedPrecondition: {
      rpc::InvalidRequest e;
      e.message = s.message();
      throw e;
    }
    case StatusCode::kNotFound: {
      rpc::NotFound e;
      e.message = s.message();
      throw e;
    }
    case StatusCode::kUnauthenticated: {
      rpc::Unauthorized e;
      e.message = s.message();
      throw e;
    }
    default:
      LOG(ERROR) << "control call failed: " << s.ToString();
      throw TApplicationException(TApplicationException::INTERNAL_ERROR, s.ToString());
  }
}

template <typename T>
T Unwrap(StatusOr<T> v) {
  if (!v.ok()) ThrowStatus(v.status());
  return std::move(v).value();
}

rpc::JobState::type ToRpc(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return rpc::JobState::QUEUED;
    case JobState::kRunning:
      return rpc::JobState::RUNNING;
    case JobState::kDone:
      return rpc::JobState::DONE;
    case JobState::kCancelled:
      return rpc::JobState::CANCELLED;
    case JobState::kFailed:
      return rpc::JobState::FAILED;
  }
  return rpc::JobState::QUEUED;
}

rpc::Job ToRpc(const JobInfo& j) {
  rpc::Job r;
  r.id = j.id;
  r.state = ToRpc(j.state);
  r.items_total = j.items_total;
  r.items_done = j.items_done;
  r.items_failed = j.items_failed;
  r.tokens_generated = j.tokens_generated;
  r.created_ms = j.created_ms;
  r.updated_ms = j.updated_ms;
  r.eta_s = j.eta_s;
  r.tokens_per_s = j.tokens_per_s;
  r.label = j.label;
  return r;
}

class ControlHandler : public rpc::Df11ControlIf {
 public:
  ControlHandler(const CoordinatorOptions& options, JobStore* store)
      : options_(options), store_(store) {}

  void SubmitJob(rpc::Job& out, const std::string& token, const std::vector<rpc::ItemInput>& items,
                 const std::string& label) override {
    Authorize(token);
    std::vector<NewItem> new_items;
    new_items.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].custom_id.empty()) {
        ThrowStatus(Status::InvalidArgument("item " + std::to_string(i) + ": empty custom_id"));
      }
      new_items.push_back({items[i].custom_id, items[i].request_json, items[i].error});
    }
    out = ToRpc(Unwrap(store_->CreateJob(new_items, label)));
    LOG(INFO) << "job " << out.id << " submitted: " << out.items_total << " items ("
              << out.items_failed << " invalid)";
  }

  void GetJob(rpc::Job& out, const std::string& token, const std::string& job_id) override {
    Authorize(token);
    out = ToRpc(Unwrap(store_->GetJob(job_id)));
  }

  void ListJobs(std::vector<rpc::Job>& out, const std::string& token, int32_t limit) override {
    Authorize(token);
    for (const JobInfo& j : Unwrap(store_->ListJobs(limit))) out.push_back(ToRpc(j));
  }

  void CancelJob(rpc::Job& out, const std::string& token, const std::string& job_id) override {
    Authorize(token);
    out = ToRpc(Unwrap(store_->CancelJob(job_id)));
    LOG(INFO) << "job " << job_id << " cancel requested: now " << rpc::to_string(out.state);
  }

  void FetchResults(rpc::ResultPage& out, const std::string& token, const std::string& job_id,
                    int64_t offset, int32_t limit) override {
    Authorize(token);
    if (limit > kMaxPageItems) {
      ThrowStatus(Status::InvalidArgument("results limit " + std::to_string(limit) + " > " +
                                          std::to_string(kMaxPageItems)));
    }
    ResultsPage page = Unwrap(store_->FetchResults(job_id, offset, limit));
    for (StoredResult& s : page.results) {
      rpc::ItemResult r;
      r.item_id = s.item_id;
      r.custom_id = std::move(s.custom_id);
      r.response_json = std::move(s.response_json);
      r.error = std::move(s.error);
      r.completion_tokens = s.completion_tokens;
      out.results.push_back(std::move(r));
    }
    out.next_offset = page.next_offset;
    out.end_of_job = page.end_of_job;
  }

  void RegisterWorkerGroup(rpc::Registration& out, const std::string& token,
                           const rpc::WorkerGroupInfo& group) override {
    Authorize(token);
    GroupSpec spec{group.ranks, group.hosts, group.devices, group.manifest_hash};
    out.group_id = Unwrap(store_->RegisterGroup(spec));
    out.lease_s = options_.lease_s;
    LOG(INFO) << "worker group " << out.group_id << " registered: " << group.ranks << " ranks";
  }

  void Heartbeat(rpc::HeartbeatReply& out, const std::string& token, const std::string& group_id,
                 const rpc::GroupProgress& progress) override {
    Authorize(token);
    GroupProgressInfo p{progress.items_in_flight, progress.tokens_generated, progress.tokens_per_s};
    HeartbeatResult r = Unwrap(store_->Heartbeat(group_id, p, options_.lease_s));
    out.ok = r.was_alive;
    out.cancel_job_ids = std::move(r.cancel_job_ids);
  }

  void LeaseWork(std::vector<rpc::Item>& out, const std::string& token, const std::string& group_id,
                 int32_t max_items, const std::string& request_id) override {
    Authorize(token);
    if (max_items > kMaxLeaseItems) {
      ThrowStatus(Status::InvalidArgument("lease: max items " + std::to_string(max_items) + " > " +
                                          std::to_string(kMaxLeaseItems)));
    }
    for (LeasedItem& l :
         Unwrap(store_->LeaseItems(group_id, max_items, options_.lease_s, request_id))) {
      rpc::Item item;
      item.item_id = l.item_id;
      item.job_id = std::move(l.job_id);
      item.custom_id = std::move(l.custom_id);
      item.request_json = std::move(l.request_json);
      item.lease_id = std::move(l.lease_id);
      item.lease_expiry_ms = l.lease_expiry_ms;
      out.push_back(std::move(item));
    }
  }

  void ReportResults(rpc::ReportReply& out, const std::string& token, const std::string& group_id,
                     const std::map<int64_t, rpc::ItemOutcome>& results) override {
    Authorize(token);
    std::vector<ItemOutcome> outcomes;
    outcomes.reserve(results.size());
    for (const auto& [item_id, r] : results) {
      outcomes.push_back({item_id, r.response_json, r.error, r.completion_tokens});
    }
    CompleteCounts counts = Unwrap(store_->CompleteItems(group_id, outcomes));
    out.stored = static_cast<int32_t>(counts.stored);
    out.duplicates = static_cast<int32_t>(counts.duplicates);
  }

  void ClusterStatus(rpc::ClusterState& out, const std::string& token) override {
    Authorize(token);
    out.now_ms = store_->NowMs();
    for (GroupInfo& g : Unwrap(store_->ListGroups())) {
      rpc::GroupStatus s;
      s.group_id = std::move(g.id);
      s.ranks = g.spec.ranks;
      s.hosts = std::move(g.spec.hosts);
      s.devices = std::move(g.spec.devices);
      s.manifest_hash = std::move(g.spec.manifest_hash);
      s.registered_ms = g.registered_ms;
      s.last_heartbeat_ms = g.last_heartbeat_ms;
      s.alive = out.now_ms - g.last_heartbeat_ms <= int64_t{options_.lease_s} * 1000;
      s.items_leased = static_cast<int32_t>(g.items_leased);
      s.progress.items_in_flight = g.progress.items_in_flight;
      s.progress.tokens_generated = g.progress.tokens_generated;
      s.progress.tokens_per_s = g.progress.tokens_per_s;
      out.groups.push_back(std::move(s));
    }
    QueueCounts q = Unwrap(store_->CountQueue());
    out.items_queued = q.items_queued;
    out.items_leased = q.items_leased;
    out.jobs_active = q.jobs_active;
  }

 private:
  void Authorize(const std::string& token) const {
    if (!TokenMatches(token, options_.token)) {
      ThrowStatus(Status::Unauthenticated("wrong or missing token"));
    }
  }

  const CoordinatorOptions& options_;
  JobStore* store_;
};

}  // namespace

bool TokenMatches(const std::string& given, const std::string& expected) {
  if (expected.empty()) return false;
  // Every byte of `given` is compared, whatever matches, so timing reveals no prefix.
  volatile unsigned char diff = given.size() != expected.size() ? 1 : 0;
  for (size_t i = 0; i < given.size(); ++i) {
    diff = diff | static_cast<unsigned char>(given[i] ^ expected[i % expected.size()]);
  }
  return diff == 0;
}

CoordinatorServer::CoordinatorServer(const CoordinatorOptions& options, JobStore* store)
    : options_(options), store_(store) {}

StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options, JobStore* store) {
  if (options.token.empty()) return Status::InvalidArgument("coordinator: empty token");
  if (options.lease_s <= 0)
    return Status::InvalidArgument("coordinator: --lease-seconds must be > 0");
  if (options.max_message_bytes < 1024 || options.max_message_bytes > (int64_t{1} << 30)) {
    return Status::InvalidArgument("coordinator: --max-message-bytes must be in [1024, 2^30]");
  }
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument("coordinator: port " + std::to_string(options.port));
  }
  apache::thrift::GlobalOutput.setOutputFunction(&LogThriftMessage);
  std::unique_ptr<CoordinatorServer> self(new CoordinatorServer(options, store));
  const int max_bytes = static_cast<int>(options.max_message_bytes);
  auto config = std::make_shared<TConfiguration>(max_bytes, max_bytes);
  auto socket =
      std::make_shared<apache::thrift::transport::TServerSocket>(options.host, options.port);
  if (options.idle_timeout_s > 0) socket->setRecvTimeout(options.idle_timeout_s * 1000);
  socket->setKeepAlive(true);
  auto handler = std::make_shared<ControlHandler>(self->options_, store);
  auto server = std::make_shared<apache::thrift::server::TThreadedServer>(
      std::make_shared<rpc::Df11ControlProcessor>(handler), socket,
      std::make_shared<BoundedFramedTransportFactory>(config),
      std::make_shared<apache::thrift::protocol::TBinaryProtocolFactory>(max_bytes, max_bytes, true,
                                                                         true));
  server->setConcurrentClientLimit(options.max_connections);
  CoordinatorServer* raw = self.get();
  server->setServerEventHandler(std::make_shared<ReadyHandler>([raw, socket] {
    std::lock_guard<std::mutex> lock(raw->mu_);
    raw->port_ = socket->getPort();
    raw->serving_ = true;
    raw->cv_.notify_all();
  }));
  self->server_ = server;
  self->serve_thread_ = std::thread([raw] {
    std::string error;
    try {
      raw->server_->serve();
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::lock_guard<std::mutex> lock(raw->mu_);
    raw->finished_ = true;
    raw->serve_error_ = error;
    raw->cv_.notify_all();
  });
  {
    std::unique_lock<std::mutex> lock(self->mu_);
    self->cv_.wait(lock, [&] { return self->serving_ || self->finished_; });
    if (!self->serving_) {
      const std::string error = self->serve_error_;
      lock.unlock();
      self->Stop();
      return Status::IoError("coordinator: cannot serve on " + options.host + ":" +
                             std::to_string(options.port) + ": " + error);
    }
  }
  self->expire_thread_ = std::thread([raw] { raw->ExpireLoop(); });
  LOG(INFO) << "coordinator listening on " << options.host << ":" << self->port_;
  return self;
}

void CoordinatorServer::ExpireLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(options_.expire_interval_ms));
    if (stopping_) break;
    lock.unlock();
    StatusOr<int64_t> n = store_->ExpireLeases(store_->NowMs());
    if (!n.ok()) {
      LOG(ERROR) << "lease expiry: " << n.status().ToString();
    } else if (*n > 0) {
      LOG(INFO) << *n << " expired leases returned to the queue";
    }
    lock.lock();
  }
}

void CoordinatorServer::Stop() {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (server_) server_->stop();
  if (serve_thread_.joinable()) serve_thread_.join();
  if (expire_thread_.joinable()) expire_thread_.join();
}

void CoordinatorServer::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stopping_ || finished_; });
}

CoordinatorServer::~CoordinatorServer() { Stop(); }

}  // namespace df11
