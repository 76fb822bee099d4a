// SPDX-License-Identifier: Apache-2.0
#include <algorithm>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/embedding/embedding.h"

namespace df11 {

void EmbeddingGatherRef(const uint16_t* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                        int64_t n, int64_t row_begin, float scale, float* out) {
  DF11_CHECK(vocab >= 1 && hidden >= 1 && n >= 0);
  if (n == 0) return;
  DF11_CHECK(table != nullptr && ids != nullptr && out != nullptr);
  for (int64_t i = 0; i < n; ++i) {
    float* dst = out + i * hidden;
    const int64_t row = static_cast<int64_t>(ids[i]) - row_begin;
    if (row < 0 || row >= vocab) {
      std::fill(dst, dst + hidden, 0.0f);
      continue;
    }
    const uint16_t* src = table + row * hidden;
    for (int64_t j = 0; j < hidden; ++j) dst[j] = Bf16ToFloat(src[j]) * scale;
  }
}

}  // namespace df11
