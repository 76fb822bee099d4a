// SPDX-License-Identifier: Apache-2.0
// Who this process is (World: its rank in the job, its place on its host) and where a rank sits
// in the job's parallel layout (ParallelLayout: rank -> pipeline stage and tensor-parallel rank;
// LocalDevice: local rank -> GPU). The one place these mappings are written.
#pragma once

#include <string>

namespace df11 {

struct World {
  int rank = 0;        // in the whole job
  int size = 1;        // processes in the job
  int local_rank = 0;  // among the processes on this host (picks the GPU: LocalDevice)
  int local_size = 1;
  int node = 0;        // index of this host among the job's hosts
  std::string host;
};

// The parallel layout of a job: tp ranks per pipeline stage, pp stages. Ranks are stage-major
// (rank = stage * tp + tp_rank), so a stage's tp ranks are neighbours and, placed on hosts in
// rank order, share a node.
struct ParallelLayout {
  int tp = 1;  // tensor-parallel ranks per stage
  int pp = 1;  // pipeline stages

  int world() const { return tp * pp; }
  int Stage(int rank) const { return rank / tp; }
  int TpRank(int rank) const { return rank % tp; }
  int Rank(int stage, int tp_rank) const { return stage * tp + tp_rank; }
};

// The GPU a process drives: local rank r of its host takes GPU r % device_count, so a stage's tp
// ranks get distinct GPUs while tp <= device_count.
inline int LocalDevice(int local_rank, int device_count) { return local_rank % device_count; }

// How many of the `local_size` processes on a host drive GPU `device` (LocalDevice) of its
// `device_count`; at least 1.
inline int LocalDeviceSharers(int local_size, int device_count, int device) {
  const int n = (local_size - device + device_count - 1) / device_count;
  return n > 1 ? n : 1;
}

}  // namespace df11
