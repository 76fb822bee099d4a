// SPDX-License-Identifier: Apache-2.0
#include "runtime/core/status.h"

namespace df11 {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "Invalid argument";
    case StatusCode::kNotFound: return "Not found";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kIoError: return "IO error";
    case StatusCode::kFailedPrecondition: return "Failed precondition";
    case StatusCode::kOutOfRange: return "Out of range";
    case StatusCode::kUnimplemented: return "Unsupported";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kUnauthenticated: return "Unauthenticated";
    case StatusCode::kCancelled: return "Cancelled";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

int ExitCode(const Status& s) {
  if (s.ok()) return 0;
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kUnimplemented ? 2 : 1;
}

Status Status::WithContext(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_);
}

}  // namespace df11
