// SPDX-License-Identifier: Apache-2.0
#include "kernels/common/check.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace df11 {
namespace {

std::atomic<FatalHandler> g_handler{nullptr};
std::mutex g_context_mu;
std::string g_context;  // guarded by g_context_mu

}  // namespace

void SetFatalHandler(FatalHandler handler) { g_handler.store(handler); }

void SetFatalContext(const std::string& context) {
  std::lock_guard<std::mutex> lock(g_context_mu);
  g_context = context;
}

[[noreturn]] __attribute__((cold, noinline)) void FatalError(const char* file, int line,
                                                             const char* statement,
                                                             const std::string& detail) {
  std::string context;
  {
    std::lock_guard<std::mutex> lock(g_context_mu);
    context = g_context;
  }
  std::string message = std::string(file) + ":" + std::to_string(line) + " ";
  if (!context.empty()) message += "[" + context + "] ";
  message += std::string(statement) + " failed";
  if (!detail.empty()) message += ": " + detail;
  if (FatalHandler handler = g_handler.load()) handler(message);
  std::fprintf(stderr, "FATAL %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace df11
