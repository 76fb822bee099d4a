// SPDX-License-Identifier: Apache-2.0
// FrameServer: the coordinator's network front, built so that connections nobody authenticated
// cannot crowd out the ones that matter. One epoll thread owns every connection and reads
// length-prefixed frames (a 4-byte big-endian size, then the payload: Thrift's TFramedTransport)
// without blocking; complete frames go to a few handler threads and their replies are written back
// by the epoll thread. An idle connection costs a descriptor and a few bytes, never a thread.
// Before a frame is buffered whole, its first bytes go to a FrameChecker (the coordinator checks
// the token there), so a peer without the token makes the server hold at most check_bytes for it.
// A connection is "unauthenticated" until a frame of it is accepted: it is closed after
// handshake_timeout_s, and to make room for a new connection the oldest unauthenticated one of
// the peer address holding the most goes: when max_unauthenticated are open (only one at least
// evict_after_s old: a burst of callers that connect at once all get to send their request), and
// when max_connections are open in all or descriptors run out (any). Start() raises the
// process's soft descriptor limit to what max_connections needs. Thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "runtime/core/status.h"

namespace df11 {

struct FrameServerOptions {
  std::string host = "127.0.0.1";      // address to bind: a name or a numeric address
  int port = 0;                        // 0: an ephemeral port, see FrameServer::port()
  int64_t max_frame_bytes = 64 << 20;  // a larger frame closes its connection
  int32_t max_connections = 1024;      // open connections in all
  int32_t max_unauthenticated = 128;   // open connections without an accepted frame yet
  double handshake_timeout_s = 10;     // ... each closed this long after it was accepted
  double evict_after_s = 1;            // ... and past max_unauthenticated, once this old
  double idle_timeout_s = 600;         // an authenticated connection silent this long is
                                       // closed; 0: never
  int32_t handler_threads = 8;         // frames served at once
  int32_t check_bytes = 4096;          // most bytes of a frame the checker may look at
};

enum class FrameVerdict {
  kNeedMore,  // call again with more of the frame
  kAccept,    // read the whole frame and hand it to the FrameHandler
  kReject,    // send `reply`, drop the rest of the frame; the connection stays unauthenticated
  kDrop,      // close the connection
};
struct FrameCheck {
  FrameVerdict verdict = FrameVerdict::kDrop;
  std::string reply;  // kReject's reply payload
};
// Looks at the first `size` bytes of a frame's payload (`complete`: that is all of it).
// Called on the epoll thread: must be quick.
using FrameChecker = std::function<FrameCheck(const uint8_t* data, size_t size, bool complete)>;
// Serves one accepted frame on a handler thread: fills `reply` (the reply payload) and returns
// true, or returns false to close the connection.
using FrameHandler = std::function<bool(const std::string& request, std::string* reply)>;

class FrameServer {
 public:
  // Binds and listens (errors come back here), then serves on background threads.
  static StatusOr<std::unique_ptr<FrameServer>> Start(const FrameServerOptions& options,
                                                      FrameChecker checker, FrameHandler handler);
  ~FrameServer();  // Stop()s
  FrameServer(const FrameServer&) = delete;
  FrameServer& operator=(const FrameServer&) = delete;

  int port() const { return port_; }
  // Closes the listening socket and every connection and joins the threads; a handler already
  // running finishes first. Idempotent; any thread but a handler's.
  void Stop();
  // Blocks until Stop() is called or the epoll loop failed (then returns its error).
  Status Wait();

 private:
  struct Connection;
  struct Reply {
    uint64_t id;
    bool ok;
    std::string payload;
  };
  using Clock = std::chrono::steady_clock;

  FrameServer(const FrameServerOptions& options, FrameChecker checker, FrameHandler handler);
  void Loop();
  void HandlerLoop();
  void AcceptAll(Clock::time_point now);
  void OnEvent(uint64_t id, uint32_t events, Clock::time_point now);
  // Reads what the socket has; false: close the connection.
  bool ReadSome(Connection& c, Clock::time_point now);
  bool OnFrameStart(Connection& c, Clock::time_point now);
  bool WriteSome(Connection& c, Clock::time_point now);
  // Hands a complete frame to the handler threads.
  void Dispatch(Connection& c);
  // Starts writing `payload` as a frame; false: close the connection.
  bool QueueReply(Connection& c, const std::string& payload, Clock::time_point now);
  void TakeReplies(Clock::time_point now);
  void Sweep(Clock::time_point now);
  void SetInterest(Connection& c, uint32_t events);
  void Authenticate(Connection& c);
  // Closes the oldest unauthenticated connection of the peer holding the most (of those at
  // least evict_after_s old unless `any_age`); false if there is none.
  bool EvictUnauthenticated(Clock::time_point now, bool any_age);
  void Close(uint64_t id);
  void LogCounters(Clock::time_point now, bool force);

  FrameServerOptions options_;
  FrameChecker checker_;
  FrameHandler handler_;
  int port_ = 0;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd: Stop() and finished handlers wake the loop
  std::thread loop_thread_;
  std::vector<std::thread> handler_threads_;
  std::mutex stop_mu_;  // serializes Stop()
  std::atomic<bool> stopping_{false};

  // Owned by the loop thread.
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::map<std::string, std::set<uint64_t>> unauthenticated_;  // peer address -> ids, oldest first
  int64_t unauthenticated_count_ = 0;
  uint64_t next_id_ = 2;  // 0 and 1 name the listening socket and the eventfd
  bool accept_paused_ = false;
  Clock::time_point accept_resume_{};
  struct Counters {
    int64_t handshake_timeouts = 0;  // unauthenticated connections closed by the timeout
    int64_t evicted = 0;             // ... closed to make room for a new one
    int64_t refused = 0;             // new connections closed at once: every slot authenticated
    int64_t dropped = 0;             // connections closed for a bad or oversized frame
    int64_t idle = 0;                // authenticated connections closed by the idle timeout
  };
  Counters counters_, logged_;
  std::string last_drop_reason_;
  Clock::time_point next_log_{};

  std::mutex mu_;                                       // guards the members below
  std::condition_variable task_cv_;                     // a task came, or stopping
  std::condition_variable done_cv_;                     // the loop ended, or stopping
  std::deque<std::pair<uint64_t, std::string>> tasks_;  // (connection, frame) to serve
  std::vector<Reply> replies_;                          // served, not yet written
  bool loop_done_ = false;
  std::string loop_error_;
};

}  // namespace df11
