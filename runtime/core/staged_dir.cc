// SPDX-License-Identifier: Apache-2.0
#include "runtime/core/staged_dir.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "runtime/core/file_util.h"

namespace df11 {
namespace {

std::string HostName() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "host";
  return host;
}

// Removes the staging directories of `name` in `parent` that a run on this host left when it
// was killed (its process is gone); those of live runs and of other hosts stay.
void RemoveStaleStaging(const std::filesystem::path& parent, const std::string& name,
                        const std::string& host) {
  namespace fs = std::filesystem;
  const std::string prefix = "." + name + ".partial-" + host + "-";
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string entry = it->path().filename().string();
    if (!entry.starts_with(prefix)) continue;
    const std::string rest = entry.substr(prefix.size());  // "<pid>-<n>"
    char* stop = nullptr;
    const long pid = std::strtol(rest.c_str(), &stop, 10);
    if (pid <= 0 || stop == rest.c_str() || *stop != '-') continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    fs::remove_all(it->path(), rm);
    if (!rm) {
      std::fprintf(stderr, "removed %s, the partial output of an interrupted run\n",
                   it->path().c_str());
    }
  }
}

}  // namespace

StatusOr<StagedDir> StagedDir::Create(const std::string& target) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (target.empty()) return Status::InvalidArgument("the output directory name is empty");
  if (fs::exists(target, ec)) {
    if (!fs::is_directory(target, ec)) {
      return Status::FailedPrecondition(target + ": exists and is not a directory");
    }
    if (!fs::is_empty(target, ec) || ec) {
      return Status::FailedPrecondition(target + ": directory is not empty; refusing to "
                                        "overwrite (choose a new output directory)");
    }
  }
  fs::path t = fs::path(target).lexically_normal();
  if (!t.has_filename()) t = t.parent_path();  // "out/" -> "out"
  const fs::path parent = t.has_parent_path() ? t.parent_path() : fs::path(".");
  DF11_RETURN_IF_ERROR(MakeDirectories(parent.string()));
  const std::string host = HostName();
  RemoveStaleStaging(parent, t.filename().string(), host);
  static std::atomic<int> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string name = "." + t.filename().string() + ".partial-" + host + "-" +
                             std::to_string(::getpid()) + "-" + std::to_string(counter++);
    const std::string staging = (parent / name).string();
    if (::mkdir(staging.c_str(), 0777) == 0) return StagedDir(t.string(), staging);
    if (errno != EEXIST) {
      return Status::IoError(staging + ": cannot create directory: " + std::strerror(errno));
    }
  }
  return Status::IoError(target + ": cannot find a free name for a staging directory");
}

StagedDir::StagedDir(StagedDir&& other) noexcept
    : target_(std::move(other.target_)), staging_(std::move(other.staging_)) {
  other.staging_.clear();
}

StagedDir::~StagedDir() {
  if (staging_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(staging_, ec);
}

Status StagedDir::Commit() {
  if (staging_.empty()) return Status::Internal(target_ + ": staging directory already committed");
  // rename(2) replaces an empty directory atomically and fails on a non-empty one.
  if (std::rename(staging_.c_str(), target_.c_str()) != 0) {
    const int err = errno;
    Status s = Status::IoError(target_ + ": cannot move the finished output into place: " +
                               std::strerror(err));
    std::error_code ec;
    std::filesystem::remove_all(staging_, ec);
    staging_.clear();
    return s;
  }
  staging_.clear();
  return Status::Ok();
}

}  // namespace df11
