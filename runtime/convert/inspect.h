// SPDX-License-Identifier: Apache-2.0
// `df11 inspect`: where a DF11 model's bits go, per unit and in total — exponent codes,
// sign+mantissa, gaps, output positions, tables — against the exponent entropy and the
// field-split floor (8 + entropy bits/weight), with each unit's code-length histogram; and
// beside it what the unit's matrices take as ew4 (bits/weight, the share of weights the
// 15-exponent windows cover, the escape rate), each matrix with its own window.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/status.h"

namespace df11 {

struct UnitInspection {
  std::string name;
  int64_t elements = 0;
  int64_t code_bytes = 0, sign_mantissa_bytes = 0, gap_bytes = 0, position_bytes = 0,
          table_bytes = 0;
  int n_tables = 0;  // lookup rows including row 0
  double entropy = 0;  // exponent entropy, bits per weight
  std::array<int64_t, 33> code_length_histogram{};  // elements per code length
  int64_t ew4_bytes = 0;    // the unit's matrices as ew4 (Ew4StoredBytes)
  int64_t ew4_escapes = 0;  // their weights outside their windows
  int64_t stored_bytes() const {
    return code_bytes + sign_mantissa_bytes + gap_bytes + position_bytes + table_bytes;
  }
};

struct ModelInspection {
  std::vector<UnitInspection> units;
  int64_t other_bytes = 0;      // tensors stored as they are (norms, remainder)
  int64_t other_tensors = 0;
};

StatusOr<ModelInspection> InspectModel(const std::string& dir, int threads);

// A human-readable table, and the same as JSON.
std::string FormatInspection(const ModelInspection& inspection);
nlohmann::ordered_json InspectionToJson(const ModelInspection& inspection);

}  // namespace df11
