// SPDX-License-Identifier: Apache-2.0
// `df11 verify`: decodes every unit of a DF11 model and compares every tensor bit for bit with
// the BF16 original. The report names the first mismatching tensor and element.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/status.h"

namespace df11 {

struct VerifyReport {
  bool identical = false;
  std::string first_mismatch;  // empty when identical
  int64_t units = 0;
  int64_t tensors = 0;
  int64_t elements = 0;  // BF16 elements compared inside units
};

// A non-OK Status means a model could not be read (missing file, corrupt unit); a readable pair
// that differs gives an OK status with identical == false.
StatusOr<VerifyReport> VerifyModel(const std::string& df11_dir, const std::string& bf16_dir,
                                   int threads, bool show_progress);

}  // namespace df11
