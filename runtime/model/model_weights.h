// SPDX-License-Identifier: Apache-2.0
// Typed weights of a decoder-only transformer (Llama, Qwen2, Qwen3, Mistral), loaded from a BF16
// checkpoint or a DF11 directory. BF16 matrices are views into the memory-mapped files; DF11
// matrices stay compressed and name an element range of their unit, decoded right before use.
// Small tensors (norms, biases) are copied. Shapes are the local ones (a tensor-parallel shard
// holds slices). Immutable after loading; shareable across threads.
#pragma once

#include <array>
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

// How a weight matrix is stored. Every codec is lossless: the BF16 values it holds are the
// original's, bit for bit. A backend's Linear dispatches on it (see layer_ops.h).
enum class WeightCodec {
  kBf16,  // plain BF16, row-major, mapped from the files
  kDf11,  // an element range of a DF11 unit (Huffman-coded exponents), decoded before its GEMM
};

// A weight matrix (rows, cols) = (out_features, in_features) as torch.nn.Linear stores it,
// whatever its codec: the handle the forward pass multiplies by (LayerOps::Linear). `id` numbers
// the model's matrices so that a backend can key its own copy (a device upload, a decode
// placement) by it.
struct Weight {
  int64_t rows = 0;
  int64_t cols = 0;
  WeightCodec codec = WeightCodec::kBf16;
  const uint16_t* bf16 = nullptr;  // kBf16: (rows, cols)
  const Df11Unit* unit = nullptr;  // kDf11: elements [begin, begin + rows * cols) of this unit
  int64_t begin = 0;
  int32_t id = -1;                 // index among ModelWeights' matrices (NumberWeights)

  int64_t numel() const { return rows * cols; }
  bool compressed() const { return codec != WeightCodec::kBf16; }
  // Decoded whole into a layer's BF16 scratch before its GEMMs (DF11); a codec with a fused
  // matmul would not be, and takes no scratch.
  bool decoded_to_scratch() const { return codec == WeightCodec::kDf11; }
};

// A small BF16 vector of the model (a norm's weight or a bias), copied out of the files; empty
// when the model has none. `id` numbers the model's vectors like Weight::id.
struct Vector {
  std::vector<uint16_t> values;
  int32_t id = -1;

  bool empty() const { return values.empty(); }
  const uint16_t* data() const { return values.data(); }
  int64_t size() const { return static_cast<int64_t>(values.size()); }
};

struct LayerWeights {
  Weight q, k, v, o;     // q: (heads * head_dim, hidden); k, v: (kv_heads * head_dim, hidden)
  Weight gate, up, down;  // gate, up: (intermediate, hidden); down: (hidden, intermediate)
  Vector input_norm;           // (hidden)
  Vector post_attention_norm;  // (hidden)
  Vector q_bias, k_bias, v_bias, o_bias;  // (rows of their matrix); empty when absent
  Vector q_norm, k_norm;                  // (head_dim), Qwen3; empty otherwise

  // The layer's matrices and vectors, in this fixed order: the one list of them that code
  // walking a layer's weights uses.
  std::array<const Weight*, 7> Matrices() const { return {&q, &k, &v, &o, &gate, &up, &down}; }
  std::array<Weight*, 7> Matrices() { return {&q, &k, &v, &o, &gate, &up, &down}; }
  std::array<const Vector*, 8> Vectors() const {
    return {&input_norm, &post_attention_norm, &q_bias, &k_bias, &v_bias, &o_bias, &q_norm, &k_norm};
  }
  std::array<Vector*, 8> Vectors() {
    return {&input_norm, &post_attention_norm, &q_bias, &k_bias, &v_bias, &o_bias, &q_norm, &k_norm};
  }

  // Elements decoded into scratch before this layer runs (0 when none is decoded_to_scratch).
  int64_t ScratchElements() const;
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
  std::vector<std::vector<uint16_t>> realigned;  // BF16 tensors copied for alignment

  // Bytes of weights held: DF11 units' stored bytes + plain BF16 matrices + small tensors.
  int64_t WeightBytes() const;
  int64_t CompressedBytes() const;
  // The largest number of elements one layer needs decoded (scratch size).
  int64_t MaxLayerScratch() const;
  // Gives every matrix and vector its id (embedding, LM head, final norm, then the layers in
  // order) and frees the DF11 units no matrix refers to; the loaders call it last.
  void Finish();
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
  StatusOr<Weight> Matrix(const std::string& name, int64_t rows, int64_t cols);
  // A small BF16 tensor copied out (norms, biases); `required` false returns empty if absent.
  StatusOr<Vector> Small(const std::string& name, int64_t numel, bool required);
  bool Has(const std::string& name) const;
  // Layer `layer` (global index) of `c` with this rank's local sizes `d`.
  StatusOr<LayerWeights> Layer(const ModelConfig& c, const LocalDims& d, int64_t layer);

 private:
  struct Slice {
    const Df11Unit* unit;
    int64_t begin, end;
  };
  ModelWeights* weights_ = nullptr;
  std::unordered_map<std::string, Slice> in_units_;
};

}  // namespace df11
