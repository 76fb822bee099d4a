// SPDX-License-Identifier: Apache-2.0
// glog set-up: every line carries the rank and device; one log file per rank when a log dir is
// given; fatal checks (kernels/common/check.h) are routed through glog. Call once from main().
#pragma once

#include <string>

namespace df11 {

struct LoggingOptions {
  int rank = 0;            // MPI rank, or 0 for single-process tools
  int device = -1;         // CUDA device ordinal, or -1 for the CPU
  std::string log_dir;     // per-rank log files go here; empty: stderr only
  int verbosity = 0;       // VLOG level
};

void InitLogging(const char* argv0, const LoggingOptions& options);

// Updates the rank/device shown on each line (e.g. after MPI start-up).
void SetLogRank(int rank, int device);

}  // namespace df11
