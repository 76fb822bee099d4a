// SPDX-License-Identifier: Apache-2.0
// Typed weights of a decoder-only transformer (Llama, Qwen2, Qwen3, Mistral), loaded from a BF16
// checkpoint or a DF11 directory by the tensor table (model_tensors.h); the weight handles and a
// layer's fields are layer_weights.h's. BF16 matrices are views into the memory-mapped files;
// DF11 matrices stay compressed and name an element range of their unit, decoded right before
// use; ew4 matrices (a shard written with --codec ew4) are views of their fields. Another codec
// at load: weight_transcode.h. Small tensors (norms, biases) are copied. Shapes are the local ones (a tensor-parallel
// shard holds slices). Immutable after loading; shareable across threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_unit.h"
#include "kernels/ew4/ew4_encode.h"
#include "runtime/formats/layer_weights.h"
#include "runtime/formats/model_config.h"
#include "runtime/formats/model_tensors.h"

namespace df11 {

// Local sizes of this rank's slice; equal to the config's on a single rank.
struct LocalDims {
  int64_t heads = 0;         // query heads held
  int64_t kv_heads = 0;      // key/value heads held
  int64_t intermediate = 0;  // MLP rows held
  int64_t vocab_begin = 0;   // first vocabulary row of the embedding / LM head slice
  int64_t vocab_rows = 0;    // rows held
};

struct ModelWeights {
  ModelConfig config;
  LocalDims dims;
  Weight embed;    // (vocab_rows, hidden)
  Weight lm_head;  // (vocab_rows, hidden); the embedding when tied
  Vector final_norm;                 // (hidden)
  std::vector<LayerWeights> layers;  // (num_hidden_layers), or a pipeline stage's range
  int64_t first_layer = 0;           // global index of layers[0]
  int32_t matrix_count = 0;          // Weight ids are in [0, matrix_count)
  int32_t vector_count = 0;          // Vector ids are in [0, vector_count)

  // Owners of the memory the views point into.
  std::vector<Checkpoint> checkpoints;
  std::vector<std::unique_ptr<Df11Unit>> units;
  std::vector<std::vector<uint16_t>> realigned;  // BF16 tensors copied for alignment or decoded
  std::vector<std::vector<uint32_t>> realigned32;  // ew4 fields copied for alignment
  std::vector<std::unique_ptr<Ew4Encoded>> ew4;      // ew4 matrices encoded at load
  std::vector<std::unique_ptr<Df11EncodedUnit>> df11_encoded;  // DF11 units encoded at load

  // Bytes of weights held: DF11 units' stored bytes + ew4 and plain BF16 matrices (a tied LM
  // head once) + small tensors.
  int64_t WeightBytes() const;
  // DF11 units' stored bytes.
  int64_t CompressedBytes() const;
  // The codecs of the matrices: "bf16", "df11", "ew4", or e.g. "ew4+df11" when mixed (the most
  // used first).
  std::string CodecSummary() const;
  // Every matrix: embedding, LM head, then each layer's (LayerWeights::Matrices order).
  std::vector<const Weight*> AllMatrices() const;
  std::vector<Weight*> AllMatrices();
  // The largest number of elements one layer needs decoded (scratch size).
  int64_t MaxLayerScratch() const;
  // Gives every matrix and vector its id (embedding, LM head, final norm, then the layers in
  // order) and frees the DF11 units no matrix refers to; the loaders (and the transcoder) call
  // it last.
  void Finish();
};

// Loads the weights of the model directory `dir` (BF16 or DF11, Hugging Face layout).
StatusOr<ModelWeights> LoadModelWeights(const std::string& dir);

// Resolves one weight of a loaded checkpoint set: a DF11 unit slice if some unit holds `name`,
// else the BF16 tensor. InvalidArgument when the shape differs from the one the config implies.
class WeightResolver {
 public:
  // Indexes the units of every checkpoint in `weights` (their patterns come from `patterns`).
  static StatusOr<WeightResolver> Create(ModelWeights* weights,
                                         const nlohmann::ordered_json& dfloat11_config);
  // A DF11 unit slice, an ew4 weight (LoadEw4Weight) or a BF16 tensor named `name`.
  StatusOr<Weight> Matrix(const std::string& name, int64_t rows, int64_t cols);
  // A small BF16 tensor copied out (norms, biases).
  StatusOr<Vector> Small(const std::string& name, int64_t numel);
  // Every row of the layer table present in `c`, for layer `layer` (global index) of `part`,
  // into its LayerWeights field.
  StatusOr<LayerWeights> Layer(const ModelConfig& c, const ModelPart& part, int64_t layer);
  // `part` of the model into the weights (their config, dims and first_layer set): the
  // embedding, the layers, the final norm and the LM head (the embedding when tied and held),
  // then ModelWeights::Finish.
  Status Resolve(const ModelPart& part);

 private:
  struct Slice {
    const Df11Unit* unit;
    int64_t begin, end;
  };
  ModelWeights* weights_ = nullptr;
  std::unordered_map<std::string, Slice> in_units_;
};

}  // namespace df11
