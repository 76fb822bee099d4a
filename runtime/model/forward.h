// SPDX-License-Identifier: Apache-2.0
// The decoder layer and the model's forward, written once against LayerOps (layer_ops.h) for
// every backend: Llama, Qwen2 (q/k/v biases), Qwen3 (q/k norms), Mistral and Gemma 3 (four
// (1 + w) norms per layer, local and global rope, query_pre_attn_scalar, final soft cap), with the
// config's gate activation and sliding windows, on any local slice of the model (tensor-parallel ranks
// hold head / row / column slices and all-reduce after o_proj and down_proj; pipeline stages
// hold a range of layers).
#pragma once

#include <cstdint>

#include "runtime/core/status.h"
#include "runtime/model/layer_ops.h"
#include "runtime/model/model_weights.h"

namespace df11 {

// How this rank runs its layers.
struct LayerContext {
  const ModelWeights* weights = nullptr;
  bool tp_leader = true;  // adds the row-parallel o_proj bias (only one rank of a group may)
};

// Runs this rank's layers on a.x (T, hidden) in place, appending to the step's KV caches.
// Errors: BeginLayer's (a corrupt DF11 stream).
Status RunLayers(const LayerContext& ctx, int64_t tokens, LayerOps& ops, StepActivations& a);

// logits (rows, vocab_rows) = LM head of the final norm of x (rows, hidden), soft-capped when
// the config says so; xn (rows, hidden) is scratch. Errors: LmHead's.
Status RunHead(const ModelWeights& w, const float* x, int64_t rows, LayerOps& ops, float* xn,
             float* logits);

}  // namespace df11
