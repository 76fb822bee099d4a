// SPDX-License-Identifier: Apache-2.0
// How much host memory this process may still take: the kernel's MemAvailable, lowered to what
// the process's cgroup allows (memory.max - memory.current, or cgroup v1's limit - usage), since
// a container's /proc/meminfo shows the whole machine's figures.
#pragma once

#include <cstdint>

namespace df11 {

// Bytes, read now; 0 when /proc/meminfo cannot be read.
int64_t AvailableHostMemoryBytes();

}  // namespace df11
