// SPDX-License-Identifier: Apache-2.0
// `df11 decompress`: a DF11 model directory -> the BF16 checkpoint it was made from. Each input
// file becomes one output file of the same name with its units decoded into their weights;
// model.safetensors.index.json maps every tensor, config.json loses dfloat11_config. A tied
// model's stored lm_head (a copy of the embedding) is left out: its original has none. The input
// is checked to be complete before anything is written; the output is written all or nothing.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/status.h"

namespace df11 {

struct DecompressSummary {
  int64_t units = 0;
  int64_t tensors = 0;
  int64_t output_bytes = 0;
};

StatusOr<DecompressSummary> DecompressModel(const std::string& df11_dir,
                                            const std::string& out_dir, int threads,
                                            bool show_progress);

}  // namespace df11
