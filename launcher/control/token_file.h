// SPDX-License-Identifier: Apache-2.0
// The control plane's shared secret on disk. df11-coordinator, df11-ctl and df11-run serve read
// it through ReadTokenFile, which refuses a file that could leak the secret or that holds one too
// short to resist guessing (as ssh refuses a private key others can read): the file must be a
// regular file with no permission bits for group or others (chmod 600) holding at least
// kMinTokenBytes bytes. `allow_insecure` (the --allow-insecure-token-file flag) accepts such a
// file with a warning on stderr instead.
#pragma once

#include <string>

#include "runtime/core/status.h"

namespace df11 {

inline constexpr size_t kMinTokenBytes = 16;
inline constexpr char kAllowInsecureTokenFlag[] = "--allow-insecure-token-file";
inline constexpr char kAllowInsecureTokenHelp[] =
    "accept a token file that group or others may access, or a token shorter than 16 bytes "
    "(with a warning)";

// Returns the token: the file's content without surrounding whitespace. An unreadable file is
// kNotFound/kIoError; an empty token, a token shorter than kMinTokenBytes or a file group or
// others may access (unless `allow_insecure`) is kInvalidArgument naming the file, its mode or
// length, and what is expected.
StatusOr<std::string> ReadTokenFile(const std::string& path, bool allow_insecure);

}  // namespace df11
