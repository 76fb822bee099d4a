// SPDX-License-Identifier: Apache-2.0
// The process-wide pool behind ParallelFor and RunInBackground. A region lives on its caller's
// stack and is listed in `regions_` while it runs; parked workers wake on `wake_`, join a listed
// region (under `mu_`, at most threads - 1 of them) and claim chunks with one atomic counter.
// The caller leaves only when no worker is inside its region, which it checks under `mu_`, so a
// worker never touches a region after its caller returned. The pool is never destroyed (workers
// stay parked until the process exits), so no static destructor can race a region.
#include "kernels/common/parallel_for.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace df11 {
namespace {

// How long an idle worker keeps polling for the next region before it parks: regions of one
// forward step follow each other within microseconds, and a parked worker takes a futex wake-up
// (tens of microseconds on a loaded host) to start.
constexpr auto kSpinBeforePark = std::chrono::microseconds(50);

void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

struct Region {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n = 0, chunk = 1, n_chunks = 0;
  std::atomic<int64_t> next{0};  // next unclaimed chunk
  int open_seats = 0;            // guarded by the pool's mu_: workers that may still join
  std::atomic<int> inside{0};    // workers in RunChunks; changed under mu_

  void RunChunks() {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) return;
      const int64_t begin = c * chunk;
      (*fn)(begin, std::min(n, begin + chunk));
    }
  }
};

class Pool {
 public:
  static Pool& Get() {
    static Pool* pool = new Pool();  // never destroyed: see the file comment
    return *pool;
  }

  void Run(Region* r, int helpers) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (static_cast<int>(workers_.size()) < helpers) {
        workers_.emplace_back([this] { WorkerLoop(); });
      }
      r->open_seats = helpers;
      regions_.push_back(r);
    }
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_all();
    r->RunChunks();
    {
      std::lock_guard<std::mutex> lock(mu_);
      regions_.erase(std::find(regions_.begin(), regions_.end(), r));
    }
    // Every chunk is claimed; wait for the workers still running one.
    const auto spin_end = std::chrono::steady_clock::now() + kSpinBeforePark;
    while (r->inside.load(std::memory_order_acquire) != 0 &&
           std::chrono::steady_clock::now() < spin_end) {
      CpuRelax();
    }
    std::unique_lock<std::mutex> lock(mu_);
    left_cv_.wait(lock, [r] { return r->inside.load(std::memory_order_acquire) == 0; });
  }

  void Post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
      // A thread that just finished a task may not have counted itself idle yet (its task's
      // future is ready first), so count every thread: one is added only when the queue is
      // longer than the threads there are. A queued task may wait for a running one to end.
      if (tasks_.size() > background_.size()) {
        background_.emplace_back([this] { BackgroundLoop(); });
      }
    }
    task_cv_.notify_one();
  }

  int WorkerCount() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(workers_.size());
  }

 private:
  Pool() = default;

  // A listed region with chunks left and a free seat (taken), or nullptr.
  Region* Join() {
    std::lock_guard<std::mutex> lock(mu_);
    for (Region* r : regions_) {
      if (r->open_seats > 0 && r->next.load(std::memory_order_relaxed) < r->n_chunks) {
        --r->open_seats;
        r->inside.fetch_add(1, std::memory_order_relaxed);
        return r;
      }
    }
    return nullptr;
  }

  void Leave(Region* r) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      r->inside.fetch_sub(1, std::memory_order_release);  // r may be gone after the unlock
    }
    left_cv_.notify_all();
  }

  void WorkerLoop() {
    for (;;) {
      const uint32_t seen = wake_.load(std::memory_order_acquire);
      if (Region* r = Join()) {
        r->RunChunks();
        Leave(r);
        continue;
      }
      const auto spin_end = std::chrono::steady_clock::now() + kSpinBeforePark;
      bool woken = false;
      while (!woken && std::chrono::steady_clock::now() < spin_end) {
        for (int i = 0; i < 64 && !woken; ++i) {
          CpuRelax();
          woken = wake_.load(std::memory_order_acquire) != seen;
        }
      }
      if (!woken) wake_.wait(seen, std::memory_order_acquire);
    }
  }

  void BackgroundLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      task_cv_.wait(lock, [this] { return !tasks_.empty(); });
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // the task's captures die outside the lock
      lock.lock();
    }
  }

  std::mutex mu_;
  std::vector<std::thread> workers_;      // region workers; only grows
  std::vector<Region*> regions_;          // running regions, oldest first
  std::atomic<uint32_t> wake_{0};         // bumped when a region is listed
  std::condition_variable left_cv_;       // a worker left a region
  std::vector<std::thread> background_;   // task threads; only grows
  std::deque<std::function<void()>> tasks_;
  std::condition_variable task_cv_;
};

}  // namespace

int DefaultThreadCount() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void ParallelFor(int64_t n, int threads, int64_t chunk,
                 const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n <= 0) return;
  Region r;
  r.fn = &fn;
  r.n = n;
  r.chunk = std::max<int64_t>(chunk, 1);
  r.n_chunks = (n + r.chunk - 1) / r.chunk;
  const int helpers = static_cast<int>(std::min<int64_t>(std::max(threads, 1), r.n_chunks)) - 1;
  if (helpers == 0) {
    r.RunChunks();
    return;
  }
  Pool::Get().Run(&r, helpers);
}

int PoolWorkerCount() { return Pool::Get().WorkerCount(); }

namespace internal {
void PostBackgroundTask(std::function<void()> task) { Pool::Get().Post(std::move(task)); }
}  // namespace internal

}  // namespace df11
