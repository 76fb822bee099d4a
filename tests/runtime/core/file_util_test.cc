// SPDX-License-Identifier: Apache-2.0
// ReadFileToString, which every file a command is pointed at goes through (configs, tokenizers,
// token files, deployment YAML, batch files, kernel tables): a regular file is read whole; a
// directory or a device is refused by name and kind instead of failing inside a parser or
// reading forever (/dev/zero); a missing file is NotFound. CheckFreeSpace refuses a write the
// file system cannot hold.
#include "runtime/core/file_util.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/common/temp_files.h"

namespace df11 {
namespace {

TEST(ReadFileToString, ReadsFilesAndRefusesDirectoriesAndDevicesByName) {
  test_support::TempDir tmp("df11_file_util");
  const std::string file = tmp.path() + "/a.json";
  const std::string text("{\"a\": 1}\n\0tail", 14);
  std::ofstream(file, std::ios::binary) << text;
  auto read = ReadFileToString(file);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, text);

  const std::pair<std::string, std::string> refused[] = {
      {tmp.path(), " is a directory: expected a file"},
      {"/dev/zero", " is a character device: expected a file"},
  };
  for (const auto& [path, message] : refused) {
    auto r = ReadFileToString(path);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), path + message);
  }
  auto missing = ReadFileToString(tmp.path() + "/none.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(tmp.path() + "/none.json"), std::string::npos);
}

TEST(CheckFreeSpace, RefusesWhatTheFileSystemCannotHold) {
  test_support::TempDir tmp("df11_file_util");
  EXPECT_TRUE(CheckFreeSpace(tmp.path(), 1, "out").ok());
  const Status s = CheckFreeSpace(tmp.path(), uint64_t{1} << 62, "out");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind("out: needs 4611686018.427 GB, its file system has ", 0), 0u)
      << s.ToString();
}

}  // namespace
}  // namespace df11
