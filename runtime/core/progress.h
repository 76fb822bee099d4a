// SPDX-License-Identifier: Apache-2.0
// Progress of long work (compress, shard, load, batch generation): on a terminal, one line
// redrawn with done/total, rate and ETA; otherwise a periodic one-line status through glog.
// Thread-safe: Add() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace df11 {

class Progress {
 public:
  // `unit` names what is counted ("weights", "items"); `total` may be 0 when unknown.
  // A disabled Progress prints nothing.
  Progress(std::string label, int64_t total, std::string unit, bool enabled = true);
  ~Progress();

  void Add(int64_t n);
  // Prints the final line (called by the destructor if not called before).
  void Finish();

 private:
  void Report(bool final);

  std::string label_;
  std::string unit_;
  int64_t total_;
  std::atomic<int64_t> done_{0};
  bool tty_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_report_;
  std::mutex mu_;
};

// "1.23 G", "45.6 M", "789 k" — for rates and counts in messages.
std::string HumanCount(double value);

}  // namespace df11
