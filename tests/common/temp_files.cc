// SPDX-License-Identifier: Apache-2.0
#include "tests/common/temp_files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace df11::test_support {

TempDir::TempDir(const std::string& prefix) : path_("/tmp/" + prefix + "_XXXXXX") {
  if (mkdtemp(path_.data()) == nullptr) {
    std::fprintf(stderr, "cannot make a temporary directory %s: %s\n", path_.c_str(),
                 std::strerror(errno));
    std::abort();
  }
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void WriteOwnerOnlyFile(const std::string& path, const std::string& content) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    ADD_FAILURE() << "cannot create " << path << ": " << std::strerror(errno);
    return;
  }
  // An existing file keeps its mode through open(): set it.
  bool ok = fchmod(fd, 0600) == 0;
  for (size_t at = 0; ok && at < content.size();) {
    const ssize_t n = write(fd, content.data() + at, content.size() - at);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) at += static_cast<size_t>(n);
  }
  if (!ok) ADD_FAILURE() << "cannot write " << path << ": " << std::strerror(errno);
  close(fd);
}

}  // namespace df11::test_support
