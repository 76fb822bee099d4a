// SPDX-License-Identifier: Apache-2.0
// Status and StatusOr<T>: recoverable errors for bad input (files, configs, flags, requests).
// A Status message names the thing that was wrong and what was expected. Infrastructure
// failures (CUDA, NCCL, MPI) do not use Status; they are fatal (see check.h).
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace df11 {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // a flag, config field or request value is wrong
  kNotFound,         // a file, tensor or item does not exist
  kCorruption,       // a file's content violates its format
  kIoError,          // the operating system refused a read or write
  kFailedPrecondition,
  kOutOfRange,
  kUnimplemented,  // a valid input this build does not support (e.g. an architecture)
  kInternal,
  kUnauthenticated,
  kCancelled,
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Unauthenticated(std::string m) {
    return {StatusCode::kUnauthenticated, std::move(m)};
  }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: <message>", or "OK".
  std::string ToString() const;
  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// The exit status of a command-line tool that failed with `s` (the one mapping every launcher
// uses): 2 for bad or unsupported input the user can fix (InvalidArgument: a flag, file, config
// field or request; Unimplemented: a valid input this build does not compute, such as an
// architecture or a rope type), 1 for everything else; 0 when `s` is OK.
int ExitCode(const Status& s);

// Holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design
  StatusOr(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace df11

#define DF11_STATUS_CONCAT_INNER(a, b) a##b
#define DF11_STATUS_CONCAT(a, b) DF11_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define DF11_RETURN_IF_ERROR(expr)                \
  do {                                            \
    ::df11::Status df11_status_tmp_ = (expr);     \
    if (!df11_status_tmp_.ok()) return df11_status_tmp_; \
  } while (0)

// `lhs = value of expr` (a StatusOr), or returns its Status from the enclosing function.
#define DF11_ASSIGN_OR_RETURN(lhs, expr) \
  DF11_ASSIGN_OR_RETURN_IMPL(DF11_STATUS_CONCAT(df11_statusor_, __LINE__), lhs, expr)
#define DF11_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
