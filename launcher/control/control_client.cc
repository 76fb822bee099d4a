// SPDX-License-Identifier: Apache-2.0
#include "launcher/control/control_client.h"

#include <glog/logging.h>
#include <thrift/TApplicationException.h>
#include <thrift/TConfiguration.h>
#include <thrift/TOutput.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>
#include <thrift/transport/TTransportException.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <mutex>

namespace df11 {

using apache::thrift::TApplicationException;
using apache::thrift::TException;
using apache::thrift::transport::TTransportException;

Status ParseHostPort(const std::string& text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return Status::InvalidArgument("coordinator address \"" + text + "\": expected HOST:PORT");
  }
  const std::string port_text = text.substr(colon + 1);
  if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(),
                                           [](unsigned char c) { return std::isdigit(c); })) {
    return Status::InvalidArgument("coordinator address \"" + text + "\": port is not a number");
  }
  const int p = std::stoi(port_text);
  if (p <= 0 || p > 65535) {
    return Status::InvalidArgument("coordinator address \"" + text + "\": port outside 1..65535");
  }
  *host = text.substr(0, colon);
  *port = p;
  return Status::Ok();
}

ControlClient::ControlClient(ControlClientOptions options) : options_(std::move(options)) {}

ControlClient::~ControlClient() { Disconnect(); }

namespace {

// Thrift prints its own line for every failed connect; the Status a call returns says the same,
// and a caller that retries (df11-ctl submit --wait, a worker group) decides what to show.
void ThriftMessageToVlog(const char* message) { VLOG(1) << "thrift: " << message; }

}  // namespace

Status ControlClient::Connect() {
  static std::once_flag quiet;
  std::call_once(quiet, [] { apache::thrift::GlobalOutput.setOutputFunction(&ThriftMessageToVlog); });
  if (client_ != nullptr) return Status::Ok();
  const int max_bytes = static_cast<int>(
      std::min<int64_t>(options_.max_message_bytes, std::numeric_limits<int>::max()));
  auto config = std::make_shared<apache::thrift::TConfiguration>(max_bytes, max_bytes);
  auto socket =
      std::make_shared<apache::thrift::transport::TSocket>(options_.host, options_.port, config);
  socket->setConnTimeout(options_.connect_timeout_ms);
  socket->setRecvTimeout(options_.rpc_timeout_ms);
  socket->setSendTimeout(options_.rpc_timeout_ms);
  auto transport = std::make_shared<apache::thrift::transport::TFramedTransport>(socket, config);
  try {
    transport->open();
  } catch (const TException& e) {
    return Status::IoError("coordinator " + options_.host + ":" + std::to_string(options_.port) +
                           ": cannot connect: " + e.what());
  }
  transport_ = transport;
  client_ = std::make_unique<rpc::Df11ControlClient>(
      std::make_shared<apache::thrift::protocol::TBinaryProtocol>(transport_));
  return Status::Ok();
}

void ControlClient::Disconnect() {
  client_.reset();
  if (transport_ != nullptr) {
    try {
      transport_->close();
    } catch (const TException&) {
      // Already broken; nothing more to release.
    }
    transport_.reset();
  }
}

template <typename Fn>
Status ControlClient::Call(const char* what, bool retry, Fn&& call) {
  const std::string where = std::string(what) + " (coordinator " + options_.host + ":" +
                            std::to_string(options_.port) + ")";
  for (int attempt = 0;; ++attempt) {
    DF11_RETURN_IF_ERROR(Connect().WithContext(what));
    try {
      call(*client_);
      return Status::Ok();
    } catch (const rpc::InvalidRequest& e) {
      return Status::InvalidArgument(e.message).WithContext(where);
    } catch (const rpc::Unauthorized& e) {
      return Status::Unauthenticated(e.message).WithContext(where);
    } catch (const rpc::NotFound& e) {
      return Status::NotFound(e.message).WithContext(where);
    } catch (const TApplicationException& e) {
      return Status::Internal(e.what()).WithContext(where);
    } catch (const TTransportException& e) {
      // The stream's state is unknown after a transport failure: start afresh.
      Disconnect();
      if (retry && attempt == 0) continue;
      return Status::IoError(e.what()).WithContext(where);
    } catch (const TException& e) {
      Disconnect();
      return Status::Internal(e.what()).WithContext(where);
    }
  }
}

