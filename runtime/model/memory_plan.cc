// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace df11 {

StatusOr<MemoryPlan> PlanMemory(const ModelConfig& c, const MemoryPlanOptions& o) {
  if (o.tp < 1 || o.pp < 1) return Status::InvalidArgument("--tp and --pp must be >= 1");
  if (c.num_attention_heads % o.tp != 0) {
    return Status::InvalidArgument("num_attention_heads " + std::to_string(c.num_attention_heads) +
                                   " is not divisible by --tp " + std::to_string(o.tp));
  }
  if (c.intermediate_size % o.tp != 0) {
    return Status::InvalidArgument("intermediate_size " + std::to_string(c.intermediate_size) +
                                   " is not divisible by --tp " + std::to_string(o.tp));
  }
  if (c.num_hidden_layers < o.pp) {
    return Status::InvalidArgument("--pp " + std::to_string(o.pp) + " exceeds the " +
                                   std::to_string(c.num_hidden_layers) + " layers");
  }
  if (o.gpu_memory_bytes <= 0 || o.memory_fraction <= 0 || o.memory_fraction > 1) {
    return Status::InvalidArgument("--gpu-memory must be > 0 and --gpu-memory-fraction in (0, 1]");
  }
  const double h = static_cast<double>(c.hidden_size), hd = static_cast<double>(c.head_dim);
  const double heads = static_cast<double>(c.num_attention_heads) / o.tp;
  const double kv = std::max(1.0, static_cast<double>(c.num_key_value_heads) / o.tp);
  const double inter = static_cast<double>(c.intermediate_size) / o.tp;
  const double vocab = std::ceil(static_cast<double>(c.vocab_size) / o.tp);
  const double layer = h * (heads * hd) * 2 + h * (kv * hd) * 2 + 3 * h * inter;  // local slice
  const int64_t layers = (c.num_hidden_layers + o.pp - 1) / o.pp;  // the first stages' share
  const double bytes_per_weight = o.df11 ? o.df11_bits_per_weight / 8 : 2;

  MemoryPlan p;
  const double full_layer = h * c.num_attention_heads * hd * 2 +
                            h * c.num_key_value_heads * hd * 2 + 3 * h * c.intermediate_size;
  p.parameters = static_cast<int64_t>(full_layer * c.num_hidden_layers +
                                      c.vocab_size * h * (c.tie_word_embeddings ? 1 : 2));
  // The worst rank: with pp = 1 it holds the embedding and the LM head slices as well.
  const double embed = vocab * h, head = vocab * h;
  const double ends = o.pp == 1 ? embed + (c.tie_word_embeddings ? 0 : head)
                                 : std::max(embed, c.tie_word_embeddings ? embed : head);
  p.weight_bytes = (layer * layers + ends) * bytes_per_weight + 4 * h * layers;
  p.scratch_bytes = o.df11 ? 2 * 2 * layer : 0;
  // Activations of one step's tokens, plus logits of the rows that sample (one per sequence).
  const double rows = static_cast<double>(std::min<int64_t>(o.workspace_tokens, 256));
  p.workspace_bytes = static_cast<double>(o.workspace_tokens) *
                          4 * (3 * h + 2 * heads * hd + 2 * kv * hd + 2 * inter) +
                      rows * 4 * vocab;
  p.kv_bytes_per_token = 2.0 * 2.0 * kv * hd * static_cast<double>(layers);
  p.budget_bytes = o.gpu_memory_bytes * o.memory_fraction;
  p.kv_bytes = p.budget_bytes - p.weight_bytes - p.scratch_bytes - p.workspace_bytes;
  p.context = o.context > 0 ? o.context : c.max_position_embeddings;
  p.kv_tokens = p.kv_bytes > 0 ? static_cast<int64_t>(p.kv_bytes / p.kv_bytes_per_token) : 0;
  p.max_sequences = p.context > 0 ? p.kv_tokens / p.context : 0;
  p.fits = p.kv_tokens >= std::min<int64_t>(p.context, 4096);
  return p;
}

std::string MemoryPlan::Format(const MemoryPlanOptions& o) const {
  char buf[1024];
  std::snprintf(buf, sizeof(buf),
                "model: %.1f B parameters, %s weights, tp %d x pp %d (%d GPUs)\n"
                "per GPU (worst rank), of %.1f GiB x %.2f = %.1f GB usable:\n"
                "  weights            %8.2f GB\n"
                "  decode scratch     %8.2f GB  (two BF16 buffers of the largest layer slice)\n"
                "  step workspace     %8.2f GB  (%lld tokens of activations)\n"
                "  KV cache           %8.2f GB  = %lld tokens (%.1f KB per token)\n"
                "  concurrency        %8lld sequences of %lld tokens\n"
                "verdict: %s\n",
                parameters / 1e9, o.df11 ? "DF11" : "BF16", o.tp, o.pp, o.tp * o.pp,
                o.gpu_memory_bytes / (1 << 30), o.memory_fraction, budget_bytes / 1e9,
                weight_bytes / 1e9, scratch_bytes / 1e9, workspace_bytes / 1e9,
                static_cast<long long>(o.workspace_tokens), std::max(0.0, kv_bytes) / 1e9,
                static_cast<long long>(kv_tokens), kv_bytes_per_token / 1e3,
                static_cast<long long>(max_sequences), static_cast<long long>(context),
                fits ? "FITS" : "DOES NOT FIT");
  return buf;
}

}  // namespace df11
