// SPDX-License-Identifier: Apache-2.0
// FrameServer over loopback with a toy protocol (a frame starting "ok" is accepted and echoed in
// upper case, one starting "no" is rejected with "denied"): frames are served and the connection
// reused; a rejected frame is answered without being read whole and the connection serves on;
// an oversized or unrecognized frame closes its connection only; when the unauthenticated slots
// are full the oldest connection goes, so a new caller gets in, unless they are all fresh (a
// burst of callers) and there is room in all; a connection without an accepted
// frame is closed after the handshake timeout while an authenticated idle one stays; Stop()
// returns with connections still open.
#include "launcher/control/frame_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <thread>

namespace df11 {
namespace {

FrameCheck Check(const uint8_t* data, size_t size, bool complete) {
  if (size < 2) return {complete ? FrameVerdict::kDrop : FrameVerdict::kNeedMore, ""};
  if (data[0] == 'o' && data[1] == 'k') return {FrameVerdict::kAccept, ""};
  if (data[0] == 'n' && data[1] == 'o') return {FrameVerdict::kReject, "denied"};
  return {FrameVerdict::kDrop, ""};
}

bool Echo(const std::string& request, std::string* reply) {
  *reply = request;
  std::transform(reply->begin(), reply->end(), reply->begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return true;
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

void SendFrame(int fd, const std::string& payload, uint32_t announced = 0) {
  const uint32_t size = htonl(announced > 0 ? announced : static_cast<uint32_t>(payload.size()));
  std::string frame(reinterpret_cast<const char*>(&size), 4);
  frame += payload;
  ASSERT_EQ(send(fd, frame.data(), frame.size(), MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
}

// The reply payload, or "<closed>" when the server closed the connection.
std::string ReadFrame(int fd) {
  uint32_t size = 0;
  if (recv(fd, &size, 4, MSG_WAITALL) != 4) return "<closed>";
  std::string payload(ntohl(size), '\0');
  if (!payload.empty() && recv(fd, payload.data(), payload.size(), MSG_WAITALL) !=
                              static_cast<ssize_t>(payload.size())) {
    return "<closed>";
  }
  return payload;
}

bool ClosedByServer(int fd) {
  char c;
  return recv(fd, &c, 1, 0) == 0;
}

std::unique_ptr<FrameServer> StartServer(const FrameServerOptions& options) {
  auto server = FrameServer::Start(options, Check, Echo);
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(server).value() : nullptr;
}

TEST(FrameServer, ServesRejectsAndDropsFrames) {
  FrameServerOptions o;
  o.max_frame_bytes = 1 << 16;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  const int fd = Connect(server->port());
  SendFrame(fd, "ok one");
  EXPECT_EQ(ReadFrame(fd), "OK ONE");
  SendFrame(fd, "no " + std::string(50000, 'x'));  // answered from its first bytes
  EXPECT_EQ(ReadFrame(fd), "denied");
  SendFrame(fd, "ok two " + std::string(30000, 'y'));  // the same connection serves on
  EXPECT_EQ(ReadFrame(fd).substr(0, 7), "OK TWO ");
  const int big = Connect(server->port());
  SendFrame(big, "ok", /*announced=*/1 << 20);
  EXPECT_EQ(ReadFrame(big), "<closed>");
  const int junk = Connect(server->port());
  SendFrame(junk, "??");
  EXPECT_EQ(ReadFrame(junk), "<closed>");
  SendFrame(fd, "ok three");
  EXPECT_EQ(ReadFrame(fd), "OK THREE");
  for (int f : {fd, big, junk}) close(f);
}

// How many of `fds` the server has not closed, polling until it is `want` (or 5 s passed).
int OpenCount(const std::vector<int>& fds, int want) {
  int open = -1;
  for (int tries = 0; tries < 100 && open != want; ++tries) {
    if (tries > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    open = 0;
    for (int fd : fds) {
      char c;
      const ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
      open += n < 0 && errno == EAGAIN ? 1 : 0;
    }
  }
  return open;
}

TEST(FrameServer, OldestUnauthenticatedConnectionMakesRoom) {
  FrameServerOptions o;
  o.max_unauthenticated = 4;
  o.evict_after_s = 0;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  std::vector<int> idle;
  for (int i = 0; i < 10; ++i) idle.push_back(Connect(server->port()));
  EXPECT_EQ(OpenCount(idle, 4), 4);
  EXPECT_EQ(OpenCount({idle.begin() + 6, idle.end()}, 4), 4) << "the newest stay";
  const int caller = Connect(server->port());
  SendFrame(caller, "ok caller");
  EXPECT_EQ(ReadFrame(caller), "OK CALLER");
  EXPECT_EQ(OpenCount(idle, 3), 3);
  // Stop() with connections open returns, and closes them.
  const auto start = std::chrono::steady_clock::now();
  server->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(ClosedByServer(caller));
  for (int fd : idle) close(fd);
  close(caller);
}

// Callers that connect at once (workers starting together) are not taken for a flood: a fresh
// connection is only closed to make room when max_connections are open.
TEST(FrameServer, BurstOfFreshConnectionsIsNotEvicted) {
  FrameServerOptions o;
  o.max_unauthenticated = 4;
  o.max_connections = 12;
  o.evict_after_s = 30;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  std::vector<int> burst;
  for (int i = 0; i < 10; ++i) burst.push_back(Connect(server->port()));
  const int caller = Connect(server->port());
  SendFrame(caller, "ok");
  EXPECT_EQ(ReadFrame(caller), "OK");
  EXPECT_EQ(OpenCount(burst, 10), 10);
  for (int i = 0; i < 3; ++i) burst.push_back(Connect(server->port()));  // 14 > 12: now any goes
  EXPECT_EQ(OpenCount(burst, 11), 11);
  for (int fd : burst) close(fd);
  close(caller);
}

TEST(FrameServer, UnauthenticatedConnectionsTimeOutAuthenticatedOnesStay) {
  FrameServerOptions o;
  o.handshake_timeout_s = 0.3;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  const int known = Connect(server->port());
  SendFrame(known, "ok");
  EXPECT_EQ(ReadFrame(known), "OK");
  std::vector<int> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(Connect(server->port()));
  EXPECT_EQ(OpenCount(idle, 0), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  SendFrame(known, "ok again");
  EXPECT_EQ(ReadFrame(known), "OK AGAIN");
  for (int fd : idle) close(fd);
  close(known);
}

}  // namespace
}  // namespace df11
