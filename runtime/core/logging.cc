// SPDX-License-Identifier: Apache-2.0
#include "runtime/core/logging.h"

#include <glog/logging.h>

#include <atomic>
#include <cstdio>
#include <ctime>

#include "kernels/common/check.h"

namespace df11 {
namespace {

std::atomic<int> g_rank{0};
std::atomic<int> g_device{-1};

void PrefixFormatter(std::ostream& s, const google::LogMessageInfo& l, void*) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%c%02d%02d %02d:%02d:%02d.%06d", l.severity[0],
                l.time.month() + 1, l.time.day(), l.time.hour(), l.time.min(), l.time.sec(),
                static_cast<int>(l.time.usec()));
  s << buf << " r" << g_rank.load();
  int device = g_device.load();
  if (device >= 0) s << " d" << device;
  s << " " << l.filename << ':' << l.line_number << ']';
}

void GlogFatalHandler(const std::string& message) {
  LOG(ERROR) << "FATAL " << message;
  google::FlushLogFiles(google::GLOG_INFO);
}

}  // namespace

void InitLogging(const char* argv0, const LoggingOptions& options) {
  g_rank = options.rank;
  g_device = options.device;
  if (options.log_dir.empty()) {
    FLAGS_logtostderr = true;
  } else {
    FLAGS_log_dir = options.log_dir;
    FLAGS_alsologtostderr = false;
    FLAGS_stderrthreshold = google::GLOG_WARNING;
  }
  FLAGS_v = options.verbosity;
  static bool initialized = false;
  if (!initialized) {
    google::InitGoogleLogging(argv0, &PrefixFormatter, nullptr);
    initialized = true;
  }
  SetFatalHandler(&GlogFatalHandler);
  SetLogRank(options.rank, options.device);
}

void SetLogRank(int rank, int device) {
  g_rank = rank;
  g_device = device;
  std::string context = "rank " + std::to_string(rank);
  if (device >= 0) context += " device " + std::to_string(device);
  SetFatalContext(context);
}

}  // namespace df11
