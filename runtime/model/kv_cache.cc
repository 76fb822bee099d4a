// SPDX-License-Identifier: Apache-2.0
// KvBytesPerBudgetToken: the rank's bytes over the model-wide token cost, maximised over cache
// capacities. Both are piecewise linear in the capacity with breaks at the windows, so their
// ratio is monotone between breaks: its maximum is at capacity 1, at a window, or the limit of
// long caches (the full-attention layers' share).
#include "runtime/model/kv_cache.h"

namespace df11 {

double KvBytesPerBudgetToken(std::span<const int64_t> rank_windows,
                             std::span<const int64_t> model_windows, double row_bytes) {
  const double layers = static_cast<double>(model_windows.size());
  auto ratio = [&](int64_t capacity) {
    const double model = static_cast<double>(KvSlotsOfLayers(model_windows, capacity));
    return row_bytes * layers * static_cast<double>(KvSlotsOfLayers(rank_windows, capacity)) /
           model;
  };
  if (model_windows.empty()) return row_bytes * static_cast<double>(rank_windows.size());
  double worst = ratio(1);
  for (std::span<const int64_t> windows : {rank_windows, model_windows}) {
    for (int64_t w : windows) {
      if (w > 0) worst = std::max(worst, ratio(w));
    }
  }
  int64_t rank_full = 0, model_full = 0;
  for (int64_t w : rank_windows) rank_full += w == 0 ? 1 : 0;
  for (int64_t w : model_windows) model_full += w == 0 ? 1 : 0;
  if (model_full > 0) {
    worst = std::max(worst, row_bytes * layers * static_cast<double>(rank_full) /
                                static_cast<double>(model_full));
  }
  return worst;
}

}  // namespace df11
