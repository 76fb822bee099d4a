// SPDX-License-Identifier: Apache-2.0
#include "runtime/core/progress.h"

#include <glog/logging.h>
#include <unistd.h>

#include <cstdio>

namespace df11 {
namespace {

std::string FormatSeconds(double s) {
  if (s < 0 || s > 1e7) return "--:--";
  int total = static_cast<int>(s + 0.5);
  char buf[32];
  if (total >= 3600) {
    std::snprintf(buf, sizeof(buf), "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%02d:%02d", total / 60, total % 60);
  }
  return buf;
}

}  // namespace

std::string HumanCount(double value) {
  const char* suffix = "";
  if (value >= 1e9) {
    value /= 1e9;
    suffix = " G";
  } else if (value >= 1e6) {
    value /= 1e6;
    suffix = " M";
  } else if (value >= 1e3) {
    value /= 1e3;
    suffix = " k";
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g%s", value, suffix);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit, bool enabled)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      tty_(::isatty(STDERR_FILENO) != 0),
      enabled_(enabled),
      start_(std::chrono::steady_clock::now()),
      last_report_(start_) {}

Progress::~Progress() { Finish(); }

void Progress::Add(int64_t n) {
  done_.fetch_add(n, std::memory_order_relaxed);
  auto now = std::chrono::steady_clock::now();
  auto interval = tty_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(10000);
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || now - last_report_ < interval) return;
  last_report_ = now;
  Report(false);
}

void Progress::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  Report(true);
}

void Progress::Report(bool final) {
  if (!enabled_) return;
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  int64_t done = done_.load();
  double rate = elapsed > 0 ? done / elapsed : 0;
  char line[256];
  if (total_ > 0) {
    double eta = rate > 0 ? (total_ - done) / rate : -1;
    std::snprintf(line, sizeof(line), "%s: %5.1f%% %s/%s %s, %s %s/s, %s %s", label_.c_str(),
                  100.0 * done / total_, HumanCount(done).c_str(), HumanCount(total_).c_str(),
                  unit_.c_str(), HumanCount(rate).c_str(), unit_.c_str(),
                  final ? "elapsed" : "ETA", FormatSeconds(final ? elapsed : eta).c_str());
  } else {
    std::snprintf(line, sizeof(line), "%s: %s %s, %s %s/s, %s", label_.c_str(),
                  HumanCount(done).c_str(), unit_.c_str(), HumanCount(rate).c_str(),
                  unit_.c_str(), FormatSeconds(elapsed).c_str());
  }
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    std::fflush(stderr);
  } else if (final || elapsed > 0) {
    LOG(INFO) << line;
  }
}

}  // namespace df11
