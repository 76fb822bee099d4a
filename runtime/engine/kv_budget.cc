// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/kv_budget.h"

#include <algorithm>

namespace df11 {

std::string KvBudget::Refusal(int64_t prompt, int64_t max_new, int64_t need) const {
  if (limit_ <= 0 || need <= limit_) return "";
  return "needs " + std::to_string(need) + " KV cache tokens (prompt " + std::to_string(prompt) +
         " + max_tokens " + std::to_string(max_new) +
         (need < prompt + max_new ? ", sliding-window layers keeping only their window" : "") +
         "), more than the KV budget of " + std::to_string(limit_) + " tokens";
}

void KvBudget::Reserve(int64_t tokens) {
  reserved_ += tokens;
  peak_ = std::max(peak_, reserved_);
}

}  // namespace df11
