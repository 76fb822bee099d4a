// SPDX-License-Identifier: Apache-2.0
// The tensor-core decode-GEMM's CPU reference (ew4_gemm_tc.h): the kernel's tiles, fragments,
// decode, slices and summation order, with the rounding inside one mma k16 step modelled as
// one rounding of a double sum. It builds each 16 x 16 A tile from the 32 lanes' fragments, so
// the fragment mapping the kernel uses is what the tests check.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"
#include "kernels/ew4/ew4_gemm_tc.h"

namespace df11 {
namespace {

constexpr int64_t kTargetCtas = 2 * 132;  // about twice an H100's SMs
constexpr int64_t kMinBlocksPerSlice = 4;

int64_t Blocks(int64_t k) { return (k + kEw4BlockWeights - 1) / kEw4BlockWeights; }

int64_t BlocksPerSlice(int64_t k, int splits) {
  return std::max<int64_t>(1, (Blocks(k) + splits - 1) / splits);
}

// Word e of the fragment from the two rows' packed pairs (rows g and g + 8).
uint16_t FragWord(const uint32_t (&low_row)[2], const uint32_t (&high_row)[2], int e) {
  const uint32_t pair = ((e >> 1) & 1) == 0 ? low_row[e >> 2] : high_row[e >> 2];
  return static_cast<uint16_t>((e & 1) == 0 ? pair & 0xFFFFu : pair >> 16);
}

// The 16 x 16 A tile at (row0, col0), tile[r][c], assembled from the 32 lanes' fragments.
template <typename Fragment>
void AssembleTile(int64_t row0, int64_t col0, const Fragment& fragment,
                  float (&tile)[kEw4TcWarpRows][kEw4TcStepK]) {
  for (int lane = 0; lane < 32; ++lane) {
    uint16_t words[kEw4TcFragWords];
    fragment(row0, col0, lane, words);
    for (int e = 0; e < kEw4TcFragWords; ++e) {
      tile[Ew4TcFragRow(lane, e)][Ew4TcFragCol(lane, e)] = Bf16ToFloat(words[e]);
    }
  }
}

// The reference on any fragment source: row tiles of 16 in parallel, each with its slices.
template <typename Fragment>
void TcGemm(const float* x, int64_t m, int64_t n, int64_t k, const uint16_t* bias, float* y,
            int threads, const Fragment& fragment) {
  DF11_CHECK(m >= 1 && m <= kEw4TcMaxBatch && n >= 0 && k >= 0);
  // B: the activations rounded to BF16 once, 0 past k to the end of the last block.
  const int64_t padded_k = Blocks(k) * kEw4BlockWeights;
  std::vector<float> xb(static_cast<size_t>(m * padded_k), 0.0f);
  for (int64_t b = 0; b < m; ++b) {
    for (int64_t p = 0; p < k; ++p) xb[b * padded_k + p] = Bf16ToFloat(FloatToBf16(x[b * k + p]));
  }
  const int splits = Ew4GemmTcSplits(n, k);
  const int64_t row_tiles = (n + kEw4TcWarpRows - 1) / kEw4TcWarpRows;
  ParallelFor(row_tiles, threads, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> total(static_cast<size_t>(m * kEw4TcWarpRows));
    std::vector<float> acc(total.size());
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row0 = t * kEw4TcWarpRows;
      for (int s = 0; s < splits; ++s) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        const int64_t c0 = Ew4GemmTcSliceBegin(k, splits, s) * kEw4BlockWeights;
        const int64_t c1 = Ew4GemmTcSliceBegin(k, splits, s + 1) * kEw4BlockWeights;
        for (int64_t col0 = c0; col0 < c1; col0 += kEw4TcStepK) {
          float tile[kEw4TcWarpRows][kEw4TcStepK];
          AssembleTile(row0, col0, fragment, tile);
          for (int64_t b = 0; b < m; ++b) {
            const float* xs = xb.data() + b * padded_k + col0;
            for (int r = 0; r < kEw4TcWarpRows; ++r) {
              float& a = acc[b * kEw4TcWarpRows + r];
              double sum = a;
              for (int i = 0; i < kEw4TcStepK; ++i) {
                sum += static_cast<double>(tile[r][i]) * static_cast<double>(xs[i]);
              }
              a = static_cast<float>(sum);
            }
          }
        }
        for (size_t i = 0; i < acc.size(); ++i) total[i] = s == 0 ? acc[i] : total[i] + acc[i];
      }
      for (int64_t b = 0; b < m; ++b) {
        for (int r = 0; r < kEw4TcWarpRows && row0 + r < n; ++r) {
          const int64_t j = row0 + r;
          const float sum = total[b * kEw4TcWarpRows + r];
          y[b * n + j] = bias != nullptr ? sum + Bf16ToFloat(bias[j]) : sum;
        }
      }
    }
  });
}

}  // namespace

