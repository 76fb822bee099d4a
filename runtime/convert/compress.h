// SPDX-License-Identifier: Apache-2.0
// `df11 compress`: a BF16 Hugging Face model directory -> a DF11 directory in the published
// layout (one safetensors file per unit named like the reference's, a remainder model.safetensors,
// config.json with dfloat11_config, tokenizer and generation files copied). A tied model
// (tie_word_embeddings) also gets an "lm_head" unit coded from the embedding, as the reference
// encoder writes it: the reference loader fills the LM head only from such a unit. Units are
// encoded with all threads, two at a time; memory stays near two units because sources are
// memory-mapped. The output directory is written all or nothing (StagedDir).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/status.h"

namespace df11 {

struct CompressOptions {
  int threads = 0;                // 0: all hardware threads
  std::string pattern_dict_json;  // overrides the architecture's default pattern_dict when set
  bool show_progress = true;
};

struct CompressSummary {
  int64_t units = 0;
  int64_t unit_elements = 0;          // BF16 weights coded
  int64_t unit_stored_bytes = 0;      // their DF11 bytes
  int64_t total_input_bytes = 0;      // all tensors of the source
  int64_t total_output_bytes = 0;     // all tensors written
  std::vector<std::string> kept_bf16;  // units left in BF16 (uncodable values), with the reason
};

StatusOr<CompressSummary> CompressModel(const std::string& src_dir, const std::string& out_dir,
                                        const CompressOptions& options);

}  // namespace df11
