// SPDX-License-Identifier: Apache-2.0
#include "runtime/convert/inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "kernels/common/parallel_for.h"
#include "kernels/dfloat11/df11_code.h"
#include "kernels/ew4/ew4_encode.h"
#include "runtime/convert/unit_weights.h"

namespace df11 {
namespace {

struct Totals {
  int64_t elements = 0, code = 0, sm = 0, gaps = 0, pos = 0, tables = 0, ew4 = 0, escapes = 0;
  double entropy_weighted = 0;  // sum of entropy * elements
  void Add(const UnitInspection& u) {
    elements += u.elements;
    code += u.code_bytes;
    sm += u.sign_mantissa_bytes;
    gaps += u.gap_bytes;
    pos += u.position_bytes;
    tables += u.table_bytes;
    ew4 += u.ew4_bytes;
    escapes += u.ew4_escapes;
    entropy_weighted += u.entropy * static_cast<double>(u.elements);
  }
};

double Bits(int64_t bytes, int64_t elements) {
  return elements > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(elements) : 0;
}

nlohmann::ordered_json SplitJson(int64_t elements, int64_t code, int64_t sm, int64_t gaps,
                                 int64_t pos, int64_t tables, double entropy) {
  const int64_t stored = code + sm + gaps + pos + tables;
  nlohmann::ordered_json j;
  j["elements"] = elements;
  j["stored_bytes"] = stored;
  j["bf16_bytes"] = 2 * elements;
  j["ratio_to_bf16"] = elements > 0 ? static_cast<double>(stored) / (2.0 * elements) : 0;
  j["bits_per_weight"] = {{"total", Bits(stored, elements)},
                          {"exponent_codes", Bits(code, elements)},
                          {"sign_mantissa", Bits(sm, elements)},
                          {"gaps", Bits(gaps, elements)},
                          {"output_positions", Bits(pos, elements)},
                          {"tables", Bits(tables, elements)}};
  j["exponent_entropy"] = entropy;
  j["field_split_floor"] = 8.0 + entropy;
  return j;
}

nlohmann::ordered_json Ew4Json(int64_t elements, int64_t bytes, int64_t escapes) {
  const double n = static_cast<double>(std::max<int64_t>(elements, 1));
  return {{"bits_per_weight", Bits(bytes, elements)},
          {"window_coverage", 1.0 - static_cast<double>(escapes) / n},
          {"escape_rate", static_cast<double>(escapes) / n}};
}

// The unit's matrices as ew4, each with its own window: (rows, cols) from the unit's shapes,
// or the whole unit as one row when they are unknown.
void AddEw4Sizes(const Df11Model& model, const Df11Unit& unit, const std::vector<uint16_t>& words,
                 UnitInspection* u) {
  std::vector<UnitWeight> parts;
  if (auto resolved = ResolveUnitWeights(model, unit); resolved.ok()) {
    parts = std::move(resolved).value();
  } else {
    parts.push_back({unit.name, {1, unit.n_elements()}, 0, unit.n_elements()});
  }
  for (const UnitWeight& w : parts) {
    const int64_t n = w.end - w.begin;
    const int64_t cols = w.shape.size() == 2 ? w.shape[1] : n;
    ExponentHistogram h{};
    for (int64_t i = w.begin; i < w.end; ++i) ++h[(words[i] >> 7) & 0xFF];
    const int64_t escapes = static_cast<int64_t>(Ew4EscapesOf(h, Ew4ChooseWindow(h)));
    u->ew4_bytes += Ew4StoredBytes(cols > 0 ? n / cols : 0, cols, escapes);
    u->ew4_escapes += escapes;
  }
}

}  // namespace

StatusOr<ModelInspection> InspectModel(const std::string& dir, int threads) {
  DF11_ASSIGN_OR_RETURN(Df11Model model, OpenDf11Model(dir));
  threads = threads > 0 ? threads : DefaultThreadCount();
  ModelInspection out;
  std::vector<uint16_t> words;
  for (const std::string& name : model.units) {
    DF11_ASSIGN_OR_RETURN(Df11Unit unit, LoadDf11Unit(model.checkpoint, name));
    words.resize(unit.n_elements());
    DF11_RETURN_IF_ERROR(DecodeDf11Unit(unit, 0, unit.n_elements(), threads, words.data()));
    ExponentHistogram histogram{};
    for (uint16_t w : words) ++histogram[(w >> 7) & 0xFF];
    UnitInspection u;
    u.name = name;
    u.elements = unit.n_elements();
    u.code_bytes = unit.view.n_bytes;
    u.sign_mantissa_bytes = unit.view.n_elements;
    u.gap_bytes = unit.view.n_gap_bytes;
    u.position_bytes = 4 * unit.view.n_output_positions;
    u.table_bytes = static_cast<int64_t>(unit.view.n_luts) * 256;
    u.n_tables = unit.view.n_luts - 1;
    u.entropy = HistogramEntropy(histogram);
    const uint8_t* lengths = unit.view.luts + static_cast<int64_t>(unit.view.n_luts - 1) * 256;
    for (int s = 0; s < 256; ++s) u.code_length_histogram[lengths[s]] += histogram[s];
    AddEw4Sizes(model, unit, words, &u);
    out.units.push_back(u);
  }
  for (const std::string& name : model.checkpoint.tensor_names()) {
    if (IsUnitField(model, name)) continue;
    out.other_bytes += static_cast<int64_t>(model.checkpoint.Find(name)->bytes.size());
    ++out.other_tensors;
  }
  return out;
}

nlohmann::ordered_json InspectionToJson(const ModelInspection& m) {
  nlohmann::ordered_json units = nlohmann::ordered_json::array();
  Totals t;
  for (const UnitInspection& u : m.units) {
    nlohmann::ordered_json j = SplitJson(u.elements, u.code_bytes, u.sign_mantissa_bytes,
                                         u.gap_bytes, u.position_bytes, u.table_bytes, u.entropy);
    nlohmann::ordered_json named = {{"name", u.name}};
    named.update(j);
    j = std::move(named);
    j["lookup_tables"] = u.n_tables;
    nlohmann::ordered_json hist = nlohmann::ordered_json::object();
    for (int l = 1; l <= 32; ++l) {
      if (u.code_length_histogram[l] > 0) hist[std::to_string(l)] = u.code_length_histogram[l];
    }
    j["code_length_histogram"] = hist;
    j["ew4"] = Ew4Json(u.elements, u.ew4_bytes, u.ew4_escapes);
    units.push_back(j);
    t.Add(u);
  }
  nlohmann::ordered_json total = SplitJson(t.elements, t.code, t.sm, t.gaps, t.pos, t.tables,
                                           t.elements ? t.entropy_weighted / t.elements : 0);
  total["ew4"] = Ew4Json(t.elements, t.ew4, t.escapes);
  total["units"] = m.units.size();
  total["other_tensors"] = m.other_tensors;
  total["other_bytes"] = m.other_bytes;
  return {{"units", units}, {"total", total}};
}

std::string FormatInspection(const ModelInspection& m) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line), "%-28s %12s %7s %7s %6s %6s %6s %7s %7s %7s | %7s %8s %8s\n",
                "unit", "elements", "bits/w", "exp", "gaps", "pos", "tables", "entropy", "floor",
                "ratio", "ew4 b/w", "coverage", "escapes");
  out += line;
  Totals t;
  auto row = [&](const std::string& name, int64_t n, int64_t code, int64_t sm, int64_t gaps,
                 int64_t pos, int64_t tables, double entropy, int64_t ew4, int64_t escapes) {
    const int64_t stored = code + sm + gaps + pos + tables;
    const double rate = n > 0 ? static_cast<double>(escapes) / static_cast<double>(n) : 0.0;
    std::snprintf(line, sizeof(line),
                  "%-28s %12lld %7.3f %7.3f %6.3f %6.3f %6.3f %7.3f %7.3f %6.2f%% | %7.3f %7.3f%% "
                  "%7.4f%%\n",
                  name.c_str(), static_cast<long long>(n), Bits(stored, n), Bits(code, n),
                  Bits(gaps, n), Bits(pos, n), Bits(tables, n), entropy, 8.0 + entropy,
                  n > 0 ? 100.0 * stored / (2.0 * n) : 0.0, Bits(ew4, n), 100.0 * (1.0 - rate),
                  100.0 * rate);
    out += line;
  };
  for (const UnitInspection& u : m.units) {
    row(u.name, u.elements, u.code_bytes, u.sign_mantissa_bytes, u.gap_bytes, u.position_bytes,
        u.table_bytes, u.entropy, u.ew4_bytes, u.ew4_escapes);
    t.Add(u);
  }
  row("TOTAL (" + std::to_string(m.units.size()) + " units)", t.elements, t.code, t.sm, t.gaps,
      t.pos, t.tables, t.elements ? t.entropy_weighted / t.elements : 0, t.ew4, t.escapes);
  std::snprintf(line, sizeof(line), "other tensors: %lld (%.3f MB, stored as they are)\n",
                static_cast<long long>(m.other_tensors), m.other_bytes / 1e6);
  out += line;
  // Code lengths over all units.
  std::array<int64_t, 33> hist{};
  for (const UnitInspection& u : m.units) {
    for (int l = 0; l <= 32; ++l) hist[l] += u.code_length_histogram[l];
  }
  out += "code lengths (bits: share of weights):";
  for (int l = 1; l <= 32; ++l) {
    if (hist[l] == 0) continue;
    std::snprintf(line, sizeof(line), " %d:%.2f%%", l, t.elements ? 100.0 * hist[l] / t.elements : 0.0);
    out += line;
  }
  return out + "\n";
}

}  // namespace df11
