// SPDX-License-Identifier: Apache-2.0
#include "kernels/common/parallel_for.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace df11 {

int DefaultThreadCount() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void ParallelFor(int64_t n, int threads, int64_t chunk,
                 const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  int64_t n_chunks = (n + chunk - 1) / chunk;
  int workers = static_cast<int>(std::min<int64_t>(std::max(threads, 1), n_chunks));
  if (workers == 1) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (;;) {
      int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) return;
      int64_t begin = c * chunk;
      fn(begin, std::min(n, begin + chunk));
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int i = 1; i < workers; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

}  // namespace df11
