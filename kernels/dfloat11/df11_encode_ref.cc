// SPDX-License-Identifier: Apache-2.0
#include "kernels/dfloat11/df11_encode.h"

#include <algorithm>

#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"

namespace df11 {
namespace {

constexpr int64_t kChunk = int64_t{1} << 20;  // elements per work item

// The concatenated matrices as one sequence of words, walked in segments.
class Concat {
 public:
  explicit Concat(std::span<const std::span<const uint16_t>> parts) : parts_(parts) {
    int64_t offset = 0;
    for (auto p : parts) {
      offsets_.push_back(offset);
      offset += static_cast<int64_t>(p.size());
    }
    size_ = offset;
  }
  int64_t size() const { return size_; }

  // Calls fn(words, global_index_of_first) for each contiguous piece of [begin, end).
  template <typename Fn>
  void ForEach(int64_t begin, int64_t end, Fn&& fn) const {
    for (size_t i = 0; i < parts_.size() && begin < end; ++i) {
      int64_t lo = offsets_[i], hi = lo + static_cast<int64_t>(parts_[i].size());
      if (hi <= begin) continue;
      int64_t b = std::max(begin, lo), e = std::min(end, hi);
      if (b < e) fn(parts_[i].data() + (b - lo), e - b, b);
    }
  }
  uint16_t At(int64_t index) const {
    size_t i = std::upper_bound(offsets_.begin(), offsets_.end(), index) - offsets_.begin() - 1;
    return parts_[i][index - offsets_[i]];
  }

 private:
  std::span<const std::span<const uint16_t>> parts_;
  std::vector<int64_t> offsets_;
  int64_t size_ = 0;
};

// MSB-first bit writer starting at an arbitrary bit of a shared, zeroed buffer. The first byte
// may be shared with the previous chunk's last byte, so it is kept aside and OR-ed in later.
class BitWriter {
 public:
  BitWriter(uint8_t* out, uint64_t start_bit)
      : out_(out), byte_(static_cast<int64_t>(start_bit >> 3)), first_byte_index_(byte_),
        n_(static_cast<int>(start_bit & 7)) {}

  void Put(uint32_t code, int len) {
    acc_ |= static_cast<uint64_t>(code) << (64 - n_ - len);
    n_ += len;
    if (n_ >= 32) {
      uint32_t word = static_cast<uint32_t>(acc_ >> 32);
      EmitByte(word >> 24);
      out_[byte_++] = static_cast<uint8_t>(word >> 16);
      out_[byte_++] = static_cast<uint8_t>(word >> 8);
      out_[byte_++] = static_cast<uint8_t>(word);
      acc_ <<= 32;
      n_ -= 32;
    }
  }
  void Finish() {
    while (n_ > 0) {
      EmitByte(static_cast<uint32_t>(acc_ >> 56));
      acc_ <<= 8;
      n_ -= 8;
    }
  }
  uint8_t first_byte() const { return first_byte_; }
  int64_t first_byte_index() const { return first_byte_index_; }

 private:
  void EmitByte(uint32_t b) {
    if (byte_ == first_byte_index_) {
      first_byte_ = static_cast<uint8_t>(b);
      ++byte_;
    } else {
      out_[byte_++] = static_cast<uint8_t>(b);
    }
  }

