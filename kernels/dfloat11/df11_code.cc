// SPDX-License-Identifier: Apache-2.0
#include "kernels/dfloat11/df11_code.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "kernels/common/check.h"
#include "kernels/dfloat11/df11_layout.h"

namespace df11 {
namespace {

// An item of the package-merge: its weight and how often each leaf occurs in it.
struct Item {
  uint64_t weight;
  std::vector<uint8_t> leaf_count;  // indexed by leaf rank
};

// Canonical code values from lengths: shorter codes first, ties by symbol value.
void AssignCanonical(Df11Code* code) {
  std::vector<int> order;
  for (int s = 0; s < 256; ++s) {
    if (code->length[s] != 0) order.push_back(s);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return code->length[a] < code->length[b]; });
  uint64_t next = 0;
  int prev_len = 0;
  for (int s : order) {
    next <<= (code->length[s] - prev_len);
    prev_len = code->length[s];
    code->code[s] = static_cast<uint32_t>(next);
    ++next;
  }
}

// Byte-aligned proper prefixes (length 8, 16, 24) of every code longer than 8 bits, keyed by
// (prefix length, prefix value) so that iteration order is the row order.
std::map<std::pair<int, uint32_t>, int> PrefixRows(const Df11Code& code) {
  std::map<std::pair<int, uint32_t>, int> rows;
  for (int s = 0; s < 256; ++s) {
    int len = code.length[s];
    for (int p = 8; p < len; p += 8) rows[{p, code.code[s] >> (len - p)}] = 0;
  }
  int index = 1;
  for (auto& [key, row] : rows) row = index++;
  return rows;
}

}  // namespace

std::array<uint8_t, 256> LengthLimitedCodeLengths(const ExponentHistogram& counts, int limit) {
  std::vector<std::pair<uint64_t, int>> leaves;  // (count, symbol), ascending
  for (int s = 0; s < 256; ++s) {
    if (counts[s] != 0) leaves.emplace_back(counts[s], s);
  }
  std::array<uint8_t, 256> lengths{};
  const size_t n = leaves.size();
  if (n == 0) return lengths;
  if (n == 1) {
    lengths[leaves[0].second] = 1;
    return lengths;
  }
  DF11_CHECK(limit >= 1 && limit <= 63 && (uint64_t{1} << limit) >= n);
  std::stable_sort(leaves.begin(), leaves.end());

  auto leaf_items = [&] {
    std::vector<Item> items(n);
    for (size_t i = 0; i < n; ++i) {
      items[i].weight = leaves[i].first;
      items[i].leaf_count.assign(n, 0);
      items[i].leaf_count[i] = 1;
    }
    return items;
  };
  // Package-merge: `list` holds the cheapest items of the current level; packaging pairs of it
  // and merging with fresh leaves gives the next level. After limit-1 rounds the first 2n-2
  // items say how deep each leaf goes.
  std::vector<Item> list = leaf_items();
  for (int level = 1; level < limit; ++level) {
    std::vector<Item> packages;
    packages.reserve(list.size() / 2);
    for (size_t i = 0; i + 1 < list.size(); i += 2) {
      Item p{list[i].weight + list[i + 1].weight, list[i].leaf_count};
      for (size_t k = 0; k < n; ++k) p.leaf_count[k] += list[i + 1].leaf_count[k];
      packages.push_back(std::move(p));
    }
    std::vector<Item> fresh = leaf_items();
    std::vector<Item> merged;
    merged.reserve(fresh.size() + packages.size());
    size_t a = 0, b = 0;
    while (a < fresh.size() || b < packages.size()) {
      bool take_leaf =
          b >= packages.size() || (a < fresh.size() && fresh[a].weight <= packages[b].weight);
      merged.push_back(std::move(take_leaf ? fresh[a++] : packages[b++]));
    }
    list = std::move(merged);
  }
  std::vector<int> depth(n, 0);
  for (size_t i = 0; i < 2 * n - 2; ++i) {
    for (size_t k = 0; k < n; ++k) depth[k] += list[i].leaf_count[k];
  }
  for (size_t k = 0; k < n; ++k) lengths[leaves[k].second] = static_cast<uint8_t>(depth[k]);
  return lengths;
}

