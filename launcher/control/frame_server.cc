// SPDX-License-Identifier: Apache-2.0
#include "launcher/control/frame_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

namespace df11 {
namespace {

constexpr uint64_t kListenId = 0;
constexpr uint64_t kWakeId = 1;
constexpr auto kSweepPeriod = std::chrono::milliseconds(100);
constexpr auto kLogPeriod = std::chrono::seconds(10);
constexpr auto kAcceptPause = std::chrono::milliseconds(100);

std::string Errno(const char* what) { return std::string(what) + ": " + strerror(errno); }

std::string PeerAddress(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, host, sizeof(host));
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, host, sizeof(host));
  }
  return host;
}

// Enough descriptors for max_connections plus the database, logs and the server's own.
void RaiseDescriptorLimit(int32_t max_connections) {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t want = std::min<rlim_t>(static_cast<rlim_t>(max_connections) + 64, limit.rlim_max);
  if (limit.rlim_cur >= want) return;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &limit) == 0) {
    LOG(INFO) << "raised the open-file limit from " << before << " to " << want;
  }
}

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

std::chrono::steady_clock::time_point After(std::chrono::steady_clock::time_point now,
                                            double seconds) {
  if (seconds <= 0) return std::chrono::steady_clock::time_point::max();
  return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(seconds));
}

}  // namespace

struct FrameServer::Connection {
  enum class State {
    kSize,     // reading the 4-byte frame size
    kCheck,    // reading the frame's start for the checker
    kBody,     // reading the rest of an accepted frame
    kDiscard,  // dropping the rest of a rejected frame, then sending `reply`
    kBusy,     // a handler serves the frame
    kWrite,    // writing a reply
  };
  uint64_t id = 0;
  int fd = -1;
  std::string peer;
  Clock::time_point accepted;
  State state = State::kSize;
  bool authenticated = false;
  uint8_t size_bytes[4] = {};
  size_t size_have = 0;
  size_t frame_size = 0;
  std::string buf;  // the frame: its start while checking, all of it once accepted
  size_t have = 0;
  size_t discard = 0;
  std::string pending_reply;  // kDiscard: sent once the frame is dropped
  std::string out;            // kWrite: size + payload
  size_t out_offset = 0;
  uint32_t interest = 0;
  Clock::time_point deadline = Clock::time_point::max();
};

FrameServer::FrameServer(const FrameServerOptions& options, FrameChecker checker,
                         FrameHandler handler)
    : options_(options), checker_(std::move(checker)), handler_(std::move(handler)) {}

StatusOr<std::unique_ptr<FrameServer>> FrameServer::Start(const FrameServerOptions& options,
                                                          FrameChecker checker,
                                                          FrameHandler handler) {
  const std::string where = options.host + ":" + std::to_string(options.port);
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument("server: port " + std::to_string(options.port));
  }
  if (options.max_connections < 1 || options.max_unauthenticated < 1 ||
      options.handler_threads < 1 || options.check_bytes < 64 || options.handshake_timeout_s <= 0 ||
      options.evict_after_s < 0 || options.idle_timeout_s < 0 || options.max_frame_bytes < 1 ||
      options.max_frame_bytes > (int64_t{1} << 31) - 1) {
    return Status::InvalidArgument(
        "server: connection limits, timeouts or frame size out of range");
  }
  std::unique_ptr<FrameServer> self(
      new FrameServer(options, std::move(checker), std::move(handler)));
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(options.port);
  if (int rc = getaddrinfo(options.host.c_str(), port_text.c_str(), &hints, &found); rc != 0) {
    return Status::InvalidArgument("cannot listen on " + where + ": " + gai_strerror(rc));
  }
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr && self->listen_fd_ < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error = Errno("socket");
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
      error = Errno("bind/listen");
      close(fd);
      continue;
    }
    self->listen_fd_ = fd;
  }
  freeaddrinfo(found);
  if (self->listen_fd_ < 0) return Status::IoError("cannot listen on " + where + ": " + error);
  sockaddr_storage bound = {};
  socklen_t len = sizeof(bound);
  getsockname(self->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  self->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                                  : reinterpret_cast<sockaddr_in&>(bound).sin_port);
  self->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  self->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (self->epoll_fd_ < 0 || self->wake_fd_ < 0) return Status::IoError(Errno("epoll/eventfd"));
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenId;
  epoll_ctl(self->epoll_fd_, EPOLL_CTL_ADD, self->listen_fd_, &ev);
  ev.data.u64 = kWakeId;
  epoll_ctl(self->epoll_fd_, EPOLL_CTL_ADD, self->wake_fd_, &ev);
  RaiseDescriptorLimit(options.max_connections);

  FrameServer* raw = self.get();
  self->loop_thread_ = std::thread([raw] { raw->Loop(); });
  for (int i = 0; i < options.handler_threads; ++i) {
    self->handler_threads_.emplace_back([raw] { raw->HandlerLoop(); });
  }
  return self;
}

