// SPDX-License-Identifier: Apache-2.0
// Files a test makes for itself: a fresh directory that is removed with everything in it when the
// test is done, and files only their owner may read (token files).
#pragma once

#include <string>

namespace df11::test_support {

// A new directory /tmp/<prefix>_XXXXXX, removed with everything in it when this is destroyed.
// A fixture holds one as a member (a directory per test) or as a static std::optional made in
// SetUpTestSuite (one per suite). Not being able to make it ends the test program: the machine,
// not the code under test, is broken.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes `content` to `path` (replacing it), readable and writable by its owner only (mode 0600
// from the moment it exists), as the control plane's token files must be. A failure is a test
// failure naming the path.
void WriteOwnerOnlyFile(const std::string& path, const std::string& content);

}  // namespace df11::test_support
