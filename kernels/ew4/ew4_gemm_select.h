// SPDX-License-Identifier: Apache-2.0
// Which kernel multiplies an ew4 matrix for a step of a given batch: the fused GEMV (up to
// kEw4GemvMaxBatch tokens), the tensor-core decode-GEMM (up to kEw4TcMaxBatch), decode to
// scratch + cuBLAS (any batch), or cuBLAS on a resident raw BF16 copy (any batch, when memory
// allows keeping one). Chosen per (rows, cols, batch) from a small table of measured times, or,
// for a shape the table does not hold, by the derived rule Ew4DefaultGemmPath.
//
// Table text (what `ew4_gemm_tc_cuda_bench --table` writes, `df11-run --ew4-gemm-table`
// reads): one measurement per line,
//   ROWS COLS BATCH PATH MICROSECONDS
// with PATH one of ew4_gemv, ew4_tc, ew4_decode_cublas, cublas_bf16; blank lines and lines
// starting with '#' are skipped. For a (rows, cols) the table holds, a batch takes the
// measurements at the smallest measured batch at or above it (the largest measured batch above
// them all) and the fastest path among those that take the batch and are allowed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace df11 {

enum class Ew4GemmPath { kGemv, kTensorCore, kDecodeCublas, kCublasBf16 };

// "ew4_gemv", "ew4_tc", "ew4_decode_cublas", "cublas_bf16".
const char* Ew4GemmPathName(Ew4GemmPath path);
// Whether `path` runs a step of `batch` tokens (GEMV: 1..8, tensor cores: 1..256, the others
// any batch >= 1).
bool Ew4GemmPathTakes(Ew4GemmPath path, int64_t batch);
// Without measurements: the GEMV up to 8 tokens, the tensor cores up to 256, decode + cuBLAS
// above (each weight decoded once per step; above 256 tokens cuBLAS's tiles win, research §5.3).
Ew4GemmPath Ew4DefaultGemmPath(int64_t batch);

struct Ew4GemmTiming {
  int64_t rows = 0, cols = 0, batch = 0;
  Ew4GemmPath path = Ew4GemmPath::kGemv;
  double microseconds = 0;
};

class Ew4GemmTable {
 public:
  // Parses table text; "" on success, else "<source>:<line>: <what was expected>" (a text
  // without a timing line: "<source>: no timings ...").
  std::string Parse(std::string_view text, std::string_view source);
  // The text Parse reads back (rows, cols, batch and path in the order added).
  std::string Format() const;
  void Add(const Ew4GemmTiming& timing) { timings_.push_back(timing); }
  const std::vector<Ew4GemmTiming>& timings() const { return timings_; }

  // The path for a (rows, cols) ew4 matrix at `batch` tokens (>= 1). cuBLAS BF16 only when
  // `bf16_copy_allowed` (a raw copy of the matrix fits in memory); falls back to
  // Ew4DefaultGemmPath when the table holds no allowed measurement for the shape.
  Ew4GemmPath Choose(int64_t rows, int64_t cols, int64_t batch, bool bf16_copy_allowed) const;

 private:
  std::vector<Ew4GemmTiming> timings_;
};

}  // namespace df11
