// SPDX-License-Identifier: Apache-2.0
#include "runtime/formats/layer_weights.h"

namespace df11 {

const char* WeightCodecName(WeightCodec codec) {
  switch (codec) {
    case WeightCodec::kDf11: return "df11";
    case WeightCodec::kEw4: return "ew4";
    case WeightCodec::kBf16: break;
  }
  return "bf16";
}

int64_t Weight::own_bytes() const {
  switch (codec) {
    case WeightCodec::kBf16: return 2 * numel();
    case WeightCodec::kEw4: return Ew4StoredBytes(ew4.rows, ew4.cols, ew4.n_escapes);
    case WeightCodec::kDf11: break;
  }
  return 0;
}

bool Weight::SameStorage(const Weight& o) const {
  if (codec != o.codec || rows != o.rows || cols != o.cols) return false;
  switch (codec) {
    case WeightCodec::kBf16: return bf16 == o.bf16;
    case WeightCodec::kDf11: return unit == o.unit && begin == o.begin;
    case WeightCodec::kEw4: return ew4.sign_mantissa == o.ew4.sign_mantissa;
  }
  return false;
}

}  // namespace df11
