// SPDX-License-Identifier: Apache-2.0
// TempDir makes a private directory and removes it with what it holds; WriteOwnerOnlyFile leaves
// a file only its owner can read, also when one was there before.
#include "tests/common/temp_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace df11::test_support {
namespace {

namespace fs = std::filesystem;

mode_t Mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(TempDir, IsAFreshPrivateDirectoryRemovedWithItsContents) {
  std::string path;
  {
    TempDir a("df11_temp_files_test");
    TempDir b("df11_temp_files_test");
    path = a.path();
    EXPECT_NE(a.path(), b.path());
    EXPECT_EQ(path.rfind("/tmp/df11_temp_files_test_", 0), 0u) << path;
    ASSERT_TRUE(fs::is_directory(path));
    EXPECT_EQ(Mode(path), 0700u);
    fs::create_directories(path + "/x/y");
    std::ofstream(path + "/x/y/z") << "data";
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(WriteOwnerOnlyFile, IsOwnerOnlyEvenOverAnOpenFile) {
  TempDir dir("df11_temp_files_test");
  const std::string token = dir.path() + "/token";
  WriteOwnerOnlyFile(token, "0123456789abcdef0123\n");
  EXPECT_EQ(Mode(token), 0600u);
  EXPECT_EQ(Read(token), "0123456789abcdef0123\n");
  // A longer file readable by everyone: replaced, and no longer readable by others.
  std::ofstream(dir.path() + "/open") << "a much longer text than the new content";
  fs::permissions(dir.path() + "/open", fs::perms::all);
  WriteOwnerOnlyFile(dir.path() + "/open", "short");
  EXPECT_EQ(Mode(dir.path() + "/open"), 0600u);
  EXPECT_EQ(Read(dir.path() + "/open"), "short");
}

}  // namespace
}  // namespace df11::test_support
