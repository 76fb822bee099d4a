// SPDX-License-Identifier: Apache-2.0
// Small file helpers that return Status: whole-file reads, atomic writes (temp file + rename, so a
// crash never leaves a torn file), directory creation and copies.
#pragma once

#include <string>
#include <string_view>

#include "runtime/core/status.h"

namespace df11 {

StatusOr<std::string> ReadFileToString(const std::string& path);
// Writes `contents` to `path` through "<path>.tmp.<pid>" and rename(2).
Status WriteFileAtomic(const std::string& path, std::string_view contents);
Status MakeDirectories(const std::string& path);
Status CopyFile(const std::string& from, const std::string& to);
bool FileExists(const std::string& path);
bool IsDirectory(const std::string& path);
std::string JoinPath(const std::string& dir, const std::string& name);

}  // namespace df11
