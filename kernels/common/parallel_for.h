// SPDX-License-Identifier: Apache-2.0
// ParallelFor: runs fn over [0, n) in fixed chunks on up to `threads` threads: the caller's and
// workers of one process-wide pool, created on first use and parked between regions, so a
// region creates no threads once the pool has grown to the largest `threads` asked for.
// RunInBackground: runs a task on a persistent background thread (overlapped work such as
// decoding the next layer's weights), also without creating a thread per task.
// Thread-safe: both may be called from any thread, at once, and from inside fn or a task.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <type_traits>
#include <utility>

namespace df11 {

// Number of hardware threads (at least 1).
int DefaultThreadCount();

// Calls fn(begin, end) exactly once for every chunk [c * chunk, min(n, (c + 1) * chunk)),
// c = 0 .. ceil(n / chunk) - 1 (chunk < 1 counts as 1), and returns when all have returned. The
// chunk bounds depend only on n and chunk, never on `threads` or timing; which thread runs a
// chunk, and in which order, do. So a kernel whose chunks write disjoint outputs (or per-chunk
// partial results combined afterwards in chunk order) gives the same bits for any `threads`.
// The caller works on its own region's chunks until none is left, so a region completes even
// when every worker is busy elsewhere (nested regions, several callers, an oversubscribed
// host); workers pick up chunks as they come free. threads <= 1: all chunks on the caller.
void ParallelFor(int64_t n, int threads, int64_t chunk,
                 const std::function<void(int64_t begin, int64_t end)>& fn);

// Worker threads the pool holds now (for tests and diagnostics; it only ever grows).
int PoolWorkerCount();

namespace internal {
// Queues `task` for a background thread (one is added only when every thread has a task).
void PostBackgroundTask(std::function<void()> task);
}  // namespace internal

// Runs task() on a background thread, never the caller's, and returns its future. Tasks start
// in the order posted; a thread is added only when more tasks wait than threads exist, so one
// caller that waits for each task before posting the next keeps reusing one thread. Background
// threads are not region workers: a task's ParallelFor regions are helped by the pool as any
// caller's. A task must not wait for another background task (it may be queued behind it).
template <typename F>
std::future<std::invoke_result_t<F>> RunInBackground(F task) {
  auto packaged = std::make_shared<std::packaged_task<std::invoke_result_t<F>()>>(std::move(task));
  std::future<std::invoke_result_t<F>> result = packaged->get_future();
  internal::PostBackgroundTask([packaged] { (*packaged)(); });
  return result;
}

}  // namespace df11
