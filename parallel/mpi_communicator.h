// SPDX-License-Identifier: Apache-2.0
// Communicator over MPI on host memory (the CPU backend's collectives). A watchdog thread ends
// the process when a call blocks longer than the timeout (a peer died or hung), so the launcher
// tears the whole job down instead of leaving ranks waiting.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "parallel/communicator.h"

namespace df11 {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm`.
  MpiCommunicator(MPI_Comm comm, double timeout_s);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void AllReduceSum(float* data, int64_t n) override;
  void AllGather(const void* send, void* recv, int64_t bytes) override;
  void Broadcast(void* data, int64_t bytes, int root) override;
  void Send(const void* data, int64_t bytes, int peer, Tag tag) override;
  void Recv(void* data, int64_t bytes, int peer, Tag tag) override;
  void Barrier() override;

 private:
  // Marks the start/end of a blocking call for the watchdog.
  class Guard;
  void Watch();

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  double timeout_s_;
  std::atomic<int64_t> busy_since_ns_{0};  // 0: idle
  std::atomic<const char*> busy_what_{nullptr};
  std::atomic<bool> stop_{false};
  std::thread watchdog_;
};

}  // namespace df11
