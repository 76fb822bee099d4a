// SPDX-License-Identifier: Apache-2.0
// An output directory written all or nothing. Create() refuses a target that exists and is not an
// empty directory, then makes a fresh staging directory beside it
// (".<name>.partial-<host>-<pid>-<n>", same file system); the command writes everything there
// (path()) and Commit() renames it onto the target in one step. Until then the destructor removes
// the staging directory and all in it, so a command that fails leaves no output. A killed process
// leaves its staging directory behind (never a half-written target); the next Create() of the
// same target on that host removes it once that process is gone. Not thread-safe; one owner.
#pragma once

#include <string>

#include "runtime/core/status.h"

namespace df11 {

class StagedDir {
 public:
  // FailedPrecondition when `target` exists and is not an empty directory (nothing is ever
  // overwritten); IoError when the staging directory cannot be made.
  static StatusOr<StagedDir> Create(const std::string& target);

  StagedDir(StagedDir&& other) noexcept;
  StagedDir& operator=(StagedDir&&) = delete;
  ~StagedDir();

  // Where to write; valid until Commit().
  const std::string& path() const { return staging_; }
  const std::string& target() const { return target_; }

  // Renames the staging directory onto the target (which may be an empty directory). IoError
  // (and the staging directory is removed) when the rename fails.
  Status Commit();

 private:
  StagedDir(std::string target, std::string staging)
      : target_(std::move(target)), staging_(std::move(staging)) {}

  std::string target_;
  std::string staging_;  // empty once committed or moved from
};

}  // namespace df11
