// SPDX-License-Identifier: Apache-2.0
// RoPE: inverse frequencies and attention scaling (transformers' formulas) and the in-place
// rotation. The rotation keeps HF's float32 operation order, (x * cos) + (rotate_half(x) * sin),
// cos and sin each multiplied by the attention scaling first, without fused multiply-adds.
#include <algorithm>
#include <cmath>
#include <numbers>

#include "kernels/common/check.h"
#include "kernels/rope/rope.h"

namespace df11 {
namespace {

// transformers' _compute_llama3_parameters applied to one default inverse frequency.
double Llama3Scale(double inv_freq, const RopeParams& p) {
  const double old_context_len = static_cast<double>(p.original_max_position_embeddings);
  const double low_freq_wavelen = old_context_len / p.low_freq_factor;
  const double high_freq_wavelen = old_context_len / p.high_freq_factor;
  const double wavelen = 2.0 * std::numbers::pi / inv_freq;
  if (wavelen < high_freq_wavelen) return inv_freq;         // high frequency: unchanged
  if (wavelen > low_freq_wavelen) return inv_freq / p.factor;  // low frequency: interpolated
  const double smooth = (old_context_len / wavelen - p.low_freq_factor) /
                        (p.high_freq_factor - p.low_freq_factor);
  return (1.0 - smooth) * inv_freq / p.factor + smooth * inv_freq;
}

// transformers' _compute_yarn_parameters: the ramp between interpolated (inv_freq / factor) and
// extrapolated (inv_freq) frequencies over the correction range of dimensions.
std::vector<double> YarnInvFreq(const std::vector<double>& plain, const RopeParams& p) {
  const double dim = static_cast<double>(p.head_dim);
  const double orig = static_cast<double>(p.original_max_position_embeddings);
  auto correction_dim = [&](double rotations) {
    return dim * std::log(orig / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(p.theta));
  };
  double low = correction_dim(p.beta_fast), high = correction_dim(p.beta_slow);
  if (p.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dim - 1);
  if (low == high) high += 0.001;  // as transformers: no division by zero
  std::vector<double> out(plain.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation = 1.0 - ramp;  // share of the unscaled frequency
    out[i] = plain[i] / p.factor * (1.0 - extrapolation) + plain[i] * extrapolation;
  }
  return out;
}

double YarnMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

std::vector<float> RopeInvFreq(const RopeParams& p) {
  DF11_CHECK(p.head_dim >= 2 && p.head_dim % 2 == 0);
  DF11_CHECK(p.theta > 0.0);
  const bool llama3 = p.scaling_type == "llama3";
  const bool linear = p.scaling_type == "linear";
  const bool yarn = p.scaling_type == "yarn";
  const bool plain = p.scaling_type.empty() || p.scaling_type == "default";
  DF11_CHECK_MSG(plain || llama3 || linear || yarn,
                 "unsupported rope scaling type '" + p.scaling_type + "'");
  if (!plain) DF11_CHECK(p.factor > 0.0);
  if (llama3) {
    DF11_CHECK(p.original_max_position_embeddings > 0 && p.low_freq_factor > 0.0);
    DF11_CHECK(p.high_freq_factor > p.low_freq_factor);
  }
  if (yarn) {
    DF11_CHECK(p.original_max_position_embeddings > 0 && p.beta_fast > 0 && p.beta_slow > 0);
  }
  std::vector<double> f(static_cast<size_t>(p.head_dim / 2));
  for (int64_t i = 0; i < p.head_dim / 2; ++i) {
    // 1 / theta^(2i / head_dim), as torch.arange(0, dim, 2) / dim.
    f[i] = 1.0 / std::pow(p.theta, static_cast<double>(2 * i) / static_cast<double>(p.head_dim));
    if (llama3) f[i] = Llama3Scale(f[i], p);
    if (linear) f[i] /= p.factor;
  }
  if (yarn) f = YarnInvFreq(f, p);
  return std::vector<float>(f.begin(), f.end());
}

float RopeAttentionScaling(const RopeParams& p) {
  if (p.scaling_type != "yarn") return 1.0f;
  if (p.attention_factor > 0) return static_cast<float>(p.attention_factor);
  if (p.mscale > 0 && p.mscale_all_dim > 0) {
    return static_cast<float>(YarnMscale(p.factor, p.mscale) /
                              YarnMscale(p.factor, p.mscale_all_dim));
  }
  return static_cast<float>(YarnMscale(p.factor, 1.0));
}

void RopeRef(float* x, int64_t tokens, int64_t heads, int64_t head_dim, const int32_t* positions,
             const float* inv_freq, float attention_scaling) {
  DF11_CHECK(tokens >= 0 && heads >= 1 && head_dim >= 2 && head_dim % 2 == 0);
  if (tokens == 0) return;
  DF11_CHECK(x != nullptr && positions != nullptr && inv_freq != nullptr);
  const int64_t half = head_dim / 2;
  std::vector<float> cos_t(half), sin_t(half);
  for (int64_t t = 0; t < tokens; ++t) {
    const float pos = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq[i];
      cos_t[i] = std::cos(angle) * attention_scaling;
      sin_t[i] = std::sin(angle) * attention_scaling;
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* xh = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = xh[i];
        const float x2 = xh[i + half];
        const float x1c = x1 * cos_t[i], x2s = x2 * sin_t[i];
        const float x2c = x2 * cos_t[i], x1s = x1 * sin_t[i];
        xh[i] = x1c - x2s;
        xh[i + half] = x2c + x1s;
      }
    }
  }
}

}  // namespace df11
