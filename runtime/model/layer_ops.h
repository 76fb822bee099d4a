// SPDX-License-Identifier: Apache-2.0
// LayerOps: the operations the forward pass is written in (forward.h), one implementation per
// backend (CpuBackend on the host, CudaBackend on a GPU). Every float* names memory of the
// backend (host or device) holding FP32 activations, row-major; weights are handles (Weight,
// Vector) that each backend maps to its own copy by id. A step's token count, positions and
// KV caches are the backend's state for the step being run, so positional ops (RoPE, attention)
// take only the data. Adding an op: declare it here, implement it in both backends (each on a
// kernel of kernels/<op>/ with its CPU reference), call it from forward.cc.
#pragma once

#include <cstdint>

#include "kernels/activation/activation.h"
#include "kernels/attention/attention.h"
#include "runtime/core/status.h"
#include "runtime/model/model_weights.h"

namespace df11 {

// One step's activation buffers in the backend's memory; T = the step's tokens.
struct StepActivations {
  float* x = nullptr;     // (T, hidden) the residual stream
  float* xn = nullptr;    // (T, hidden) a normed copy of x
  float* q = nullptr;     // (T, heads * head_dim)
  float* k = nullptr;     // (T, kv_heads * head_dim)
  float* v = nullptr;     // (T, kv_heads * head_dim)
  float* attn = nullptr;  // (T, heads * head_dim)
  float* proj = nullptr;  // (T, hidden) an o_proj / down_proj output
  float* gate = nullptr;  // (T, intermediate)
  float* up = nullptr;    // (T, intermediate)
};

class LayerOps {
 public:
  virtual ~LayerOps() = default;

  // Makes layer `layer`'s weights (local index) ready for Linear: a compressed matrix is decoded
  // (or the decode started earlier is waited for), and the next layer's may start. Errors: a
  // corrupt DF11 stream found on the host (a device backend reports its own after the step).
  virtual Status BeginLayer(size_t layer) = 0;
  // Layer `layer` has run: what BeginLayer prepared for it may be reused.
  virtual void EndLayer(size_t layer) = 0;

  // out (rows, cols) = x / sqrt(mean(x^2) + eps) * (weight_offset + w), row by row (offset 0,
  // or Gemma's 1); out may be x.
  virtual void RmsNorm(const float* x, const Vector& w, float weight_offset, float eps,
                       int64_t rows, int64_t cols, float* out) = 0;
  // y (tokens, w.rows) = x (tokens, w.cols) · wᵀ (+ bias (w.rows) when not null and not empty),
  // whatever w's codec.
  virtual void Linear(const float* x, int64_t tokens, const Weight& w, const Vector* bias,
                      float* y) = 0;
  // x (T, heads, head_dim) rotated by each token's position, with the model's global RoPE
  // parameters or (local: Gemma 3's sliding-window layers) its local ones.
  virtual void Rope(float* x, int64_t heads, bool local) = 0;
  // out (T, heads, head_dim) = causal attention of q over each token's sequence: the positions
  // in layer `layer`'s KV caches and this step's k and v (T, kv_heads * head_dim), the last
  // params.window positions only when that is > 0, scores scaled and soft-capped as `params`
  // says (attention.h); then k and v are appended to the caches at the tokens' positions.
  virtual void Attention(size_t layer, const float* q, const float* k, const float* v,
                         const AttentionParams& params, float* out) = 0;
  // gate (n) = act(gate) * up (the gated MLP).
  virtual void GatedActivation(GateActivation act, float* gate, const float* up, int64_t n) = 0;
  // x (n) += y (the residual connection).
  virtual void Add(float* x, const float* y, int64_t n) = 0;
  // x (n) = cap * tanh(x / cap) (Gemma's final_logit_softcapping).
  virtual void Softcap(float* x, int64_t n, float cap) = 0;
  // Sums x (n) across the tensor-parallel group; nothing on a single rank.
  virtual void AllReduce(float* x, int64_t n) = 0;
  // logits (rows, head.rows) = x (rows, head.cols) · headᵀ (the LM head; a backend may cut it
  // into chunks of rows to bound its scratch). Errors: as BeginLayer's.
  virtual Status LmHead(const float* x, int64_t rows, const Weight& head, float* logits) = 0;
};

}  // namespace df11
