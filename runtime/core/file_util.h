// SPDX-License-Identifier: Apache-2.0
// Small file helpers that return Status: whole-file reads, atomic writes (temp file + rename, so a
// crash never leaves a torn file), directory creation and copies.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/core/status.h"

namespace df11 {

// The whole file (a regular file or a pipe); a directory or a device is InvalidArgument, naming
// the path and what it is.
StatusOr<std::string> ReadFileToString(const std::string& path);
// "a directory", "a character device", ... (from stat(2)'s st_mode), for messages.
std::string FileKindOf(mode_t mode);
// Writes `contents` to `path` through "<path>.tmp.<pid>" and rename(2).
Status WriteFileAtomic(const std::string& path, std::string_view contents);
Status MakeDirectories(const std::string& path);
Status CopyFile(const std::string& from, const std::string& to);
// FailedPrecondition ("<what>: needs ... GB, its file system has ... GB free") when the file
// system of `dir` has fewer than `bytes` free for this user, so a command that would fill the
// disk hours into its run refuses before it writes. Ok when the free space cannot be read.
Status CheckFreeSpace(const std::string& dir, uint64_t bytes, const std::string& what);
bool FileExists(const std::string& path);
bool IsDirectory(const std::string& path);
std::string JoinPath(const std::string& dir, const std::string& name);

}  // namespace df11
