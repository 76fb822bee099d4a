// SPDX-License-Identifier: Apache-2.0
// How the CPU GEMV kernels (BF16 and ew4) walk a matrix whose rows stream from memory, one
// place for both. A thread takes a few long runs of consecutive rows rather than many short
// ones (each new run starts with its first lines missing in every cache: at k = 1024 that cost
// ~20 % of the time from DRAM), and its software prefetch runs ahead in the order the kernel
// reads: along the rows of the group being multiplied, then on into the next group's rows (a
// prefetch that ran on in the same row would land in the next row of the same group, already
// read, whenever a row is shorter than the distance ahead, as a small model's are).
#pragma once

#include <algorithm>
#include <cstdint>

namespace df11 {

// Runs per thread: two, so a thread that starts late (woken from parking, or sharing its core)
// leaves the other one a run to take instead of making it wait.
inline constexpr int64_t kRowRunsPerThread = 2;

// Rows per ParallelFor chunk for n rows on `threads` threads: about n / (threads *
// kRowRunsPerThread), rounded up to a multiple of `multiple` (the kernel's own row blocks).
inline int64_t RowRunLength(int64_t n, int threads, int64_t multiple) {
  const int64_t runs = std::max<int64_t>(1, threads) * kRowRunsPerThread;
  const int64_t rows = (n + runs - 1) / runs;
  return std::max<int64_t>(multiple, (rows + multiple - 1) / multiple * multiple);
}

// Where to prefetch `distance` weights after column `col`, for a kernel that multiplies `group`
// consecutive rows in step over columns [c0, c1) and then the next `group` rows: `rows` rows on
// from the current one, at `column`.
struct PrefetchPoint {
  int64_t rows;
  int64_t column;
};
inline PrefetchPoint PrefetchAhead(int64_t col, int64_t distance, int64_t c0, int64_t c1,
                                   int64_t group) {
  PrefetchPoint at{0, col + distance};
  while (at.column >= c1) {  // rarely more than once: rows are usually longer than the distance
    at.column -= c1 - c0;
    at.rows += group;
  }
  return at;
}

}  // namespace df11
