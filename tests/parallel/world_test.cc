// SPDX-License-Identifier: Apache-2.0
// The one rank mapping: ranks are stage-major (a stage's tp ranks are neighbours), and local
// ranks take GPUs in turn, sharing them only when there are more ranks than GPUs on a host.
#include "parallel/world.h"

#include <gtest/gtest.h>

#include <vector>

namespace df11 {
namespace {

TEST(ParallelLayoutTest, RanksAreStageMajor) {
  ParallelLayout l{4, 2};
  EXPECT_EQ(l.world(), 8);
  EXPECT_EQ(l.Stage(5), 1);
  EXPECT_EQ(l.TpRank(5), 1);
  for (int r = 0; r < l.world(); ++r) EXPECT_EQ(l.Rank(l.Stage(r), l.TpRank(r)), r);
}

TEST(LocalDeviceTest, RanksTakeGpusInTurnAndShareOnlyWhenThereAreMore) {
  // 8 ranks on a host with 8 GPUs: one each.
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(LocalDevice(r, 8), r);
    EXPECT_EQ(LocalDeviceSharers(8, 8, LocalDevice(r, 8)), 1);
  }
  // 5 ranks on 2 GPUs: GPU 0 serves local ranks 0, 2, 4 and GPU 1 ranks 1, 3.
  std::vector<int> users(2, 0);
  for (int r = 0; r < 5; ++r) ++users[LocalDevice(r, 2)];
  EXPECT_EQ(users, (std::vector<int>{3, 2}));
  EXPECT_EQ(LocalDeviceSharers(5, 2, 0), 3);
  EXPECT_EQ(LocalDeviceSharers(5, 2, 1), 2);
  // Fewer ranks than GPUs: the unused ones count no sharer below 1.
  EXPECT_EQ(LocalDeviceSharers(2, 8, 1), 1);
}

}  // namespace
}  // namespace df11