int Ew4GemmTcSplits(int64_t n, int64_t k) {
  const int64_t row_ctas = std::max<int64_t>(1, (n + kEw4TcTileRows - 1) / kEw4TcTileRows);
  const int64_t wanted = (kTargetCtas + row_ctas - 1) / row_ctas;
  const int64_t most = std::max<int64_t>(1, Blocks(k) / kMinBlocksPerSlice);
  const int64_t splits = std::clamp<int64_t>(wanted, 1, most);
  // Every slice non-empty: the last one starts before the end.
  const int64_t per = BlocksPerSlice(k, static_cast<int>(splits));
  return static_cast<int>(std::max<int64_t>(1, (Blocks(k) + per - 1) / per));
}

int64_t Ew4GemmTcSliceBegin(int64_t k, int splits, int t) {
  return std::min(Blocks(k), t * BlocksPerSlice(k, splits));
}

int64_t Ew4GemmTcWorkspaceFloats(int64_t m, int64_t n, int64_t k) {
  const int splits = Ew4GemmTcSplits(n, k);
  return splits > 1 ? splits * m * n : 0;
}

void Ew4TcFragmentRef(const Ew4View& w, int64_t row0, int64_t col0, int lane,
                      uint16_t (&words)[kEw4TcFragWords]) {
  const int64_t block = col0 / kEw4BlockWeights;
  const int step = static_cast<int>(col0 % kEw4BlockWeights) / kEw4TcStepK;
  const int q = lane & 3;
  uint32_t rows[2][2];  // rows g and g + 8: their packed pairs
  for (int half = 0; half < 2; ++half) {
    const int64_t j = row0 + (lane >> 2) + 8 * half;
    // The block as the kernel stages it: zero-filled past k and past the last row.
    alignas(16) uint8_t codes[kEw4BlockCodeBytes] = {};
    alignas(16) uint8_t sm[kEw4BlockWeights] = {};
    if (j < w.rows) {
      std::memcpy(codes, w.codes + j * Ew4RowCodeBytes(w.cols) + block * kEw4BlockCodeBytes,
                  kEw4BlockCodeBytes);
      const int64_t base = block * kEw4BlockWeights;
      const int64_t valid = std::min<int64_t>(kEw4BlockWeights, w.cols - base);
      std::memcpy(sm, w.sign_mantissa + j * w.cols + base, static_cast<size_t>(valid));
    }
    uint32_t block_pairs[8];
    const uint32_t mask = Ew4TcRowBlockWords(codes, sm, w.window_start, q, block_pairs);
    rows[half][0] = block_pairs[2 * step];
    rows[half][1] = block_pairs[2 * step + 1];
    uint32_t escapes = (mask >> (4 * step)) & 0xFu;
    for (int i = 0; escapes != 0; ++i, escapes >>= 1) {
      const int64_t col = block * kEw4BlockWeights + Ew4TcWordColumn(step, q, i);
      if ((escapes & 1u) == 0 || j >= w.rows || col >= w.cols) continue;
      const uint32_t value = Ew4EscapeValue(w, j, static_cast<uint32_t>(col));
      rows[half][i >> 1] |= value << (16 * (i & 1));
    }
  }
  for (int e = 0; e < kEw4TcFragWords; ++e) words[e] = FragWord(rows[0], rows[1], e);
}

void Bf16TcFragmentRef(const uint16_t* w, int64_t n, int64_t k, int64_t row0, int64_t col0,
                       int lane, uint16_t (&words)[kEw4TcFragWords]) {
  for (int e = 0; e < kEw4TcFragWords; ++e) {
    const int64_t j = row0 + Ew4TcFragRow(lane, e), p = col0 + Ew4TcFragCol(lane, e);
    words[e] = j < n && p < k ? w[j * k + p] : 0;
  }
}

void Ew4GemmTcRef(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                  int threads) {
  TcGemm(x, m, w.rows, w.cols, bias, y, threads,
         [&](int64_t row0, int64_t col0, int lane, uint16_t (&words)[kEw4TcFragWords]) {
           Ew4TcFragmentRef(w, row0, col0, lane, words);
         });
}

void Bf16GemmTcRef(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                   int64_t n, int64_t k, int threads) {
  TcGemm(x, m, n, k, bias, y, threads,
         [&](int64_t row0, int64_t col0, int lane, uint16_t (&words)[kEw4TcFragWords]) {
           Bf16TcFragmentRef(w, n, k, row0, col0, lane, words);
         });
}

}  // namespace df11