StatusOr<rpc::Job> ControlClient::SubmitJob(const std::vector<rpc::ItemInput>& items,
                                            const std::string& label) {
  rpc::Job job;
  DF11_RETURN_IF_ERROR(Call("SubmitJob", /*retry=*/false, [&](rpc::Df11ControlClient& c) {
    c.SubmitJob(job, options_.token, items, label);
  }));
  return job;
}

StatusOr<rpc::Job> ControlClient::GetJob(const std::string& job_id) {
  rpc::Job job;
  DF11_RETURN_IF_ERROR(Call(
      "GetJob", true, [&](rpc::Df11ControlClient& c) { c.GetJob(job, options_.token, job_id); }));
  return job;
}

StatusOr<std::vector<rpc::Job>> ControlClient::ListJobs(int32_t limit) {
  std::vector<rpc::Job> jobs;
  DF11_RETURN_IF_ERROR(Call("ListJobs", true, [&](rpc::Df11ControlClient& c) {
    jobs.clear();
    c.ListJobs(jobs, options_.token, limit);
  }));
  return jobs;
}

StatusOr<rpc::Job> ControlClient::CancelJob(const std::string& job_id) {
  rpc::Job job;
  DF11_RETURN_IF_ERROR(Call("CancelJob", true, [&](rpc::Df11ControlClient& c) {
    c.CancelJob(job, options_.token, job_id);
  }));
  return job;
}

StatusOr<rpc::ResultPage> ControlClient::FetchResults(const std::string& job_id, int64_t offset,
                                                      int32_t limit) {
  rpc::ResultPage page;
  DF11_RETURN_IF_ERROR(Call("FetchResults", true, [&](rpc::Df11ControlClient& c) {
    page = rpc::ResultPage();
    c.FetchResults(page, options_.token, job_id, offset, limit);
  }));
  return page;
}

StatusOr<rpc::Registration> ControlClient::RegisterWorkerGroup(const rpc::WorkerGroupInfo& group) {
  rpc::Registration reg;
  DF11_RETURN_IF_ERROR(Call("RegisterWorkerGroup", true, [&](rpc::Df11ControlClient& c) {
    c.RegisterWorkerGroup(reg, options_.token, group);
  }));
  return reg;
}

StatusOr<rpc::HeartbeatReply> ControlClient::Heartbeat(const std::string& group_id,
                                                       const rpc::GroupProgress& progress) {
  rpc::HeartbeatReply reply;
  DF11_RETURN_IF_ERROR(Call("Heartbeat", true, [&](rpc::Df11ControlClient& c) {
    reply = rpc::HeartbeatReply();
    c.Heartbeat(reply, options_.token, group_id, progress);
  }));
  return reply;
}

StatusOr<std::vector<rpc::Item>> ControlClient::LeaseWork(const std::string& group_id,
                                                          int32_t max_items,
                                                          const std::string& request_id) {
  std::vector<rpc::Item> items;
  // A retry carries the same request id, so a lost reply's items come back to this call.
  DF11_RETURN_IF_ERROR(Call("LeaseWork", true, [&](rpc::Df11ControlClient& c) {
    items.clear();
    c.LeaseWork(items, options_.token, group_id, max_items, request_id);
  }));
  return items;
}

StatusOr<rpc::ReportReply> ControlClient::ReportResults(
    const std::string& group_id, const std::map<int64_t, rpc::ItemOutcome>& results) {
  rpc::ReportReply reply;
  // Results are stored once per item id, so a retry cannot duplicate them.
  DF11_RETURN_IF_ERROR(Call("ReportResults", true, [&](rpc::Df11ControlClient& c) {
    c.ReportResults(reply, options_.token, group_id, results);
  }));
  return reply;
}

StatusOr<rpc::ClusterState> ControlClient::ClusterStatus() {
  rpc::ClusterState state;
  DF11_RETURN_IF_ERROR(Call("ClusterStatus", true, [&](rpc::Df11ControlClient& c) {
    state = rpc::ClusterState();
    c.ClusterStatus(state, options_.token);
  }));
  return state;
}

}  // namespace df11