FrameServer::~FrameServer() { Stop(); }

void FrameServer::Stop() {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  stopping_ = true;
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_cv_.notify_all();
    done_cv_.notify_all();
  }
  if (loop_thread_.joinable()) loop_thread_.join();
  for (std::thread& t : handler_threads_) {
    if (t.joinable()) t.join();
  }
  CloseFd(&listen_fd_);
  CloseFd(&epoll_fd_);
  CloseFd(&wake_fd_);
}

Status FrameServer::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return loop_done_ || stopping_.load(); });
  return loop_error_.empty() ? Status::Ok() : Status::IoError(loop_error_);
}

void FrameServer::HandlerLoop() {
  for (;;) {
    std::pair<uint64_t, std::string> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      task_cv_.wait(lock, [&] { return stopping_.load() || !tasks_.empty(); });
      if (stopping_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    Reply reply{task.first, false, ""};
    reply.ok = handler_(task.second, &reply.payload);
    {
      std::lock_guard<std::mutex> lock(mu_);
      replies_.push_back(std::move(reply));
    }
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
}

void FrameServer::Loop() {
  std::vector<epoll_event> events(256);
  Clock::time_point next_sweep = Clock::now() + kSweepPeriod;
  next_log_ = Clock::now() + kLogPeriod;
  std::string error;
  while (!stopping_) {
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 100);
    if (n < 0 && errno != EINTR) {
      error = Errno("epoll_wait");
      break;
    }
    const Clock::time_point now = Clock::now();
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kListenId) {
        AcceptAll(now);
      } else if (id == kWakeId) {
        uint64_t count;
        (void)!read(wake_fd_, &count, sizeof(count));
        TakeReplies(now);
      } else {
        OnEvent(id, events[i].events, now);
      }
    }
    if (accept_paused_ && now >= accept_resume_) {
      epoll_event ev = {};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenId;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
      accept_paused_ = false;
    }
    if (now >= next_sweep) {
      Sweep(now);
      next_sweep = now + kSweepPeriod;
    }
    LogCounters(now, false);
  }
  LogCounters(Clock::now(), true);
  // Stop or failure: nothing is served any more. The port is released here, at once.
  std::vector<uint64_t> ids;
  for (const auto& [id, c] : connections_) ids.push_back(id);
  for (uint64_t id : ids) Close(id);
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  CloseFd(&listen_fd_);
  if (!error.empty()) LOG(ERROR) << "server loop failed: " << error;
  std::lock_guard<std::mutex> lock(mu_);
  loop_done_ = true;
  loop_error_ = error;
  done_cv_.notify_all();
}

void FrameServer::AcceptAll(Clock::time_point now) {
  for (int k = 0; k < 1024; ++k) {
    sockaddr_storage addr = {};
    socklen_t len = sizeof(addr);
    const int fd =
        accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) &&
          EvictUnauthenticated(now, /*any_age=*/true)) {
        continue;
      }
      // Out of descriptors or memory with nothing to give back: stop accepting for a moment
      // instead of spinning on a listening socket that stays readable.
      LOG_EVERY_N(WARNING, 100) << Errno("accept") << " (pausing new connections)";
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
      accept_paused_ = true;
      accept_resume_ = now + kAcceptPause;
      return;
    }
    if (static_cast<int64_t>(connections_.size()) >= options_.max_connections) {
      if (!EvictUnauthenticated(now, /*any_age=*/true)) {
        close(fd);  // every slot holds an authenticated connection
        ++counters_.refused;
        continue;
      }
    } else if (unauthenticated_count_ >= options_.max_unauthenticated) {
      EvictUnauthenticated(now, /*any_age=*/false);
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    auto c = std::make_unique<Connection>();
    c->id = next_id_++;
    c->fd = fd;
    c->peer = PeerAddress(addr);
    c->accepted = now;
    c->deadline = After(now, options_.handshake_timeout_s);
    epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u64 = c->id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      continue;
    }
    c->interest = EPOLLIN;
    unauthenticated_[c->peer].insert(c->id);
    ++unauthenticated_count_;
    connections_[c->id] = std::move(c);
  }
}

bool FrameServer::EvictUnauthenticated(Clock::time_point now, bool any_age) {
  const Clock::time_point old_enough =
      now - std::chrono::duration_cast<Clock::duration>(
                std::chrono::duration<double>(options_.evict_after_s));
  const std::set<uint64_t>* busiest = nullptr;
  for (const auto& [peer, ids] : unauthenticated_) {
    if (!any_age && connections_.at(*ids.begin())->accepted > old_enough) continue;
    if (busiest == nullptr || ids.size() > busiest->size()) busiest = &ids;
  }
  if (busiest == nullptr) return false;
  ++counters_.evicted;
  Close(*busiest->begin());
  return true;
}

