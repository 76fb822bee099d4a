// SPDX-License-Identifier: Apache-2.0
// The interface the runtime uses to talk to other ranks: collectives within a group and point to
// point messages. Implementations: MpiCommunicator (host memory, CPU backend) and
// NcclCommunicator (device memory, GPU backend). Every call blocks until done or fails fatally
// after the communicator's timeout, so a lost peer ends the job instead of hanging it.
// Not thread-safe: one thread per communicator.
#pragma once

#include <cstdint>

namespace df11 {

// Message tags for point-to-point traffic.
enum class Tag : int {
  kActivations = 11,  // hidden states from stage s to stage s + 1
  kResults = 12,      // sampled tokens or logits from the last stage to the leader
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;  // within this group
  virtual int size() const = 0;

  virtual void AllReduceSum(float* data, int64_t n) = 0;
  // Every rank receives `bytes` from each rank, in rank order: recv holds size() * bytes.
  virtual void AllGather(const void* send, void* recv, int64_t bytes) = 0;
  virtual void Broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void Send(const void* data, int64_t bytes, int peer, Tag tag) = 0;
  virtual void Recv(void* data, int64_t bytes, int peer, Tag tag) = 0;
  virtual void Barrier() = 0;
};

}  // namespace df11