  uint8_t* out_;
  int64_t byte_;
  int64_t first_byte_index_;
  uint64_t acc_ = 0;
  int n_;
  uint8_t first_byte_ = 0;
};

inline uint32_t ExponentOf(uint16_t w) { return (w >> 7) & 0xFFu; }

}  // namespace

Df11UnitView Df11EncodedUnit::View() const {
  Df11UnitView v;
  v.luts = luts.data();
  v.n_luts = n_luts;
  v.encoded = encoded_exponent.data();
  v.n_bytes = static_cast<int64_t>(encoded_exponent.size());
  v.sign_mantissa = sign_mantissa.data();
  v.n_elements = n_elements;
  v.output_positions = output_positions.data();
  v.n_output_positions = static_cast<int64_t>(output_positions.size() / 4);
  v.gaps = gaps.data();
  v.n_gap_bytes = static_cast<int64_t>(gaps.size());
  return v;
}

void AccumulateExponentHistogram(std::span<const uint16_t> words, ExponentHistogram* histogram) {
  // Four sub-histograms break the store-to-load dependency on repeated exponents.
  uint32_t sub[4][256] = {};
  size_t i = 0, n = words.size();
  while (i < n) {
    size_t stop = std::min(n, i + (size_t{1} << 30));  // keep uint32 counters exact
    for (; i + 4 <= stop; i += 4) {
      ++sub[0][ExponentOf(words[i])];
      ++sub[1][ExponentOf(words[i + 1])];
      ++sub[2][ExponentOf(words[i + 2])];
      ++sub[3][ExponentOf(words[i + 3])];
    }
    for (; i < stop; ++i) ++sub[0][ExponentOf(words[i])];
    for (int s = 0; s < 256; ++s) {
      (*histogram)[s] += uint64_t{sub[0][s]} + sub[1][s] + sub[2][s] + sub[3][s];
      sub[0][s] = sub[1][s] = sub[2][s] = sub[3][s] = 0;
    }
  }
}

bool Df11EncodeRef(std::span<const std::span<const uint16_t>> matrices, int threads,
                   Df11EncodedUnit* out, std::string* error) {
  Concat data(matrices);
  const int64_t n = data.size();
  if (n > kDf11MaxElements) {
    *error = std::to_string(n) + " elements; a DF11 unit holds at most 2^31 - 1";
    return false;
  }
  *out = Df11EncodedUnit();
  out->n_elements = n;
  int64_t offset = 0;
  for (size_t i = 0; i + 1 < matrices.size(); ++i) {
    offset += static_cast<int64_t>(matrices[i].size());
    out->split_positions.push_back(offset);
  }

  // Pass 1: per-chunk histograms and the sign+mantissa bytes.
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  std::vector<ExponentHistogram> chunk_hist(n_chunks);
  out->sign_mantissa.resize(n);
  uint8_t* sm = out->sign_mantissa.data();
  ParallelFor(n_chunks, threads, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      chunk_hist[c].fill(0);
      data.ForEach(c * kChunk, std::min(n, (c + 1) * kChunk),
                   [&](const uint16_t* w, int64_t count, int64_t first) {
                     AccumulateExponentHistogram({w, static_cast<size_t>(count)}, &chunk_hist[c]);
                     uint8_t* dst = sm + first;
                     for (int64_t i = 0; i < count; ++i) {
                       dst[i] = static_cast<uint8_t>(((w[i] >> 8) & 0x80) | (w[i] & 0x7F));
                     }
                   });
    }
  });
  for (const auto& h : chunk_hist) {
    for (int s = 0; s < 256; ++s) out->histogram[s] += h[s];
  }
  if (!BuildDf11Code(out->histogram, &out->code, error)) return false;
  out->luts = BuildDf11Luts(out->code, &out->n_luts);
  const auto& len = out->code.length;
  const auto& code = out->code.code;

  // Each chunk's first bit is the sum of the code lengths before it.
  std::vector<uint64_t> chunk_start(n_chunks + 1, 0);
  for (int64_t c = 0; c < n_chunks; ++c) {
    uint64_t bits = 0;
    for (int s = 0; s < 256; ++s) bits += chunk_hist[c][s] * len[s];
    chunk_start[c + 1] = chunk_start[c] + bits;
  }
  const uint64_t total_bits = chunk_start[n_chunks];
  const int64_t n_bytes = static_cast<int64_t>((total_bits + 7) / 8);
  const int64_t n_blocks = Df11BlockCount(n_bytes);
  const int64_t n_windows = n_blocks * kDf11ThreadsPerBlock;
  out->encoded_exponent.assign(n_bytes, 0);
  std::vector<uint8_t> gap_of_window(n_windows, 0);
  std::vector<uint32_t> positions(n_blocks + 1, static_cast<uint32_t>(n));
  std::vector<uint8_t> first_bytes(n_chunks, 0);
  std::vector<int64_t> first_byte_index(n_chunks, -1);

  // Pass 2: codes, the first code start of each window, the first element of each block.
  uint8_t* enc = out->encoded_exponent.data();
  ParallelFor(n_chunks, threads, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = c * kChunk, end = std::min(n, (c + 1) * kChunk);
      uint64_t pos = chunk_start[c];
      if (pos == chunk_start[c + 1]) continue;  // no bits (cannot happen with begin < end)
      BitWriter writer(enc, pos);
      int64_t prev_window = -1, prev_block = -1;
      if (begin > 0) {
        uint64_t prev_start = pos - len[ExponentOf(data.At(begin - 1))];
        prev_window = static_cast<int64_t>(prev_start >> 6);
        prev_block = static_cast<int64_t>(prev_start / kDf11BlockBits);
      }
      data.ForEach(begin, end, [&](const uint16_t* w, int64_t count, int64_t first) {
        for (int64_t i = 0; i < count; ++i) {
          const uint32_t e = ExponentOf(w[i]);
          const int64_t window = static_cast<int64_t>(pos >> 6);
          if (window != prev_window) {
            gap_of_window[window] = static_cast<uint8_t>(pos & 63);
            prev_window = window;
            const int64_t block = static_cast<int64_t>(pos / kDf11BlockBits);
            if (block != prev_block) {
              positions[block] = static_cast<uint32_t>(first + i);
              prev_block = block;
            }
          }
          writer.Put(code[e], len[e]);
          pos += len[e];
        }
      });
      writer.Finish();
      first_bytes[c] = writer.first_byte();
      first_byte_index[c] = writer.first_byte_index();
    }
  });
  for (int64_t c = 0; c < n_chunks; ++c) {
    if (first_byte_index[c] >= 0) enc[first_byte_index[c]] |= first_bytes[c];
  }

  // Pack the 5-bit gaps MSB-first.
  out->gaps.assign(static_cast<size_t>((n_windows * kDf11GapBits + 7) / 8), 0);
  for (int64_t w = 0; w < n_windows; ++w) {
    const uint32_t g = gap_of_window[w];
    DF11_CHECK(g < 32);
    const int64_t bit = w * kDf11GapBits;
    const uint32_t shifted = g << (11 - (bit & 7));  // within a 16-bit big-endian pair
    out->gaps[bit >> 3] |= static_cast<uint8_t>(shifted >> 8);
    if (((bit & 7) + kDf11GapBits) > 8) out->gaps[(bit >> 3) + 1] |= static_cast<uint8_t>(shifted);
  }
  out->output_positions.resize(4 * positions.size());
  for (size_t b = 0; b < positions.size(); ++b) {
    for (int k = 0; k < 4; ++k) {
      out->output_positions[4 * b + k] = static_cast<uint8_t>(positions[b] >> (8 * k));
    }
  }
  return true;
}

}  // namespace df11
