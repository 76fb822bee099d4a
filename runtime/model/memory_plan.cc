// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace df11 {
namespace {

// Weights of the whole model (the matrices; norms and biases are a rounding error), or
// InvalidArgument when the count overflows 64 bits: each config size is bounded, their products
// are not.
StatusOr<int64_t> ParameterCount(const ModelConfig& c) {
  int64_t q = 0, kv = 0, mlp = 0, layer = 0, layers = 0, embed = 0, total = 0;
  const bool ok =
      !__builtin_mul_overflow(c.num_attention_heads * c.head_dim, c.hidden_size, &q) &&
      !__builtin_mul_overflow(c.num_key_value_heads * c.head_dim, c.hidden_size, &kv) &&
      !__builtin_mul_overflow(c.intermediate_size, 3 * c.hidden_size, &mlp) &&
      !__builtin_add_overflow(q, kv, &layer) && !__builtin_mul_overflow(layer, 2, &layer) &&
      !__builtin_add_overflow(layer, mlp, &layer) &&
      !__builtin_mul_overflow(layer, c.num_hidden_layers, &layers) &&
      !__builtin_mul_overflow(c.vocab_size, c.hidden_size * (c.tie_word_embeddings ? 1 : 2),
                              &embed) &&
      !__builtin_add_overflow(layers, embed, &total);
  if (!ok) {
    return Status::InvalidArgument(
        "config.json: the model's parameter count does not fit a 64-bit integer (hidden_size " +
        std::to_string(c.hidden_size) + ", intermediate_size " +
        std::to_string(c.intermediate_size) + ", num_attention_heads " +
        std::to_string(c.num_attention_heads) + ", head_dim " + std::to_string(c.head_dim) +
        ", num_hidden_layers " + std::to_string(c.num_hidden_layers) + ", vocab_size " +
        std::to_string(c.vocab_size) + ")");
  }
  return total;
}

}  // namespace

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
  // 2^60 bytes bounds every byte figure's conversion to an integer (as tokens) below.
  if (!(o.gpu_memory_bytes > 0 && o.gpu_memory_bytes <= 0x1p60) || !(o.memory_fraction > 0) ||
      o.memory_fraction > 1) {
    return Status::InvalidArgument(
        "--gpu-memory must be in (0, 2^30] GiB and --gpu-memory-fraction in (0, 1]");
  }
  if (o.context < 0 || o.context > c.max_position_embeddings) {
    return Status::InvalidArgument(
        "--context " + std::to_string(o.context) + " is more than the model supports: expected " +
        "0 (the model's maximum) to max_position_embeddings " +
        std::to_string(c.max_position_embeddings) + " (config.json)");
  }
  if (o.workspace_tokens < 1 || o.workspace_tokens > (int64_t{1} << 24)) {
    return Status::InvalidArgument("--max-step-tokens must be in [1, 16777216], got " +
                                   std::to_string(o.workspace_tokens));
  }
  DF11_ASSIGN_OR_RETURN(const int64_t parameters, ParameterCount(c));
  const double h = static_cast<double>(c.hidden_size), hd = static_cast<double>(c.head_dim);
  const double heads = static_cast<double>(c.num_attention_heads) / o.tp;
  const double kv = std::max(1.0, static_cast<double>(c.num_key_value_heads) / o.tp);
  const double inter = static_cast<double>(c.intermediate_size) / o.tp;
  const double vocab = std::ceil(static_cast<double>(c.vocab_size) / o.tp);
  const double layer = h * (heads * hd) * 2 + h * (kv * hd) * 2 + 3 * h * inter;  // local slice
  const int64_t layers = (c.num_hidden_layers + o.pp - 1) / o.pp;  // the first stages' share
  const double bytes_per_weight = o.df11 ? o.df11_bits_per_weight / 8 : 2;

  MemoryPlan p;
  p.parameters = parameters;
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
  // K and V in FP32, as the CPU and CUDA backends store them (PlanDeviceMemory agrees).
  p.kv_bytes_per_token = 2.0 * 4.0 * kv * hd * static_cast<double>(layers);
  p.budget_bytes = o.gpu_memory_bytes * o.memory_fraction;
  p.kv_bytes = p.budget_bytes - p.weight_bytes - p.scratch_bytes - p.workspace_bytes;
  p.context = o.context > 0 ? o.context : c.max_position_embeddings;
  p.kv_tokens = p.kv_bytes > 0 ? static_cast<int64_t>(p.kv_bytes / p.kv_bytes_per_token) : 0;
  p.max_sequences = p.context > 0 ? p.kv_tokens / p.context : 0;
  // It fits when the cache holds at least one sequence of the whole context.
  p.fits = p.max_sequences >= 1;
  return p;
}

