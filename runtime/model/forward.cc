// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/forward.h"

namespace df11 {
namespace {

// One decoder layer on a.x (T, hidden), transformers' LlamaDecoderLayer order:
//   x += o_proj(attention(rope(q_norm(q_proj(norm(x)))), rope(k_norm(k_proj(·))), v_proj(·)))
//   x += down_proj(act(gate_proj(norm(x))) * up_proj(norm(x)))
// Gemma3DecoderLayer also norms each block's output before its residual add
// (attention_out_norm, mlp_out_norm: four norms per layer, all (1 + w)).
void RunLayer(const LayerContext& ctx, size_t li, int64_t T, LayerOps& ops, StepActivations& a) {
  const ModelWeights& w = *ctx.weights;
  const ModelConfig& c = w.config;
  const LayerWeights& L = w.layers[li];
  const int64_t h = c.hidden_size, hd = c.head_dim;
  const int64_t nh = w.dims.heads, nkv = w.dims.kv_heads, inter = w.dims.intermediate;
  const float eps = static_cast<float>(c.rms_norm_eps), offset = c.norm_weight_offset;
  const int64_t layer = w.first_layer + static_cast<int64_t>(li);

  // Attention block.
  ops.RmsNorm(a.x, L.input_norm, offset, eps, T, h, a.xn);
  ops.Linear(a.xn, T, L.q, &L.q_bias, a.q);  // (T, nh * hd)
  ops.Linear(a.xn, T, L.k, &L.k_bias, a.k);  // (T, nkv * hd)
  ops.Linear(a.xn, T, L.v, &L.v_bias, a.v);  // (T, nkv * hd)
  if (!L.q_norm.empty()) {  // per head, over head_dim
    ops.RmsNorm(a.q, L.q_norm, offset, eps, T * nh, hd, a.q);
    ops.RmsNorm(a.k, L.k_norm, offset, eps, T * nkv, hd, a.k);
  }
  const bool local_rope = LayerUsesLocalRope(c, layer);
  ops.Rope(a.q, nh, local_rope);
  ops.Rope(a.k, nkv, local_rope);
  // No score softcap: transformers' Gemma3Attention does not apply attn_logit_softcapping.
  const AttentionParams attention{LayerWindow(c, layer), static_cast<float>(c.attention_scale)};
  ops.Attention(li, a.q, a.k, a.v, attention, a.attn);  // (T, nh * hd)
  ops.Linear(a.attn, T, L.o, ctx.tp_leader ? &L.o_bias : nullptr, a.proj);  // (T, h)
  ops.AllReduce(a.proj, T * h);
  if (!L.attention_out_norm.empty()) {
    ops.RmsNorm(a.proj, L.attention_out_norm, offset, eps, T, h, a.proj);
  }
  ops.Add(a.x, a.proj, T * h);

  // MLP block.
  ops.RmsNorm(a.x, L.mlp_norm, offset, eps, T, h, a.xn);
  ops.Linear(a.xn, T, L.gate, nullptr, a.gate);  // (T, inter)
  ops.Linear(a.xn, T, L.up, nullptr, a.up);      // (T, inter)
  ops.GatedActivation(c.hidden_act, a.gate, a.up, T * inter);
  ops.Linear(a.gate, T, L.down, nullptr, a.proj);  // (T, h)
  ops.AllReduce(a.proj, T * h);
  if (!L.mlp_out_norm.empty()) ops.RmsNorm(a.proj, L.mlp_out_norm, offset, eps, T, h, a.proj);
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
  const ModelConfig& c = w.config;
  ops.RmsNorm(x, w.final_norm, c.norm_weight_offset, static_cast<float>(c.rms_norm_eps), rows,
              c.hidden_size, xn);
  DF11_RETURN_IF_ERROR(ops.LmHead(xn, rows, w.lm_head, logits));
  if (c.final_logit_softcapping > 0) {
    ops.Softcap(logits, rows * w.lm_head.rows, static_cast<float>(c.final_logit_softcapping));
  }
  return Status::Ok();
}

}  // namespace df11
