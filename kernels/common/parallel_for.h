// SPDX-License-Identifier: Apache-2.0
// ParallelFor: runs fn(begin, end) over [0, n) in chunks on `threads` threads (the caller's thread
// included). Chunks are handed out dynamically, so uneven work balances. Blocks until done.
#pragma once

#include <cstdint>
#include <functional>

namespace df11 {

// Number of hardware threads (at least 1).
int DefaultThreadCount();

void ParallelFor(int64_t n, int threads, int64_t chunk,
                 const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace df11
