// SPDX-License-Identifier: Apache-2.0
#include "kernels/ew4/ew4_gemm_select.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "kernels/ew4/ew4_gemm_tc.h"
#include "kernels/ew4/ew4_gemv.h"

namespace df11 {
namespace {

constexpr Ew4GemmPath kPaths[] = {Ew4GemmPath::kGemv, Ew4GemmPath::kTensorCore,
                                  Ew4GemmPath::kDecodeCublas, Ew4GemmPath::kCublasBf16};

// A whole decimal integer >= 1, else false.
bool PositiveInt(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return v >= 1;
}

}  // namespace

const char* Ew4GemmPathName(Ew4GemmPath path) {
  switch (path) {
    case Ew4GemmPath::kGemv: return "ew4_gemv";
    case Ew4GemmPath::kTensorCore: return "ew4_tc";
    case Ew4GemmPath::kDecodeCublas: return "ew4_decode_cublas";
    case Ew4GemmPath::kCublasBf16: return "cublas_bf16";
  }
  return "?";
}

bool Ew4GemmPathTakes(Ew4GemmPath path, int64_t batch) {
  switch (path) {
    case Ew4GemmPath::kGemv: return batch >= 1 && batch <= kEw4GemvMaxBatch;
    case Ew4GemmPath::kTensorCore: return batch >= 1 && batch <= kEw4TcMaxBatch;
    default: return batch >= 1;
  }
}

Ew4GemmPath Ew4DefaultGemmPath(int64_t batch) {
  if (batch <= kEw4GemvMaxBatch) return Ew4GemmPath::kGemv;
  if (batch <= kEw4TcMaxBatch) return Ew4GemmPath::kTensorCore;
  return Ew4GemmPath::kDecodeCublas;
}

std::string Ew4GemmTable::Parse(std::string_view text, std::string_view source) {
  std::vector<Ew4GemmTiming> parsed;
  std::istringstream in{std::string(text)};
  int line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    const std::string where = std::string(source) + ":" + std::to_string(line_number) + ": ";
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    if (f.empty() || f[0][0] == '#') continue;
    if (f.size() != 5) {
      return where + "expected 5 fields (ROWS COLS BATCH PATH MICROSECONDS), got " +
             std::to_string(f.size());
    }
    Ew4GemmTiming t;
    if (!PositiveInt(f[0], &t.rows)) return where + "ROWS must be an integer >= 1, got " + f[0];
    if (!PositiveInt(f[1], &t.cols)) return where + "COLS must be an integer >= 1, got " + f[1];
    if (!PositiveInt(f[2], &t.batch)) return where + "BATCH must be an integer >= 1, got " + f[2];
    bool known = false;
    for (Ew4GemmPath p : kPaths) {
      if (f[3] == Ew4GemmPathName(p)) {
        t.path = p;
        known = true;
      }
    }
    if (!known) {
      return where + "PATH must be ew4_gemv, ew4_tc, ew4_decode_cublas or cublas_bf16, got " +
             f[3];
    }
    if (!Ew4GemmPathTakes(t.path, t.batch)) {
      return where + f[3] + " does not run a batch of " + f[2] + " tokens";
    }
    char* end = nullptr;
    t.microseconds = std::strtod(f[4].c_str(), &end);
    if (end != f[4].c_str() + f[4].size() || !std::isfinite(t.microseconds) ||
        t.microseconds <= 0) {
      return where + "MICROSECONDS must be a positive number, got " + f[4];
    }
    parsed.push_back(t);
  }
  if (parsed.empty()) {
    return std::string(source) + ": no timings (lines of ROWS COLS BATCH PATH MICROSECONDS)";
  }
  timings_.insert(timings_.end(), parsed.begin(), parsed.end());
  return "";
}

std::string Ew4GemmTable::Format() const {
  std::string out = "# ROWS COLS BATCH PATH MICROSECONDS\n";
  for (const Ew4GemmTiming& t : timings_) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "%lld %lld %lld %s %.3f\n", static_cast<long long>(t.rows),
                  static_cast<long long>(t.cols), static_cast<long long>(t.batch),
                  Ew4GemmPathName(t.path), t.microseconds);
    out += buf;
  }
  return out;
}

Ew4GemmPath Ew4GemmTable::Choose(int64_t rows, int64_t cols, int64_t batch,
                                 bool bf16_copy_allowed) const {
  auto allowed = [&](const Ew4GemmTiming& t) {
    return t.rows == rows && t.cols == cols && Ew4GemmPathTakes(t.path, batch) &&
           (bf16_copy_allowed || t.path != Ew4GemmPath::kCublasBf16);
  };
  // The measured batch that stands for `batch`: the smallest at or above it, else the largest.
  int64_t above = 0, largest = 0;
  for (const Ew4GemmTiming& t : timings_) {
    if (!allowed(t)) continue;
    if (t.batch >= batch && (above == 0 || t.batch < above)) above = t.batch;
    largest = std::max(largest, t.batch);
  }
  const int64_t measured = above != 0 ? above : largest;
  if (measured == 0) return Ew4DefaultGemmPath(batch);
  Ew4GemmPath best = Ew4DefaultGemmPath(batch);
  double best_us = std::numeric_limits<double>::infinity();
  for (const Ew4GemmTiming& t : timings_) {
    if (allowed(t) && t.batch == measured && t.microseconds < best_us) {
      best = t.path;
      best_us = t.microseconds;
    }
  }
  return best;
}

}  // namespace df11
