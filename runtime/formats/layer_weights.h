// SPDX-License-Identifier: Apache-2.0
// Weight handles and a transformer layer's typed weights: the fields the tensor table
// (model_tensors.h) binds a layer's tensors to. BF16 matrices are views into memory-mapped files
// (or into BF16 the loader decoded); DF11 matrices name an element range of their unit, decoded
// right before use; ew4 matrices are views of ew4 fields (transcoded at load or mapped from a
// shard), read by the fused kernels; small tensors (norms, biases) are copied. Shapes are the local ones (a tensor-parallel shard holds slices).
// The loaders are in runtime/model/model_weights.h.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "kernels/ew4/ew4_format.h"
#include "runtime/formats/df11_unit.h"

namespace df11 {

// How a weight matrix is stored. Every codec is lossless: the BF16 values it holds are the
// original's, bit for bit. A backend's Linear dispatches on it (see runtime/model/layer_ops.h).
enum class WeightCodec {
  kBf16,  // plain BF16, row-major, mapped from the files
  kDf11,  // an element range of a DF11 unit (Huffman-coded exponents), decoded before its GEMM
  kEw4,   // 4-bit exponent codes + sign|mantissa bytes + escapes (kernels/ew4/ew4_format.h):
          // multiplied by the fused decode-GEMV up to kEw4GemvMaxBatch tokens, else decoded to
          // scratch right before its GEMM
};

// "bf16", "df11", "ew4".
const char* WeightCodecName(WeightCodec codec);

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
  Ew4View ew4;                     // kEw4: (rows, cols), validated
  int32_t id = -1;                 // index among ModelWeights' matrices (NumberWeights)

  int64_t numel() const { return rows * cols; }
  bool compressed() const { return codec != WeightCodec::kBf16; }
  // Decoded whole into a layer's BF16 scratch before its GEMMs (DF11); ew4, multiplied by fused
  // kernels (or decoded per GEMM for larger batches), takes no layer scratch.
  bool decoded_to_scratch() const { return codec == WeightCodec::kDf11; }
  // Stored bytes of the matrix's own fields (BF16: 2 per weight; DF11: its unit's bytes are
  // counted once per unit by ModelWeights instead, so 0 here).
  int64_t own_bytes() const;
  // Whether two handles refer to the same stored weights (a tied LM head and its embedding).
  bool SameStorage(const Weight& other) const;
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
  Vector input_norm;  // (hidden) before attention
  Vector mlp_norm;    // (hidden) before the MLP (Llama's post_attention_layernorm)
  Vector q_bias, k_bias, v_bias, o_bias;  // (rows of their matrix); empty when absent
  Vector q_norm, k_norm;                  // (head_dim), Qwen3 and Gemma 3; empty otherwise
  // Gemma 3's norms of the block outputs, before each residual add (its post_attention_layernorm
  // and post_feedforward_layernorm); empty otherwise.
  Vector attention_out_norm, mlp_out_norm;  // (hidden)

  // The layer's matrices and vectors, in this fixed order: the one list of them that code
  // walking a layer's weights uses. kMatrixNames names the matrices in that order.
  static constexpr std::array<const char*, 7> kMatrixNames = {"q_proj", "k_proj", "v_proj",
                                                              "o_proj", "gate_proj", "up_proj",
                                                              "down_proj"};
  std::array<const Weight*, 7> Matrices() const { return MatricesOf<const Weight>(*this); }
  std::array<Weight*, 7> Matrices() { return MatricesOf<Weight>(*this); }
  std::array<const Vector*, 10> Vectors() const { return VectorsOf<const Vector>(*this); }
  std::array<Vector*, 10> Vectors() { return VectorsOf<Vector>(*this); }

  // Elements decoded into scratch before this layer runs (0 when none is decoded_to_scratch).
  int64_t ScratchElements() const {
    int64_t n = 0;
    for (const Weight* m : Matrices()) n += m->decoded_to_scratch() ? m->numel() : 0;
    return n;
  }

 private:
  // `L` is LayerWeights or const LayerWeights.
  template <typename W, typename L>
  static std::array<W*, 7> MatricesOf(L& l) {
    return {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down};
  }
  template <typename V, typename L>
  static std::array<V*, 10> VectorsOf(L& l) {
    return {&l.input_norm, &l.mlp_norm, &l.q_bias, &l.k_bias, &l.v_bias,
            &l.o_bias,     &l.q_norm,   &l.k_norm, &l.attention_out_norm, &l.mlp_out_norm};
  }
};

}  // namespace df11
