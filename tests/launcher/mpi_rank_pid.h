// SPDX-License-Identifier: Apache-2.0
// For tests that kill one rank of a running mpirun job: the pid of the process whose command
// line starts with `command_prefix` and whose Open MPI world rank is `rank`, or 0.
#pragma once

#include <sys/types.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/command.h"

namespace df11 {

inline pid_t FindMpiRankPid(const std::string& command_prefix, int rank) {
  std::istringstream listed(
      test_support::RunCommandSeparateStderr("pgrep -f '^" + command_prefix + " '").output);
  std::vector<pid_t> pids;
  for (pid_t pid; listed >> pid;) pids.push_back(pid);
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (pid_t candidate : pids) {
    std::ifstream in("/proc/" + std::to_string(candidate) + "/environ", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string env = ss.str();
    for (size_t at = 0; at < env.size();) {
      const size_t end = env.find('\0', at);
      if (env.compare(at, end - at, want) == 0) return candidate;
      if (end == std::string::npos) break;
      at = end + 1;
    }
  }
  return 0;
}

}  // namespace df11
