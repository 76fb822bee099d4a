// SPDX-License-Identifier: Apache-2.0
// ParallelFor and RunInBackground: every chunk runs once with bounds that depend only on n and
// chunk; regions and tasks reuse the pool's threads (counted in /proc/self/task) instead of
// creating threads; several callers at once, nested regions and far more threads than cores
// all complete with the right results.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kernels/common/parallel_for.h"

namespace df11 {
namespace {

std::set<std::string> ProcessThreads() {
  std::set<std::string> tids;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    tids.insert(e.path().filename().string());
  }
  return tids;
}

int64_t ThisThreadId() { return static_cast<int64_t>(syscall(SYS_gettid)); }

// Sum of i * i over [0, n) computed as per-chunk partial sums added in chunk order.
int64_t ChunkedSumOfSquares(int64_t n, int threads, int64_t chunk) {
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  std::vector<int64_t> partial(n_chunks, 0);
  ParallelFor(n, threads, chunk, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) partial[b / chunk] += i * i;
  });
  int64_t sum = 0;
  for (int64_t p : partial) sum += p;
  return sum;
}

int64_t SumOfSquares(int64_t n) { return (n - 1) * n * (2 * n - 1) / 6; }

TEST(ParallelFor, EveryChunkOnceWithBoundsIndependentOfThreads) {
  for (int64_t n : {1, 7, 1000, 4099}) {
    for (int64_t chunk : {1, 3, 64, 5000}) {
      const int64_t n_chunks = (n + chunk - 1) / chunk;
      for (int threads : {1, 2, 3, 8}) {
        SCOPED_TRACE("n " + std::to_string(n) + " chunk " + std::to_string(chunk) +
                     " threads " + std::to_string(threads));
        std::vector<std::atomic<int>> calls(n_chunks);
        std::vector<int64_t> ends(n_chunks, -1);
        std::atomic<int> misaligned{0};
        ParallelFor(n, threads, chunk, [&](int64_t b, int64_t e) {
          if (b % chunk != 0) {
            misaligned.fetch_add(1);
            return;
          }
          calls[b / chunk].fetch_add(1);
          ends[b / chunk] = e;
        });
        EXPECT_EQ(misaligned.load(), 0);
        for (int64_t c = 0; c < n_chunks; ++c) {
          ASSERT_EQ(calls[c].load(), 1) << "chunk " << c;
          ASSERT_EQ(ends[c], std::min(n, (c + 1) * chunk)) << "chunk " << c;
        }
      }
    }
  }
}

TEST(ParallelFor, RegionsAndTasksCreateNoThreads) {
  // Grow the pool and the background thread once, then count.
  ParallelFor(64, 4, 1, [](int64_t, int64_t) {});
  RunInBackground([] { return 0; }).get();
  const std::set<std::string> before = ProcessThreads();
  std::mutex mu;
  std::set<int64_t> runners;  // threads that ran a chunk
  for (int region = 0; region < 2000; ++region) {
    ParallelFor(64, 4, 1, [&](int64_t, int64_t) {
      std::lock_guard<std::mutex> lock(mu);
      runners.insert(ThisThreadId());
    });
  }
  for (int task = 0; task < 200; ++task) {
    // As the CPU backend decodes the next layer: a task whose regions run beside the caller's.
    auto next = RunInBackground([] { return ChunkedSumOfSquares(1000, 2, 10); });
    EXPECT_EQ(ChunkedSumOfSquares(1000, 2, 10), SumOfSquares(1000));
    EXPECT_EQ(next.get(), SumOfSquares(1000));
  }
  EXPECT_EQ(ProcessThreads(), before) << "threads were created or ended between regions";
  // The caller and the pool's workers (earlier tests may have grown it past 3).
  const size_t pool_threads = static_cast<size_t>(PoolWorkerCount()) + 1;
  EXPECT_LE(runners.size(), pool_threads)
      << "2000 regions ran on " << runners.size() << " different threads";
}

TEST(ParallelFor, ConcurrentCallersAndNestedRegions) {
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&wrong, t] {
      for (int region = 0; region < 100; ++region) {
        std::vector<int64_t> inner(16, 0);
        ParallelFor(16, 2 + t, 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) inner[i] = ChunkedSumOfSquares(100 + i, 2, 7);
        });
        for (int64_t i = 0; i < 16; ++i) {
          if (inner[i] != SumOfSquares(100 + i)) wrong.fetch_add(1);
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(ParallelFor, FarMoreThreadsThanCores) {
  const int threads = 8 * DefaultThreadCount();
  for (int round = 0; round < 50; ++round) {
    ASSERT_EQ(ChunkedSumOfSquares(10000, threads, 1), SumOfSquares(10000));
  }
  EXPECT_LE(PoolWorkerCount(), threads);
}

TEST(RunInBackground, RunsOffTheCallersThread) {
  const int64_t caller = ThisThreadId();
  auto tid = RunInBackground([] { return ThisThreadId(); });
  EXPECT_NE(tid.get(), caller);
}

}  // namespace
}  // namespace df11
