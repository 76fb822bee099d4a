// SPDX-License-Identifier: Apache-2.0
#include "launcher/control/coordinator_server.h"

#include <glog/logging.h>
#include <thrift/TApplicationException.h>
#include <thrift/TConfiguration.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <chrono>

#include "Df11Control.h"

namespace df11 {
namespace {

using apache::thrift::TApplicationException;
using apache::thrift::TConfiguration;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::transport::TMemoryBuffer;

constexpr int32_t kMaxLeaseItems = 10000;
constexpr int32_t kMaxPageItems = 10000;
constexpr int32_t kMaxTokenBytes = 1024;  // a longer token field drops the connection

// Every Df11Control call's arguments start with field 1, the token, and every call declares
// Unauthorized as its exception field 2: so the token can be checked from a frame's first bytes,
// and a wrong one answered with the call's Unauthorized reply before the rest is read.
FrameCheck CheckToken(const std::string& expected, const uint8_t* data, size_t size,
                      bool complete) {
  auto in = std::make_shared<TMemoryBuffer>(const_cast<uint8_t*>(data), static_cast<uint32_t>(size),
                                            TMemoryBuffer::OBSERVE);
  TBinaryProtocol proto(in, kMaxTokenBytes, 1, /*strict_read=*/true, /*strict_write=*/true);
  std::string name, ignored, token;
  apache::thrift::protocol::TMessageType type;
  apache::thrift::protocol::TType field_type;
  int32_t seqid = 0;
  int16_t field_id = 0;
  try {
    proto.readMessageBegin(name, type, seqid);
    proto.readStructBegin(ignored);
    proto.readFieldBegin(ignored, field_type, field_id);
    if (type != apache::thrift::protocol::T_CALL || field_id != 1 ||
        field_type != apache::thrift::protocol::T_STRING) {
      return {FrameVerdict::kDrop, ""};
    }
    proto.readString(token);
  } catch (const apache::thrift::transport::TTransportException& e) {
    const bool short_read =
        e.getType() == apache::thrift::transport::TTransportException::END_OF_FILE;
    return {short_read && !complete ? FrameVerdict::kNeedMore : FrameVerdict::kDrop, ""};
  } catch (const apache::thrift::TException&) {
    return {FrameVerdict::kDrop, ""};
  }
  if (TokenMatches(token, expected)) return {FrameVerdict::kAccept, ""};
  auto out = std::make_shared<TMemoryBuffer>();
  TBinaryProtocol reply(out);
  reply.writeMessageBegin(name, apache::thrift::protocol::T_REPLY, seqid);
  reply.writeStructBegin("result");
  reply.writeFieldBegin("unauthorized", apache::thrift::protocol::T_STRUCT, 2);
  rpc::Unauthorized unauthorized;
  unauthorized.message = "wrong or missing token";
  unauthorized.write(&reply);
  reply.writeFieldEnd();
  reply.writeFieldStop();
  reply.writeStructEnd();
  reply.writeMessageEnd();
  return {FrameVerdict::kReject, out->getBufferAsString()};
}

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

void LogExpiredLeases(const ExpiredLeases& expired) {
  if (expired.requeued > 0) {
    LOG(INFO) << expired.requeued << " items of expired leases returned to the queue (each is "
              << "leased alone from now on)";
  }
  if (expired.failed > 0) {
    LOG(WARNING) << expired.failed << " items failed: their leases expired --max-attempts times";
  }
  if (expired.cancelled > 0) {
    LOG(INFO) << expired.cancelled << " items of expired leases belong to cancelled jobs";
  }
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
  if (options.handshake_timeout_s <= 0 || options.idle_timeout_s < 0) {
    return Status::InvalidArgument(
        "coordinator: --handshake-timeout-seconds must be > 0 and --idle-timeout-seconds >= 0");
  }
  std::unique_ptr<CoordinatorServer> self(new CoordinatorServer(options, store));
  const int max_bytes = static_cast<int>(options.max_message_bytes);
  auto config = std::make_shared<TConfiguration>(max_bytes, max_bytes);
  auto processor = std::make_shared<rpc::Df11ControlProcessor>(
      std::make_shared<ControlHandler>(self->options_, store));
  FrameServerOptions frames;
  frames.host = options.host;
  frames.port = options.port;
  frames.max_frame_bytes = options.max_message_bytes;
  frames.max_connections = options.max_connections;
  frames.max_unauthenticated = options.max_unauthenticated;
  frames.handshake_timeout_s = options.handshake_timeout_s;
  frames.idle_timeout_s = options.idle_timeout_s;
  const std::string token = options.token;
  auto check = [token](const uint8_t* data, size_t size, bool complete) {
    return CheckToken(token, data, size, complete);
  };
  auto serve = [processor, config, max_bytes](const std::string& request, std::string* reply) {
    auto in = std::make_shared<TMemoryBuffer>(
        reinterpret_cast<uint8_t*>(const_cast<char*>(request.data())),
        static_cast<uint32_t>(request.size()), TMemoryBuffer::OBSERVE, config);
    auto out = std::make_shared<TMemoryBuffer>(config);
    try {
      processor->process(std::make_shared<TBinaryProtocol>(in, max_bytes, max_bytes, true, true),
                         std::make_shared<TBinaryProtocol>(out), nullptr);
    } catch (const apache::thrift::TException& e) {
      LOG_EVERY_N(WARNING, 100) << "malformed request: " << e.what();
      return false;
    }
    *reply = out->getBufferAsString();
    return true;
  };
  StatusOr<std::unique_ptr<FrameServer>> server = FrameServer::Start(frames, check, serve);
  if (!server.ok()) return server.status().WithContext("coordinator");
  self->frames_ = std::move(server).value();
  CoordinatorServer* raw = self.get();
  self->expire_thread_ = std::thread([raw] { raw->ExpireLoop(); });
  LOG(INFO) << "coordinator listening on " << options.host << ":" << self->port();
  return self;
}

void CoordinatorServer::ExpireLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(options_.expire_interval_ms));
    if (stopping_) break;
    lock.unlock();
    StatusOr<ExpiredLeases> n = store_->ExpireLeases(store_->NowMs());
    if (!n.ok()) {
      LOG(ERROR) << "lease expiry: " << n.status().ToString();
    } else {
      LogExpiredLeases(*n);
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
  if (frames_) frames_->Stop();
  if (expire_thread_.joinable()) expire_thread_.join();
}

Status CoordinatorServer::Wait() { return frames_->Wait(); }

CoordinatorServer::~CoordinatorServer() { Stop(); }

}  // namespace df11
