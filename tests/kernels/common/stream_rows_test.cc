// SPDX-License-Identifier: Apache-2.0
// The GEMV kernels' walk over streamed rows: the prefetch point is the weight the kernel reads
// `distance` weights later in its own order (rows in groups, each group over a column range,
// then the next group), including rows shorter than the distance; a thread's runs of rows are
// whole blocks and split the rows about evenly.
#include "kernels/common/stream_rows.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace df11 {
namespace {

// The (row, column) of each weight the first row of every group reads, in time order: groups of
// `group` rows, each over columns [c0, c1).
std::vector<std::pair<int64_t, int64_t>> ReadOrder(int64_t rows, int64_t c0, int64_t c1,
                                                   int64_t group) {
  std::vector<std::pair<int64_t, int64_t>> order;
  for (int64_t g = 0; g < rows; g += group) {
    for (int64_t c = c0; c < c1; ++c) order.emplace_back(g, c);
  }
  return order;
}

TEST(StreamRows, PrefetchPointIsWhatTheKernelReadsThatFarAhead) {
  struct Case {
    int64_t c0, c1, group, distance;
  };
  for (const Case& t : {Case{0, 1024, 4, 640}, Case{0, 4096, 8, 320}, Case{0, 256, 4, 640},
                        Case{0, 64, 1, 640}, Case{1024, 2048, 2, 640}, Case{0, 1000, 3, 999}}) {
    const auto order = ReadOrder(64 * t.group, t.c0, t.c1, t.group);
    for (size_t i = 0; i + t.distance < order.size(); i += 7) {
      const auto [row, col] = order[i];
      const PrefetchPoint at = PrefetchAhead(col, t.distance, t.c0, t.c1, t.group);
      const auto [want_row, want_col] = order[i + t.distance];
      ASSERT_EQ(row + at.rows, want_row) << "c0 " << t.c0 << " c1 " << t.c1 << " col " << col;
      ASSERT_EQ(at.column, want_col) << "c0 " << t.c0 << " c1 " << t.c1 << " col " << col;
    }
  }
}

TEST(StreamRows, RunsAreWholeBlocksAndShareTheRows) {
  for (int64_t n : {1, 7, 16, 100, 1024, 4096, 14336, 128256}) {
    for (int threads : {1, 2, 3, 16}) {
      for (int64_t multiple : {8, 16, 24}) {
        const int64_t run = RowRunLength(n, threads, multiple);
        EXPECT_EQ(run % multiple, 0) << n << " rows, " << threads << " threads";
        const int64_t runs = (n + run - 1) / run;
        EXPECT_LE(runs, threads * kRowRunsPerThread) << n << " rows, " << threads << " threads";
        // No run longer than an even share by more than one block.
        EXPECT_LE(run, (n + threads * kRowRunsPerThread - 1) / (threads * kRowRunsPerThread) +
                           multiple)
            << n << " rows, " << threads << " threads";
      }
    }
  }
  EXPECT_EQ(RowRunLength(1024, 2, 16), 256);
  EXPECT_EQ(RowRunLength(1024, 0, 16), 512);  // threads < 1 counts as one
}

}  // namespace
}  // namespace df11
