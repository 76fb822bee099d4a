// SPDX-License-Identifier: Apache-2.0
// Causal grouped-query attention of one step's new tokens (HF eager attention math, FP32):
//   s_j = q · k_j * scale, with a softcap c > 0: s_j = c * tanh(s_j / c) (Gemma's
//   attn_logit_softcapping); out = softmax(s over the visible positions) · v.
// Query i of a sequence whose cache held `past` positions sits at position p = past + i and sees
// positions 0..p, or with a sliding window w > 0 only the last w of them, p - w + 1..p
// (transformers' sliding-window mask: kv > q - w); window 0 means no window. The positions before
// the step come from the sequence's cache, the step's own from its new K/V rows. Query head h
// reads kv head h / (n_heads / n_kv_heads). On the CPU each (query, head) row is computed in one
// fixed order (attention_head.h), so AttentionRef and AttentionCpu give the same bits for any
// `threads`, CPU level and batch.
#pragma once

#include <cstdint>
#include <span>

namespace df11 {

// How scores are formed and which positions a query sees.
struct AttentionParams {
  int64_t window = 0;  // > 0: only the last `window` positions up to the query's own
  float scale = 0;     // head_dim^-0.5 (AttentionScale), Gemma 3: query_pre_attn_scalar^-0.5
  float softcap = 0;   // > 0: scores = softcap * tanh(scores / softcap)
};

// head_dim^-0.5, computed in double and rounded once (transformers' default `scaling`).
float AttentionScale(int64_t head_dim);

// One sequence's keys and values for a step of t_new tokens.
struct KvSource {
  const float* k_cache = nullptr;  // (past, n_kv_heads, head_dim): positions [0, past)
  const float* v_cache = nullptr;
  int64_t past = 0;
  const float* k_new = nullptr;  // (t_new, n_kv_heads, head_dim): positions [past, past + t_new)
  const float* v_new = nullptr;
};

// Requires t_new >= 0, n_kv_heads >= 1, n_heads a multiple of n_kv_heads, head_dim >= 1,
// window >= 0, out not overlapping the inputs. Thread-safe.
void AttentionRef(const float* q,  // (t_new, n_heads, head_dim)
                  const KvSource& kv, int64_t t_new, int64_t n_heads, int64_t n_kv_heads,
                  int64_t head_dim, const AttentionParams& params,
                  float* out,  // (t_new, n_heads, head_dim)
                  int threads);

// One sequence of a step: its new queries over its keys and values.
struct AttentionSequence {
  const float* q = nullptr;  // (t_new, n_heads, head_dim)
  KvSource kv;
  int64_t t_new = 0;
  float* out = nullptr;  // (t_new, n_heads, head_dim)
};

// AttentionRef of every sequence of a step at once, (sequence, head, block of queries) items
// spread over `threads`, with the kernels of ActiveCpuLevel(); bit-identical to AttentionRef
// of each sequence. Same requirements per sequence. Thread-safe.
void AttentionCpu(std::span<const AttentionSequence> sequences, int64_t n_heads,
                  int64_t n_kv_heads, int64_t head_dim, const AttentionParams& params,
                  int threads);


}  // namespace df11
