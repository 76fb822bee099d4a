// SPDX-License-Identifier: Apache-2.0
// `df11 shard`: a BF16 or DF11 model directory (Hugging Face layout) -> this project's sharded
// layout for tp x pp ranks: `rank-<r:05>.safetensors` per rank holding exactly that rank's slices
// (Hugging Face tensor names, local shapes; DF11 units re-encoded from the slices, never cut out
// of a stream), config.json (without dfloat11_config), tokenizer/generation files, and
// `manifest.json`, written last and atomically: a directory with a manifest is complete.
// Memory stays near one source layer: layers are processed one at a time, each rank's slices are
// encoded in parallel and written as a part file, and parts are merged per rank at the end.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/core/status.h"
#include "runtime/formats/layer_weights.h"
#include "runtime/formats/shard_manifest.h"

namespace df11 {

// Metadata key of each rank file: {unit name: [weight names in unit order]} for its DF11 units
// (the weights' local shapes are under kShapesMetadataKey, "df11_shapes").
inline constexpr char kUnitsMetadataKey[] = "df11_units";

struct ShardOptions {
  int tp = 1;                         // --tp: tensor-parallel ranks per stage
  // --codec df11|ew4: the rank files' matrices as DF11 units (one per layer) or as ew4 matrices
  // (kernels/ew4/ew4_format.h, stored as runtime/formats/ew4_tensors.h says), served as they are.
  WeightCodec codec = WeightCodec::kDf11;
  int pp = 1;                         // --pp: pipeline stages
  std::vector<int64_t> stage_layers;  // --stage-layers: layers per stage; empty: balanced
  int threads = 0;                    // --threads; 0: all hardware threads
  bool show_progress = true;
};

struct ShardSummary {
  int64_t units = 0;                   // DF11 units written, all ranks together
  int64_t ew4_matrices = 0;            // ew4 matrices written, all ranks together
  // Units (DF11: uncodable values) or matrices (ew4: kEw4MaxEscapeRate) written as plain BF16,
  // and why.
  std::vector<std::string> kept_bf16;
  std::vector<int64_t> rank_bytes;     // size of each rank's file, by rank
  int64_t total_bytes = 0;             // sum of rank_bytes
  std::string source_hash;             // manifest "source.hash"
  double elapsed_s = 0;
};

// Per rank r (stage r / tp, tp rank r % tp) the file holds:
//  - per layer i of its stage: DF11 unit "model.layers.<i>" of q, k, v, o, gate, up, down (q/k/v
//    and gate/up cut by rows, o and down by columns; k/v the rank's kv heads, replicated when
//    kv_heads < tp); BF16 input_layernorm, post_attention_layernorm, q_norm/k_norm and o_proj
//    bias (replicated: the runtime adds o's bias on tp rank 0 only), q/k/v biases (cut by rows);
//  - first stage: DF11 unit "model.embed_tokens" (the rank's vocabulary rows);
//  - last stage: DF11 unit "lm_head" (vocabulary rows of lm_head, or of the embedding when tied)
//    and BF16 model.norm.weight.
// A unit holding a value DF11 cannot code (exponent >= 240) is written as BF16 weights instead,
// with a warning. With codec ew4, each matrix is an ew4 weight instead of the layer's DF11 unit
// (manifest "codec": "ew4"), or BF16 with a warning when its escape rate exceeds
// kEw4MaxEscapeRate. Tensors are ordered by alignment (I64, uint32 positions, BF16, bytes) so every
// typed view into the mapping is naturally aligned.
// Source hash (manifest "source.hash", hex): XXH64 over config.json's bytes, then for each source
// tensor in Checkpoint::tensor_names() order: name, '\0', dtype name, '\0', each dimension as int64
// little-endian, and XXH64 of its data bytes (each tensor is hashed as it is read for slicing, so
// the hash adds no extra pass over the source). For a DF11 source that is its stored tensors.
// Errors: NotFound for a missing source; InvalidArgument for a layout that does not fit the model
// (naming the sizes), a source that is already sharded or not BF16; FailedPrecondition for a
// non-empty out_dir; IoError from writes. out_dir is written all or nothing (StagedDir): on
// failure no out_dir is left.
StatusOr<ShardSummary> ShardModel(const std::string& src_dir, const std::string& out_dir,
                                  const ShardOptions& options);

}  // namespace df11