void FrameServer::Authenticate(Connection& c) {
  if (c.authenticated) return;
  c.authenticated = true;
  auto it = unauthenticated_.find(c.peer);
  if (it != unauthenticated_.end() && it->second.erase(c.id) > 0) {
    --unauthenticated_count_;
    if (it->second.empty()) unauthenticated_.erase(it);
  }
}

void FrameServer::Close(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  Connection& c = *it->second;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  close(c.fd);
  if (!c.authenticated) {
    auto peer = unauthenticated_.find(c.peer);
    if (peer != unauthenticated_.end() && peer->second.erase(id) > 0) {
      --unauthenticated_count_;
      if (peer->second.empty()) unauthenticated_.erase(peer);
    }
  }
  connections_.erase(it);  // a reply still being served for it is dropped when it comes
}

void FrameServer::SetInterest(Connection& c, uint32_t events) {
  if (c.interest == events) return;
  epoll_event ev = {};
  ev.events = events;
  ev.data.u64 = c.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  c.interest = events;
}

void FrameServer::OnEvent(uint64_t id, uint32_t events, Clock::time_point now) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  Connection& c = *it->second;
  bool ok = (events & EPOLLERR) == 0;
  if (ok && c.state == Connection::State::kBusy) ok = (events & EPOLLHUP) == 0;
  if (ok && (events & (EPOLLIN | EPOLLHUP)) != 0) ok = ReadSome(c, now);
  if (ok && (events & EPOLLOUT) != 0) ok = WriteSome(c, now);
  if (!ok) Close(id);
}

bool FrameServer::ReadSome(Connection& c, Clock::time_point now) {
  using State = Connection::State;
  char scratch[4096];
  for (;;) {
    uint8_t* into = nullptr;
    size_t want = 0;
    switch (c.state) {
      case State::kSize:
        into = c.size_bytes + c.size_have;
        want = 4 - c.size_have;
        break;
      case State::kCheck:
      case State::kBody:
        into = reinterpret_cast<uint8_t*>(c.buf.data()) + c.have;
        want = c.buf.size() - c.have;
        break;
      case State::kDiscard:
        into = reinterpret_cast<uint8_t*>(scratch);
        want = std::min(c.discard, sizeof(scratch));
        break;
      case State::kBusy:
      case State::kWrite:
        return true;
    }
    const ssize_t n = recv(c.fd, into, want, 0);
    if (n == 0) return false;  // the peer closed
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    if (c.authenticated) c.deadline = After(now, options_.idle_timeout_s);
    switch (c.state) {
      case State::kSize: {
        c.size_have += static_cast<size_t>(n);
        if (c.size_have < 4) break;
        const uint32_t size = (uint32_t{c.size_bytes[0]} << 24) |
                              (uint32_t{c.size_bytes[1]} << 16) | (uint32_t{c.size_bytes[2]} << 8) |
                              uint32_t{c.size_bytes[3]};
        c.size_have = 0;
        if (size == 0 || size > static_cast<uint64_t>(options_.max_frame_bytes)) {
          ++counters_.dropped;
          last_drop_reason_ = "a frame of " + std::to_string(size) + " bytes from " + c.peer +
                              " (at most " + std::to_string(options_.max_frame_bytes) + ")";
          return false;
        }
        c.frame_size = size;
        c.buf.assign(std::min<size_t>(size, static_cast<size_t>(options_.check_bytes)), '\0');
        c.have = 0;
        c.state = State::kCheck;
        break;
      }
      case State::kCheck:
        c.have += static_cast<size_t>(n);
        if (!OnFrameStart(c, now)) return false;
        break;
      case State::kBody:
        c.have += static_cast<size_t>(n);
        if (c.have == c.frame_size) Dispatch(c);
        break;
      case State::kDiscard:
        c.discard -= static_cast<size_t>(n);
        if (c.discard == 0) {
          const std::string reply = std::move(c.pending_reply);
          c.pending_reply.clear();
          if (!QueueReply(c, reply, now)) return false;
        }
        break;
      case State::kBusy:
      case State::kWrite:
        return true;
    }
  }
}

