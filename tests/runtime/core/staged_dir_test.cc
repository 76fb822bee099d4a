// SPDX-License-Identifier: Apache-2.0
// StagedDir: the target appears only on Commit(), complete; an uncommitted (failed) run leaves
// neither the target nor its staging directory; a non-empty target is never touched; what a
// killed run left is removed by the next run on the same target once its process is gone.
#include "runtime/core/staged_dir.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;

class StagedDirTest : public ::testing::Test {
 protected:
  size_t Entries() const {
    return static_cast<size_t>(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()));
  }
  test_support::TempDir tmp_{"df11_staged_dir_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(StagedDirTest, TargetAppearsOnlyOnCommit) {
  auto staged = StagedDir::Create(dir_ + "/out/");
  ASSERT_TRUE(staged.ok()) << staged.status().ToString();
  std::ofstream(staged->path() + "/a.txt") << "a";
  EXPECT_FALSE(fs::exists(dir_ + "/out"));
  ASSERT_TRUE(staged->Commit().ok());
  EXPECT_TRUE(fs::exists(dir_ + "/out/a.txt"));
  EXPECT_EQ(Entries(), 1u);  // no staging directory left
}

TEST_F(StagedDirTest, UncommittedLeavesNothing) {
  {
    auto staged = StagedDir::Create(dir_ + "/nested/out");
    ASSERT_TRUE(staged.ok());
    std::ofstream(staged->path() + "/a.txt") << "a";
  }
  EXPECT_FALSE(fs::exists(dir_ + "/nested/out"));
  EXPECT_TRUE(fs::is_empty(dir_ + "/nested"));
}

TEST_F(StagedDirTest, EmptyTargetIsReplacedAndNonEmptyRefused) {
  fs::create_directory(dir_ + "/empty");
  auto staged = StagedDir::Create(dir_ + "/empty");
  ASSERT_TRUE(staged.ok());
  std::ofstream(staged->path() + "/a.txt") << "a";
  ASSERT_TRUE(staged->Commit().ok());
  EXPECT_TRUE(fs::exists(dir_ + "/empty/a.txt"));

  auto again = StagedDir::Create(dir_ + "/empty");
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("not empty"), std::string::npos);
  std::ofstream(dir_ + "/file") << "x";
  EXPECT_EQ(StagedDir::Create(dir_ + "/file").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Entries(), 2u);
}

// A killed run's staging directory (its process gone) is removed by the next Create() of the same
// target; a live run's, another host's and another target's stay.
TEST_F(StagedDirTest, AKilledRunsStagingIsRemovedByTheNextRun) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // a pid nothing runs as now
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof(host) - 1), 0);
  const std::string me = std::string(host) + "-";
  const std::string dead = dir_ + "/.out.partial-" + me + std::to_string(child) + "-0";
  const std::string live = dir_ + "/.out.partial-" + me + std::to_string(::getpid()) + "-99";
  const std::string elsewhere = dir_ + "/.out.partial-otherhost-" + std::to_string(child) + "-0";
  const std::string other = dir_ + "/.other.partial-" + me + std::to_string(child) + "-0";
  for (const std::string& d : {dead, live, elsewhere, other}) {
    fs::create_directories(d);
    std::ofstream(d + "/big.safetensors") << "partial";
  }
  auto staged = StagedDir::Create(dir_ + "/out");
  ASSERT_TRUE(staged.ok()) << staged.status().ToString();
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(elsewhere));
  EXPECT_TRUE(fs::exists(other));
}

}  // namespace
}  // namespace df11
