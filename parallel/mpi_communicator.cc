// SPDX-License-Identifier: Apache-2.0
#include "parallel/mpi_communicator.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "parallel/mpi_bootstrap.h"

namespace df11 {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// MPI counts are ints: large buffers go in pieces of at most 1 GiB.
constexpr int64_t kMaxChunk = int64_t{1} << 30;

}  // namespace

class MpiCommunicator::Guard {
 public:
  Guard(MpiCommunicator* c, const char* what) : c_(c) {
    c_->busy_what_.store(what);
    c_->busy_since_ns_.store(NowNs());
  }
  ~Guard() { c_->busy_since_ns_.store(0); }

 private:
  MpiCommunicator* c_;
};

MpiCommunicator::MpiCommunicator(MPI_Comm comm, double timeout_s)
    : comm_(comm), timeout_s_(timeout_s) {
  DF11_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  DF11_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  DF11_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  if (timeout_s_ > 0) watchdog_ = std::thread([this] { Watch(); });
}

MpiCommunicator::~MpiCommunicator() {
  stop_.store(true);
  if (watchdog_.joinable()) watchdog_.join();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::Watch() {
  while (!stop_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const int64_t since = busy_since_ns_.load();
    if (since != 0 && (NowNs() - since) / 1e9 > timeout_s_) {
      int world_rank = -1;
      MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
      std::fprintf(stderr,
                   "FATAL rank %d: %s did not complete within %.0f s (a peer rank died or "
                   "hung); exiting so the launcher ends the job\n",
                   world_rank, busy_what_.load(), timeout_s_);
      std::fflush(stderr);
      std::_Exit(4);
    }
  }
}

void MpiCommunicator::AllReduceSum(float* data, int64_t n) {
  Guard g(this, "MPI all-reduce");
  for (int64_t off = 0; off < n; off += kMaxChunk / 4) {
    const int count = static_cast<int>(std::min<int64_t>(kMaxChunk / 4, n - off));
    DF11_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + off, count, MPI_FLOAT, MPI_SUM, comm_));
  }
}

void MpiCommunicator::AllGather(const void* send, void* recv, int64_t bytes) {
  Guard g(this, "MPI all-gather");
  DF11_CHECK(bytes <= kMaxChunk);
  DF11_MPI_CHECK(MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, recv,
                               static_cast<int>(bytes), MPI_BYTE, comm_));
}

void MpiCommunicator::Broadcast(void* data, int64_t bytes, int root) {
  Guard g(this, "MPI broadcast");
  auto* p = static_cast<char*>(data);
  for (int64_t off = 0; off < bytes; off += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, bytes - off));
    DF11_MPI_CHECK(MPI_Bcast(p + off, count, MPI_BYTE, root, comm_));
  }
}

void MpiCommunicator::Send(const void* data, int64_t bytes, int peer, Tag tag) {
  Guard g(this, "MPI send");
  const auto* p = static_cast<const char*>(data);
  for (int64_t off = 0; off < bytes || off == 0; off += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, bytes - off));
    DF11_MPI_CHECK(MPI_Send(p + off, count, MPI_BYTE, peer, static_cast<int>(tag), comm_));
    if (bytes == 0) break;
  }
}

void MpiCommunicator::Recv(void* data, int64_t bytes, int peer, Tag tag) {
  Guard g(this, "MPI receive");
  auto* p = static_cast<char*>(data);
  for (int64_t off = 0; off < bytes || off == 0; off += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, bytes - off));
    MPI_Status status;
    DF11_MPI_CHECK(MPI_Recv(p + off, count, MPI_BYTE, peer, static_cast<int>(tag), comm_, &status));
    if (bytes == 0) break;
  }
}

void MpiCommunicator::Barrier() {
  Guard g(this, "MPI barrier");
  DF11_MPI_CHECK(MPI_Barrier(comm_));
}

}  // namespace df11
