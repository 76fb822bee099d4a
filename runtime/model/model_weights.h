// SPDX-License-Identifier: Apache-2.0
// Typed weights of a decoder-only transformer (Llama, Qwen2, Qwen3, Mistral), loaded from a BF16
// checkpoint or a DF11 directory. BF16 matrices are views into the memory-mapped files; DF11
// matrices stay compressed and name an element range of their unit, decoded right before use.
// Small tensors (norms, biases) are copied. Shapes are the local ones (a tensor-parallel shard
// holds slices). Immutable after loading; shareable across threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_unit.h"
#include "runtime/formats/model_config.h"

namespace df11 {

// A weight matrix (rows, cols), BF16 row-major, either stored plainly or inside a DF11 unit.
struct MatrixRef {
  int64_t rows = 0;
  int64_t cols = 0;
  const uint16_t* bf16 = nullptr;  // plain BF16 data, or null
  const Df11Unit* unit = nullptr;  // else the unit holding elements [begin, begin + rows * cols)
  int64_t begin = 0;

  int64_t numel() const { return rows * cols; }
  bool compressed() const { return unit != nullptr; }
};

struct LayerWeights {
  MatrixRef q, k, v, o;     // q: (heads * head_dim, hidden); k, v: (kv_heads * head_dim, hidden)
  MatrixRef gate, up, down;  // gate, up: (intermediate, hidden); down: (hidden, intermediate)
  std::vector<uint16_t> input_norm;           // (hidden)
  std::vector<uint16_t> post_attention_norm;  // (hidden)
  std::vector<uint16_t> q_bias, k_bias, v_bias, o_bias;  // empty when absent
  std::vector<uint16_t> q_norm, k_norm;                  // (head_dim), Qwen3; empty otherwise

  // Elements that must be decoded before this layer runs (0 when all BF16).
  int64_t CompressedElements() const;
};

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
  MatrixRef embed;    // (vocab_rows, hidden)
  MatrixRef lm_head;  // (vocab_rows, hidden); the embedding when tied
  std::vector<uint16_t> final_norm;  // (hidden)
  std::vector<LayerWeights> layers;  // (num_hidden_layers), or a pipeline stage's range
  int64_t first_layer = 0;           // global index of layers[0]

  // Owners of the memory the views point into.
  std::vector<Checkpoint> checkpoints;
  std::vector<std::unique_ptr<Df11Unit>> units;
  std::vector<std::vector<uint16_t>> realigned;  // BF16 tensors copied for alignment

  // Bytes of weights held: DF11 units' stored bytes + plain BF16 matrices + small tensors.
  int64_t WeightBytes() const;
  int64_t CompressedBytes() const;
  // The largest number of elements one layer needs decoded (scratch size).
  int64_t MaxLayerScratch() const;
};

// Loads the weights of the model directory `dir` (BF16 or DF11, Hugging Face layout).
StatusOr<ModelWeights> LoadModelWeights(const std::string& dir);

// Resolves one weight of a loaded checkpoint set: a DF11 unit slice if some unit holds `name`,
// else the BF16 tensor. InvalidArgument when the shape differs from `shape`.
class WeightResolver {
 public:
  // Indexes the units of every checkpoint in `weights` (their patterns come from `patterns`).
  static StatusOr<WeightResolver> Create(ModelWeights* weights,
                                         const nlohmann::ordered_json& dfloat11_config);
  StatusOr<MatrixRef> Matrix(const std::string& name, int64_t rows, int64_t cols);
  // A small BF16 tensor copied out (norms, biases); `required` false returns empty if absent.
  StatusOr<std::vector<uint16_t>> Small(const std::string& name, int64_t numel, bool required);
  bool Has(const std::string& name) const;

 private:
  struct Slice {
    const Df11Unit* unit;
    int64_t begin, end;
  };
  ModelWeights* weights_ = nullptr;
  std::unordered_map<std::string, Slice> in_units_;
};

}  // namespace df11