bool FrameServer::OnFrameStart(Connection& c, Clock::time_point now) {
  using State = Connection::State;
  const bool complete = c.have == c.frame_size;
  FrameCheck check = checker_(reinterpret_cast<const uint8_t*>(c.buf.data()), c.have, complete);
  switch (check.verdict) {
    case FrameVerdict::kNeedMore:
      if (c.have < c.buf.size()) return true;
      ++counters_.dropped;
      last_drop_reason_ = "a frame from " + c.peer + " not recognized in its first " +
                          std::to_string(c.have) + " bytes";
      return false;
    case FrameVerdict::kAccept:
      Authenticate(c);
      c.deadline = After(now, options_.idle_timeout_s);
      c.buf.resize(c.frame_size);
      c.state = State::kBody;
      if (complete) Dispatch(c);
      return true;
    case FrameVerdict::kReject:
      c.discard = c.frame_size - c.have;
      std::string().swap(c.buf);
      if (c.discard == 0) return QueueReply(c, check.reply, now);
      c.pending_reply = std::move(check.reply);
      c.state = State::kDiscard;
      return true;
    case FrameVerdict::kDrop:
      break;
  }
  ++counters_.dropped;
  last_drop_reason_ = "a malformed frame from " + c.peer;
  return false;
}

void FrameServer::Dispatch(Connection& c) {
  c.state = Connection::State::kBusy;
  c.deadline = Clock::time_point::max();
  SetInterest(c, 0);
  std::lock_guard<std::mutex> lock(mu_);
  tasks_.emplace_back(c.id, std::move(c.buf));
  c.buf.clear();
  task_cv_.notify_one();
}

bool FrameServer::QueueReply(Connection& c, const std::string& payload, Clock::time_point now) {
  const uint32_t size = static_cast<uint32_t>(payload.size());
  c.out.clear();
  c.out.reserve(4 + payload.size());
  c.out.push_back(static_cast<char>(size >> 24));
  c.out.push_back(static_cast<char>(size >> 16));
  c.out.push_back(static_cast<char>(size >> 8));
  c.out.push_back(static_cast<char>(size));
  c.out += payload;
  c.out_offset = 0;
  c.state = Connection::State::kWrite;
  if (!WriteSome(c, now)) return false;
  if (c.state == Connection::State::kWrite) SetInterest(c, EPOLLOUT);
  return true;
}

bool FrameServer::WriteSome(Connection& c, Clock::time_point now) {
  while (c.out_offset < c.out.size()) {
    const ssize_t n =
        send(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    c.out_offset += static_cast<size_t>(n);
    if (c.authenticated) c.deadline = After(now, options_.idle_timeout_s);
  }
  std::string().swap(c.out);
  std::string().swap(c.buf);
  c.out_offset = 0;
  c.state = Connection::State::kSize;
  SetInterest(c, EPOLLIN);
  return true;
}

void FrameServer::TakeReplies(Clock::time_point now) {
  std::vector<Reply> replies;
  {
    std::lock_guard<std::mutex> lock(mu_);
    replies.swap(replies_);
  }
  for (Reply& r : replies) {
    auto it = connections_.find(r.id);
    if (it == connections_.end()) continue;  // closed while its frame was served
    if (!r.ok) {
      ++counters_.dropped;
      last_drop_reason_ = "a frame from " + it->second->peer + " its handler could not serve";
      Close(r.id);
      continue;
    }
    Connection& c = *it->second;
    c.deadline = After(now, options_.idle_timeout_s);
    if (!QueueReply(c, r.payload, now)) Close(r.id);
  }
}

void FrameServer::Sweep(Clock::time_point now) {
  std::vector<uint64_t> expired;
  for (const auto& [id, c] : connections_) {
    if (c->deadline <= now) expired.push_back(id);
  }
  for (uint64_t id : expired) {
    ++(connections_[id]->authenticated ? counters_.idle : counters_.handshake_timeouts);
    Close(id);
  }
}

void FrameServer::LogCounters(Clock::time_point now, bool force) {
  if (!force && now < next_log_) return;
  next_log_ = now + kLogPeriod;
  const Counters d{counters_.handshake_timeouts - logged_.handshake_timeouts,
                   counters_.evicted - logged_.evicted, counters_.refused - logged_.refused,
                   counters_.dropped - logged_.dropped, counters_.idle - logged_.idle};
  logged_ = counters_;
  if (d.handshake_timeouts + d.evicted > 0) {
    LOG(WARNING) << "closed " << d.handshake_timeouts + d.evicted
                 << " connections that sent no request with the token (" << d.handshake_timeouts
                 << " after " << options_.handshake_timeout_s << " s, " << d.evicted
                 << " to make room for new ones); open now: " << connections_.size() << ", "
                 << unauthenticated_count_ << " of them without the token";
  }
  if (d.refused > 0) {
    LOG(WARNING) << "refused " << d.refused << " new connections: all " << options_.max_connections
                 << " are taken by connections with the token";
  }
  if (d.dropped > 0) {
    LOG(WARNING) << "closed " << d.dropped << " connections for bad frames, the last for "
                 << last_drop_reason_;
  }
  if (d.idle > 0) {
    LOG(INFO) << "closed " << d.idle << " connections idle for " << options_.idle_timeout_s << " s";
  }
}

}  // namespace df11
