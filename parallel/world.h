// SPDX-License-Identifier: Apache-2.0
// Who this process is: its rank in the job, its place on its host, and its host.
#pragma once

#include <string>

namespace df11 {

struct World {
  int rank = 0;        // in the whole job
  int size = 1;        // processes in the job
  int local_rank = 0;  // among the processes on this host (picks the GPU)
  int local_size = 1;
  int node = 0;        // index of this host among the job's hosts
  std::string host;
};

}  // namespace df11
