// SPDX-License-Identifier: Apache-2.0
#include "launcher/control/token_file.h"

#include <sys/stat.h>

#include <cctype>
#include <cstdio>

#include "runtime/core/file_util.h"

namespace df11 {
namespace {

std::string Octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

StatusOr<std::string> ReadTokenFile(const std::string& path, bool allow_insecure) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return Status::NotFound("token file " + path + ": cannot stat it");
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("token file " + path + " is not a regular file");
  }
  DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!text.empty() && space(text.back())) text.pop_back();
  size_t start = 0;
  while (start < text.size() && space(text[start])) ++start;
  text = text.substr(start);
  if (text.empty()) return Status::InvalidArgument("token file " + path + " is empty");

  std::string problem;
  if ((st.st_mode & 077) != 0) {
    problem = "token file " + path + " has mode " + Octal(st.st_mode) +
              ": group or others may access it; expected 0600 or stricter (chmod 600 " + path + ")";
  } else if (text.size() < kMinTokenBytes) {
    problem = "token file " + path + " holds a " + std::to_string(text.size()) +
              "-byte token; expected at least " + std::to_string(kMinTokenBytes) +
              " bytes (e.g. head -c 32 /dev/urandom | base64 > " + path + ")";
  }
  if (problem.empty()) return text;
  if (!allow_insecure) {
    return Status::InvalidArgument(problem + ", or pass " + kAllowInsecureTokenFlag +
                                   " to accept it");
  }
  std::fprintf(stderr, "warning: %s; accepted because of %s\n", problem.c_str(),
               kAllowInsecureTokenFlag);
  return text;
}

}  // namespace df11