std::string MemoryPlan::Format(const MemoryPlanOptions& o) const {
  char buf[1024];
  std::snprintf(buf, sizeof(buf),
                "model: %.1f B parameters, %s weights, tp %d x pp %d (%lld GPUs)\n"
                "per GPU (worst rank), of %.1f GiB x %.2f = %.1f GB usable:\n"
                "  weights            %8.2f GB\n"
                "  decode scratch     %8.2f GB  (two BF16 buffers of the largest layer slice)\n"
                "  step workspace     %8.2f GB  (%lld tokens of activations)\n"
                "  KV cache           %8.2f GB  = %lld tokens (%.1f KB per token)\n"
                "  concurrency        %8lld sequences of %lld tokens\n"
                "verdict: %s\n",
                parameters / 1e9, o.df11 ? "DF11" : "BF16", o.tp, o.pp,
                static_cast<long long>(o.tp) * o.pp,
                o.gpu_memory_bytes / (1 << 30), o.memory_fraction, budget_bytes / 1e9,
                weight_bytes / 1e9, scratch_bytes / 1e9, workspace_bytes / 1e9,
                static_cast<long long>(o.workspace_tokens), std::max(0.0, kv_bytes) / 1e9,
                static_cast<long long>(kv_tokens), kv_bytes_per_token / 1e3,
                static_cast<long long>(max_sequences), static_cast<long long>(context),
                fits ? "FITS"
                : kv_tokens > 0 ? "DOES NOT FIT (the KV cache holds less than one sequence; "
                                  "lower --context or use more GPUs)"
                                : "DOES NOT FIT");
  return buf;
}

StatusOr<DeviceMemoryPlan> PlanDeviceMemory(const DeviceMemoryInputs& in) {
  if (in.memory_fraction <= 0 || in.memory_fraction > 1) {
    return Status::InvalidArgument("--gpu-memory-fraction must be in (0, 1], got " +
                                   std::to_string(in.memory_fraction));
  }
  DeviceMemoryPlan p;
  p.in = in;
  p.budget_bytes = static_cast<int64_t>(in.memory_fraction * static_cast<double>(in.device_total_bytes));
  p.fixed_bytes = in.compressed_bytes + in.plain_bytes + in.small_bytes + in.layer_scratch_bytes +
                  in.head_scratch_bytes + in.activation_bytes + in.sampling_bytes;
  p.kv_bytes = p.budget_bytes - p.fixed_bytes;
  p.kv_tokens = in.kv_bytes_per_token > 0 && p.kv_bytes > 0 ? p.kv_bytes / in.kv_bytes_per_token : 0;
  p.max_sequences = in.context > 0 ? p.kv_tokens / in.context : 0;
  if (p.kv_tokens < 1) {
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "the model does not fit on the GPU: weights %.3f GB + layer scratch %.3f GB + "
                  "LM-head scratch %.3f GB + activations %.3f GB + sampling %.3f GB = %.3f GB "
                  "exceed %.2f x %.3f GB = %.3f GB (raise --gpu-memory-fraction, use more GPUs "
                  "(tp/pp), or a DF11 model)",
                  (in.compressed_bytes + in.plain_bytes + in.small_bytes) / 1e9,
                  in.layer_scratch_bytes / 1e9, in.head_scratch_bytes / 1e9,
                  in.activation_bytes / 1e9, in.sampling_bytes / 1e9, p.fixed_bytes / 1e9,
                  in.memory_fraction,
                  in.device_total_bytes / 1e9, p.budget_bytes / 1e9);
    return Status::FailedPrecondition(buf);
  }
  return p;
}

std::string DeviceMemoryPlan::Format() const {
  char buf[1400];
  std::snprintf(
      buf, sizeof(buf),
      "GPU memory plan: %.3f GB total x %.2f = %.3f GB usable\n"
      "  weights on device  %10.3f MB  = DF11 units %.3f MB + BF16 matrices %.3f MB + small "
      "tensors %.3f MB\n"
      "  layer scratch      %10.3f MB  (two BF16 buffers of the largest layer)\n"
      "  LM-head scratch    %10.3f MB\n"
      "  activations        %10.3f MB\n"
      "  sampling workspace %10.3f MB\n"
      "  weight memory per GPU = compressed shard + two layer scratch buffers = %.3f MB\n"
      "  KV cache           %10.3f MB  = %lld tokens (%.1f KB per token)\n"
      "  concurrency        %10lld sequences of %lld tokens\n",
      in.device_total_bytes / 1e9, in.memory_fraction, budget_bytes / 1e9,
      (in.compressed_bytes + in.plain_bytes + in.small_bytes) / 1e6, in.compressed_bytes / 1e6,
      in.plain_bytes / 1e6, in.small_bytes / 1e6, in.layer_scratch_bytes / 1e6,
      in.head_scratch_bytes / 1e6, in.activation_bytes / 1e6, in.sampling_bytes / 1e6,
      weight_memory_bytes() / 1e6,
      kv_bytes / 1e6, static_cast<long long>(kv_tokens), in.kv_bytes_per_token / 1e3,
      static_cast<long long>(max_sequences), static_cast<long long>(in.context));
  return buf;
}

}  // namespace df11
