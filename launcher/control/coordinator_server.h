// SPDX-License-Identifier: Apache-2.0
// df11-coordinator's server: the Df11Control Thrift service (TBinaryProtocol in length-prefixed
// frames, as TFramedTransport writes them) in front of a JobStore, plus a background thread that
// ends expired leases. Connections are served by a FrameServer (frame_server.h): idle ones cost
// no thread, and a frame's token is checked from its first bytes, before the frame is buffered:
// a wrong token gets Unauthorized without the rest being read, and connections that never send
// the token are closed after handshake_timeout_s or to make room for new ones, so a flood of
// them cannot keep callers with the token out. The handler checks the token again (in constant
// time); bad input becomes InvalidRequest / Unauthorized / NotFound, a store failure a
// TApplicationException. A frame larger than max_message_bytes closes that connection only.
// Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "launcher/control/frame_server.h"
#include "launcher/control/job_store.h"
#include "runtime/core/status.h"

namespace df11 {

struct CoordinatorOptions {
  std::string host = "127.0.0.1";        // address to bind
  int port = 0;                          // 0: an ephemeral port, see CoordinatorServer::port()
  std::string token;                     // shared secret every call must carry; non-empty
  int32_t lease_s = 300;                 // how long a leased item stays with its group
  int64_t max_message_bytes = 64 << 20;  // larger requests are refused (connection closed)
  int32_t expire_interval_ms = 1000;     // period of the lease-expiry sweep
  int32_t max_connections = 1024;        // concurrent client connections
  int32_t idle_timeout_s = 600;          // a connection silent this long is closed; 0: never
  double handshake_timeout_s = 10;       // a connection that has not sent a request with the
                                         // token this long after connecting is closed
  int32_t max_unauthenticated = 128;     // connections yet to send the token; beyond, the
                                         // oldest of the peer address with most is closed
};

// Constant-time in the content of `expected` (time depends only on the given token's length).
bool TokenMatches(const std::string& given, const std::string& expected);

// One log line for what an ExpireLeases call did (nothing when it did nothing).
void LogExpiredLeases(const ExpiredLeases& expired);

class CoordinatorServer {
 public:
  // Binds, starts serving on background threads and returns once the port is open.
  // `store` must outlive the server.
  static StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorOptions& options,
                                                            JobStore* store);
  ~CoordinatorServer();  // Stop()s
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  int port() const { return frames_->port(); }
  // Stops accepting, closes connections and joins the threads (a call being served finishes
  // first). Idempotent; any thread.
  void Stop();
  // Blocks until Stop() is called from another thread or the server fails (its error).
  Status Wait();

 private:
  CoordinatorServer(const CoordinatorOptions& options, JobStore* store);
  void ExpireLoop();

  CoordinatorOptions options_;
  JobStore* store_;
  std::unique_ptr<FrameServer> frames_;
  std::thread expire_thread_;
  std::mutex stop_mu_;  // serializes Stop() calls
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace df11
