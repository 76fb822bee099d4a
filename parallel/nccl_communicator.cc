// SPDX-License-Identifier: Apache-2.0
#include "parallel/nccl_communicator.h"

#include <chrono>
#include <string>
#include <thread>

#include "kernels/common/cuda_check.h"

namespace df11 {

NcclCommunicator::NcclCommunicator(Communicator* bootstrap, int device, cudaStream_t stream,
                                   double timeout_s)
    : stream_(stream), rank_(bootstrap->rank()), size_(bootstrap->size()), timeout_s_(timeout_s) {
  DF11_CUDA_CHECK(cudaSetDevice(device));
  ncclUniqueId id;
  if (rank_ == 0) DF11_NCCL_CHECK(ncclGetUniqueId(&id));
  bootstrap->Broadcast(&id, sizeof(id), 0);
  // Non-blocking initialization, so a missing peer can time out instead of hanging.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  DF11_NCCL_CHECK(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
  ncclResult_t state = ncclInProgress;
  while (state == ncclInProgress) {
    DF11_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
    if (state == ncclInProgress && std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(comm_);
      FatalError(__FILE__, __LINE__, "ncclCommInitRankConfig",
                 "NCCL group did not form within the timeout (a peer rank is missing)");
    }
    std::this_thread::yield();
  }
  DF11_NCCL_CHECK(state);
  DF11_CUDA_CHECK(cudaMalloc(&scratch_, sizeof(float)));
}

NcclCommunicator::~NcclCommunicator() {
  if (scratch_ != nullptr) cudaFree(scratch_);
  if (comm_ != nullptr) ncclCommDestroy(comm_);
}

void NcclCommunicator::Wait(const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
  for (;;) {
    cudaError_t done = cudaStreamQuery(stream_);
    if (done == cudaSuccess) return;
    if (done != cudaErrorNotReady) DF11_CUDA_CHECK(done);
    ncclResult_t async = ncclSuccess;
    DF11_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess && async != ncclInProgress) DF11_NCCL_CHECK(async);
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
      FatalError(__FILE__, __LINE__, what,
                 "did not complete within the timeout (a peer rank died or hung)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void NcclCommunicator::AllReduceSum(float* data, int64_t n) {
  DF11_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32, ncclSum, comm_,
                                stream_));
  Wait("ncclAllReduce");
}

void NcclCommunicator::AllGather(const void* send, void* recv, int64_t bytes) {
  DF11_NCCL_CHECK(ncclAllGather(send, recv, static_cast<size_t>(bytes), ncclUint8, comm_, stream_));
  Wait("ncclAllGather");
}

void NcclCommunicator::Broadcast(void* data, int64_t bytes, int root) {
  DF11_NCCL_CHECK(ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, comm_,
                                stream_));
  Wait("ncclBroadcast");
}

void NcclCommunicator::Send(const void* data, int64_t bytes, int peer, Tag) {
  DF11_NCCL_CHECK(ncclSend(data, static_cast<size_t>(bytes), ncclUint8, peer, comm_, stream_));
  Wait("ncclSend");
}

void NcclCommunicator::Recv(void* data, int64_t bytes, int peer, Tag) {
  DF11_NCCL_CHECK(ncclRecv(data, static_cast<size_t>(bytes), ncclUint8, peer, comm_, stream_));
  Wait("ncclRecv");
}

void NcclCommunicator::Barrier() { AllReduceSum(scratch_, 1); }

}  // namespace df11
