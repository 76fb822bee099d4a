// SPDX-License-Identifier: Apache-2.0
// Communicator over NCCL on device memory (the GPU backend's collectives), one rank per GPU.
// The unique id is made by the group's rank 0 and broadcast over a bootstrap communicator (MPI).
// Calls are enqueued on the communicator's stream and then waited for with a deadline: a lost
// peer aborts the NCCL communicator and ends the job instead of hanging it.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "parallel/communicator.h"

namespace df11 {

class NcclCommunicator : public Communicator {
 public:
  // Collective over `bootstrap`'s ranks: each passes its own CUDA device and stream.
  NcclCommunicator(Communicator* bootstrap, int device, cudaStream_t stream, double timeout_s);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void AllReduceSum(float* data, int64_t n) override;
  void AllGather(const void* send, void* recv, int64_t bytes) override;
  void Broadcast(void* data, int64_t bytes, int root) override;
  void Send(const void* data, int64_t bytes, int peer, Tag tag) override;
  void Recv(void* data, int64_t bytes, int peer, Tag tag) override;
  void Barrier() override;

  ncclComm_t comm() const { return comm_; }

 private:
  // Waits for the stream; aborts the communicator and fails after the timeout.
  void Wait(const char* what);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_;
  int rank_ = 0, size_ = 1;
  double timeout_s_;
  float* scratch_ = nullptr;  // one float for Barrier
};

}  // namespace df11

#define DF11_NCCL_CHECK(expr)                                                              \
  do {                                                                                     \
    ncclResult_t df11_nccl_rc_ = (expr);                                                   \
    if (df11_nccl_rc_ != ncclSuccess && df11_nccl_rc_ != ncclInProgress) [[unlikely]]      \
      ::df11::FatalError(__FILE__, __LINE__, #expr,                                        \
                         std::string("NCCL error: ") + ncclGetErrorString(df11_nccl_rc_)); \
  } while (0)
