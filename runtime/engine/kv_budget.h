// SPDX-License-Identifier: Apache-2.0
// The KV budget of the running sequences, in tokens: each admitted sequence reserves what its
// cache holds at most (prompt + max new tokens; with sliding-window layers, which keep only their
// window, the fewer tokens StepRunner::KvTokens counts) and gives it back when it retires.
// Requests wait, in order, for room; one that alone needs more than the whole budget is refused.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace df11 {

class KvBudget {
 public:
  // limit: tokens over all running sequences; 0: no limit.
  explicit KvBudget(int64_t limit) : limit_(limit) {}

  // Why a sequence of `prompt` prompt tokens and `max_new` new tokens, whose cache takes `need`
  // budget tokens, can never fit, or "".
  std::string Refusal(int64_t prompt, int64_t max_new, int64_t need) const;
  // Whether `tokens` more fit now.
  bool HasRoom(int64_t tokens) const { return limit_ <= 0 || reserved_ + tokens <= limit_; }
  void Reserve(int64_t tokens);
  void Release(int64_t tokens) { reserved_ -= tokens; }

  int64_t reserved() const { return reserved_; }
  int64_t peak() const { return peak_; }  // most reserved at once

 private:
  int64_t limit_;
  int64_t reserved_ = 0;
  int64_t peak_ = 0;
};

}  // namespace df11
