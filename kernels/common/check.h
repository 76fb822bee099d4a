// SPDX-License-Identifier: Apache-2.0
// The one family of fatal check macros. Every macro evaluates its argument exactly once and, on
// failure, calls FatalError(): it formats "<file>:<line> [<context>] <statement> failed: <detail>",
// hands it to the installed fatal handler (glog + MPI_Abort once the runtime set one up; stderr +
// abort() by default) and never returns. Kernels depend on nothing else, so these live here.
// Use for broken invariants and infrastructure failures; bad input gets a Status instead.
#pragma once

#include <string>

namespace df11 {

using FatalHandler = void (*)(const std::string& message);

// Installs `handler` (nullptr restores the default). The handler must not return.
void SetFatalHandler(FatalHandler handler);
// A short "rank 3 device 1" description added to every fatal message.
void SetFatalContext(const std::string& context);

[[noreturn]] void FatalError(const char* file, int line, const char* statement,
                             const std::string& detail);

}  // namespace df11

#define DF11_CHECK(cond)                                                         \
  do {                                                                           \
    if (!(cond)) [[unlikely]] ::df11::FatalError(__FILE__, __LINE__, #cond, ""); \
  } while (0)

#define DF11_CHECK_MSG(cond, detail)                                                 \
  do {                                                                               \
    if (!(cond)) [[unlikely]] ::df11::FatalError(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)