bool BuildDf11Code(const ExponentHistogram& histogram, Df11Code* code, std::string* error) {
  for (int s = kDf11FirstPointer; s < 256; ++s) {
    if (histogram[s] != 0) {
      *error = "exponent " + std::to_string(s) + " occurs " + std::to_string(histogram[s]) +
               " times; DF11 can code exponents 0..239 only (|w| >= 2^113, Inf or NaN)";
      return false;
    }
  }
  // Lower the limit until the tables fit: a limit of 8 always does (one row, <= 240 symbols).
  for (int limit = kDf11MaxCodeLength; limit >= 8; --limit) {
    Df11Code c;
    c.length = LengthLimitedCodeLengths(histogram, limit);
    c.length_limit = limit;
    for (int s = 0; s < 256; ++s) {
      if (c.length[s] != 0) {
        ++c.n_symbols;
        c.max_length = std::max<int>(c.max_length, c.length[s]);
      }
    }
    AssignCanonical(&c);
    if (Df11SubTableCount(c) <= kDf11MaxSubTables) {
      *code = c;
      return true;
    }
  }
  *error = "no code with at most 16 sub-tables exists";  // unreachable: limit 8 always fits
  return false;
}

int Df11SubTableCount(const Df11Code& code) { return static_cast<int>(PrefixRows(code).size()); }

std::vector<uint8_t> BuildDf11Luts(const Df11Code& code, int* n_rows) {
  auto rows = PrefixRows(code);
  DF11_CHECK(rows.size() <= static_cast<size_t>(kDf11MaxSubTables));
  const int n_lookup = 1 + static_cast<int>(rows.size());
  *n_rows = n_lookup + 1;
  std::vector<uint8_t> luts(static_cast<size_t>(*n_rows) * 256, 0);
  std::vector<bool> defined(static_cast<size_t>(n_lookup) * 256, false);

  auto row_of = [&](int prefix_len, uint32_t prefix) {
    return prefix_len == 0 ? 0 : rows.at({prefix_len, prefix});
  };
  for (int s = 0; s < 256; ++s) {
    const int len = code.length[s];
    if (len == 0) continue;
    const uint32_t bits = code.code[s];
    // The row that decodes this symbol, and the rows on the way to it.
    for (int p = 0; p < len; p += 8) {
      const int row = row_of(p, p == 0 ? 0 : bits >> (len - p));
      const int rem = len - p;
      uint8_t* out = &luts[static_cast<size_t>(row) * 256];
      if (rem <= 8) {
        // Every byte that begins with the remaining bits decodes to s.
        const uint32_t first = (bits & ((1u << rem) - 1)) << (8 - rem);
        for (uint32_t k = 0; k < (1u << (8 - rem)); ++k) {
          out[first + k] = static_cast<uint8_t>(s);
          defined[static_cast<size_t>(row) * 256 + first + k] = true;
        }
      } else {
        const uint32_t next_byte = (bits >> (rem - 8)) & 0xFF;
        const int child = row_of(p + 8, bits >> (rem - 8));
        out[next_byte] = static_cast<uint8_t>(256 - child);
        defined[static_cast<size_t>(row) * 256 + next_byte] = true;
      }
    }
  }
  // Entries no code reaches (only when the code is incomplete, i.e. a single symbol) repeat the
  // nearest defined entry before them, as the reference encoder's tables do.
  for (int r = 0; r < n_lookup; ++r) {
    uint8_t* out = &luts[static_cast<size_t>(r) * 256];
    int first_defined = 0;
    while (first_defined < 256 && !defined[static_cast<size_t>(r) * 256 + first_defined]) {
      ++first_defined;
    }
    if (first_defined == 256) continue;
    uint8_t last = out[first_defined];
    for (int i = 0; i < 256; ++i) {
      if (defined[static_cast<size_t>(r) * 256 + i]) {
        last = out[i];
      } else {
        out[i] = last;
      }
    }
  }
  uint8_t* lengths = &luts[static_cast<size_t>(n_lookup) * 256];
  for (int s = 0; s < 256; ++s) lengths[s] = code.length[s];
  return luts;
}

double HistogramEntropy(const ExponentHistogram& histogram) {
  double total = 0;
  for (uint64_t c : histogram) total += static_cast<double>(c);
  if (total == 0) return 0;
  double h = 0;
  for (uint64_t c : histogram) {
    if (c != 0) {
      double p = c / total;
      h -= p * std::log2(p);
    }
  }
  return h;
}

}  // namespace df11
