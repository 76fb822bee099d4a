// SPDX-License-Identifier: Apache-2.0
#include "runtime/core/host_memory.h"

#include <algorithm>
#include <fstream>
#include <string>

namespace df11 {
namespace {

// The first integer in `path` ("max" and missing files read as -1).
int64_t ReadNumber(const std::string& path) {
  std::ifstream f(path);
  int64_t v = -1;
  if (!(f >> v)) return -1;
  return v;
}

// Room left under the cgroup's limit, or -1 when there is none (or it cannot be read).
int64_t CgroupRoom() {
  // /proc/self/cgroup: "0::/path" (v2) and "N:controllers:/path" lines (v1).
  std::ifstream self("/proc/self/cgroup");
  std::string line, v2 = "/", v1 = "/";
  while (std::getline(self, line)) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
    if (controllers == ",,") v2 = line.substr(b + 1);
    if (controllers.find(",memory,") != std::string::npos) v1 = line.substr(b + 1);
  }
  for (const std::string& dir : {"/sys/fs/cgroup" + v2, std::string("/sys/fs/cgroup")}) {
    const int64_t limit = ReadNumber(dir + "/memory.max");
    const int64_t used = ReadNumber(dir + "/memory.current");
    if (limit > 0 && used >= 0) return std::max<int64_t>(0, limit - used);
  }
  for (const std::string& dir :
       {"/sys/fs/cgroup/memory" + v1, std::string("/sys/fs/cgroup/memory")}) {
    const int64_t limit = ReadNumber(dir + "/memory.limit_in_bytes");
    const int64_t used = ReadNumber(dir + "/memory.usage_in_bytes");
    // v1 reports "no limit" as a number near 2^63.
    if (limit > 0 && limit < (int64_t{1} << 60) && used >= 0) {
      return std::max<int64_t>(0, limit - used);
    }
  }
  return -1;
}

}  // namespace

int64_t AvailableHostMemoryBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t available = 0;
  while (meminfo >> key) {
    if (key == "MemAvailable:") {
      int64_t kb = 0;
      meminfo >> kb;
      available = kb * 1024;
      break;
    }
    meminfo.ignore(1 << 10, '\n');
  }
  const int64_t room = CgroupRoom();
  return room >= 0 ? std::min(available, room) : available;
}

}  // namespace df11
