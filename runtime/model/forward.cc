// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/forward.h"

namespace df11 {
namespace {

// One decoder layer on a.x (T, hidden), transformers' LlamaDecoderLayer order:
//   x += o_proj(attention(rope(q_norm(q_proj(norm(x)))), rope(k_norm(k_proj(·))), v_proj(·)))
//   x += down_proj(act(gate_proj(norm(x))) * up_proj(norm(x)))
void RunLayer(const LayerContext& ctx, size_t li, int64_t T, LayerOps& ops, StepActivations& a) {
  const ModelWeights& w = *ctx.weights;
  const ModelConfig& c = w.config;
  const LayerWeights& L = w.layers[li];
  const int64_t h = c.hidden_size, hd = c.head_dim;
  const int64_t nh = w.dims.heads, nkv = w.dims.kv_heads, inter = w.dims.intermediate;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Attention block.
  ops.RmsNorm(a.x, L.input_norm, eps, T, h, a.xn);
  ops.Linear(a.xn, T, L.q, &L.q_bias, a.q);  // (T, nh * hd)
  ops.Linear(a.xn, T, L.k, &L.k_bias, a.k);  // (T, nkv * hd)
  ops.Linear(a.xn, T, L.v, &L.v_bias, a.v);  // (T, nkv * hd)
  if (!L.q_norm.empty()) {  // per head, over head_dim
    ops.RmsNorm(a.q, L.q_norm, eps, T * nh, hd, a.q);
    ops.RmsNorm(a.k, L.k_norm, eps, T * nkv, hd, a.k);
  }
  ops.Rope(a.q, nh);
  ops.Rope(a.k, nkv);
  const int64_t window = LayerWindow(c, w.first_layer + static_cast<int64_t>(li));
  ops.Attention(li, a.q, a.k, a.v, window, a.attn);  // (T, nh * hd)
  ops.Linear(a.attn, T, L.o, ctx.tp_leader ? &L.o_bias : nullptr, a.proj);  // (T, h)
  ops.AllReduce(a.proj, T * h);
  ops.Add(a.x, a.proj, T * h);

  // MLP block.
  ops.RmsNorm(a.x, L.post_attention_norm, eps, T, h, a.xn);
  ops.Linear(a.xn, T, L.gate, nullptr, a.gate);  // (T, inter)
  ops.Linear(a.xn, T, L.up, nullptr, a.up);      // (T, inter)
  ops.GatedActivation(c.hidden_act, a.gate, a.up, T * inter);
  ops.Linear(a.gate, T, L.down, nullptr, a.proj);  // (T, h)
  ops.AllReduce(a.proj, T * h);
  ops.Add(a.x, a.proj, T * h);
}

}  // namespace

Status RunLayers(const LayerContext& ctx, int64_t tokens, LayerOps& ops, StepActivations& a) {
  for (size_t li = 0; li < ctx.weights->layers.size(); ++li) {
    DF11_RETURN_IF_ERROR(ops.BeginLayer(li));
    RunLayer(ctx, li, tokens, ops, a);
    ops.EndLayer(li);
  }
  return Status::Ok();
}

Status RunHead(const ModelWeights& w, const float* x, int64_t rows, LayerOps& ops, float* xn,
               float* logits) {
  ops.RmsNorm(x, w.final_norm, static_cast<float>(w.config.rms_norm_eps), rows,
              w.config.hidden_size, xn);
  return ops.LmHead(xn, rows, w.lm_head, logits);
}

}  // namespace df11
