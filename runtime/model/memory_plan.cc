// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

#include "runtime/formats/model_tensors.h"
#include "runtime/model/kv_cache.h"

namespace df11 {
namespace {

// Parameters of the whole model (every tensor of the table), or InvalidArgument when the count
// overflows 64 bits: each config size is bounded, their products are not.
StatusOr<int64_t> ParameterCount(const ModelConfig& c) {
  const ArchitectureTensors& t = TensorsOf(c.arch);
  auto numel = [&](const TensorRow& row, int64_t* n) {
    *n = 1;
    bool overflow = false;
    for (int64_t d : GlobalShape(row, c)) overflow |= __builtin_mul_overflow(*n, d, n);
    return !overflow;
  };
  int64_t layer = 0, total = 0, n = 0;
  bool ok = true;
  for (const TensorRow& row : t.layer) {
    if (Present(row, c)) ok = ok && numel(row, &n) && !__builtin_add_overflow(layer, n, &layer);
  }
  ok = ok && !__builtin_mul_overflow(layer, c.num_hidden_layers, &total);
  for (const TensorRow* row : {&t.embedding, &t.final_norm, &t.lm_head}) {
    if (Present(*row, c)) ok = ok && numel(*row, &n) && !__builtin_add_overflow(total, n, &total);
  }
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

// The elements a rank holding `part` keeps: those a DF11 model codes in units, the plain BF16
// ones (norms, biases), and the unit elements of one of its layers (what its scratch decodes).
struct HeldElements {
  double unit = 0;
  double plain = 0;
  double layer_unit = 0;
  double largest_layer_matrix = 0;  // elements of a layer's largest matrix
};

HeldElements CountHeld(const ModelConfig& c, const ModelPart& part) {
  const ArchitectureTensors& t = TensorsOf(c.arch);
  HeldElements e;
  // Adds `times` copies of the row's tensor; returns the elements of one.
  auto add = [&](const TensorRow& row, double times) {
    double n = 1;
    for (int64_t d : LocalShape(row, c, part)) n *= static_cast<double>(d);
    (row.unit == UnitOf::kPlain ? e.plain : e.unit) += n * times;
    if (row.unit == UnitOf::kLayer) e.largest_layer_matrix = std::max(e.largest_layer_matrix, n);
    return n;
  };
  const double layers = static_cast<double>(part.layer_end - part.layer_begin);
  for (const TensorRow& row : t.layer) {
    if (!Present(row, c)) continue;
    const double n = add(row, layers);
    if (row.unit == UnitOf::kLayer) e.layer_unit += n;
  }
  if (part.embedding) add(t.embedding, 1);
  if (part.head) {
    add(t.final_norm, 1);
    // Tied: the embedding serves as the LM head where the rank holds it; a later stage holds a
    // copy of its rows (df11 shard).
    if (Present(t.lm_head, c) || !part.embedding) add(t.lm_head, 1);
  }
  return e;
}

const char* CodecLabel(WeightCodec codec) {
  switch (codec) {
    case WeightCodec::kDf11: return "DF11";
    case WeightCodec::kEw4: return "ew4";
    case WeightCodec::kBf16: break;
  }
  return "BF16";
}

// The option ranges PlanMemory checks besides the layout: memory, context and step tokens.
Status CheckSizes(const ModelConfig& c, const MemoryPlanOptions& o) {
  // 2^60 bytes bounds every byte figure's conversion to an integer (as tokens) below.
  if (!(o.gpu_memory_bytes > 0 && o.gpu_memory_bytes <= 0x1p60) || !(o.memory_fraction > 0) ||
      o.memory_fraction > 1) {
    return Status::InvalidArgument(
        "--gpu-memory must be in (0, 2^30] GiB and --gpu-memory-fraction in (0, 1]");
  }
  if (o.context < 0 || o.context > c.max_position_embeddings) {
    return Status::InvalidArgument("--context " + std::to_string(o.context) +
                                   " is more than the model supports: expected " +
                                   "0 (the model's maximum) to max_position_embeddings " +
                                   std::to_string(c.max_position_embeddings) + " (config.json)");
  }
  if (o.kv_block_tokens < 1 || o.kv_block_tokens > 4096) {
    return Status::InvalidArgument("--kv-block-tokens must be in [1, 4096], got " +
                                   std::to_string(o.kv_block_tokens));
  }
  if (o.workspace_tokens < 1 || o.workspace_tokens > (int64_t{1} << 24)) {
    return Status::InvalidArgument("--max-step-tokens must be in [1, 16777216], got " +
                                   std::to_string(o.workspace_tokens));
  }
  return Status::Ok();
}

// Whole blocks of `block_tokens` positions at `bytes_per_token` in `bytes` (0 when none fits),
// at most INT32_MAX (block ids are int32).
int64_t KvBlocksIn(double bytes, double bytes_per_token, int64_t block_tokens) {
  if (!(bytes > 0) || !(bytes_per_token > 0)) return 0;
  const double blocks = bytes / (bytes_per_token * static_cast<double>(block_tokens));
  return static_cast<int64_t>(std::min(blocks, static_cast<double>(INT32_MAX)));
}

// Blocks of one sequence of `context` positions.
int64_t BlocksOfSequence(int64_t context, int64_t block_tokens) {
  return (context + block_tokens - 1) / block_tokens;
}

// The KV figures of *p from its weight, scratch and workspace bytes: K and V of one position of
// one layer take `row_bytes` (BF16, as both backends store them; PlanDeviceMemory agrees), the
// worst rank holds `layers` layers, the cache is whole blocks.
void PlanKv(double row_bytes, int64_t layers, const MemoryPlanOptions& o, MemoryPlan* p) {
  p->kv_bytes_per_token = row_bytes * static_cast<double>(layers);
  p->budget_bytes = o.gpu_memory_bytes * o.memory_fraction;
  p->kv_bytes = p->budget_bytes - p->weight_bytes - p->scratch_bytes - p->workspace_bytes;
  p->kv_blocks = KvBlocksIn(p->kv_bytes, p->kv_bytes_per_token, o.kv_block_tokens);
  p->kv_tokens = p->kv_blocks * o.kv_block_tokens;
  p->max_sequences = p->kv_blocks / BlocksOfSequence(p->context, o.kv_block_tokens);
}

// The window saving of *p (PlanKv's figures set): the stage whose layers take the most KV bytes
// for a sequence of the context, its full-attention layers' blocks of every position and its
// sliding ones' KvSlidingBlocksFor (a prompt taking them chunk by chunk, a step of
// workspace_tokens, df11-run's --max-step-tokens); the sequences that fit are those of the
// engine's split of the memory between the two groups (SplitKvBlocks).
void PlanWindowSaving(const ModelConfig& c, std::span<const Range> stages, double row_bytes,
                      const MemoryPlanOptions& o, MemoryPlan* p) {
  const int64_t bt = o.kv_block_tokens, f = BlocksOfSequence(p->context, bt);
  std::vector<int64_t> worst;
  for (const Range& held : stages) {
    std::vector<int64_t> windows;
    int64_t sliding = 0, window = 0;
    for (int64_t l = held.begin; l < held.end; ++l) {
      windows.push_back(LayerWindow(c, l));
      sliding += LayerWindow(c, l) > 0 ? 1 : 0;
      window = std::max(window, LayerWindow(c, l));
    }
    const int64_t s = KvSlidingBlocksFor(p->context, window, bt, o.workspace_tokens);
    const double bytes = row_bytes * static_cast<double>(bt) *
                         static_cast<double>(f * (held.size() - sliding) + s * sliding);
    if (bytes > p->sequence_kv_bytes) {
      p->sequence_kv_bytes = bytes;
      p->window_layers = sliding;
      p->window = window;
      worst = std::move(windows);
    }
  }
  p->sequence_kv_bytes_full = p->kv_bytes_per_token * static_cast<double>(f * bt);
  if (p->window_layers == 0) return;
  const int64_t blocks =
      KvBlocksIn(p->kv_bytes, row_bytes * static_cast<double>(worst.size()), o.kv_block_tokens);
  const KvGroupBlocks split = SplitKvBlocks(worst, blocks, bt, p->context, o.workspace_tokens);
  p->windowed_sequences = KvSequencesOf(split, p->window, bt, p->context, o.workspace_tokens);
  p->windowed_kv_tokens = p->windowed_sequences * p->context;
}

// "sequence" or "sequences", for a count of n.
const char* SequencesNoun(int64_t n) { return n == 1 ? "sequence" : "sequences"; }

// The window saving lines of MemoryPlan::Format ("" when no layer slides).
std::string WindowSaving(const MemoryPlan& p) {
  if (p.window_layers == 0) return "";
  char buf[768];
  std::snprintf(
      buf, sizeof(buf),
      "  window saving      %lld sliding-window layers (window %lld) keep only their window's\n"
      "                     blocks: a sequence of %lld tokens takes %.2f GB instead of %.2f GB\n"
      "                     (%.0f%% less); with the saving %lld %s of %lld tokens\n"
      "                     (%lld KV tokens), without it %lld (%lld KV tokens)\n",
      static_cast<long long>(p.window_layers), static_cast<long long>(p.window),
      static_cast<long long>(p.context), p.sequence_kv_bytes / 1e9, p.sequence_kv_bytes_full / 1e9,
      p.sequence_kv_bytes_full > 0 ? 100.0 * (1 - p.sequence_kv_bytes / p.sequence_kv_bytes_full)
                                   : 0.0,
      static_cast<long long>(p.windowed_sequences), SequencesNoun(p.windowed_sequences),
      static_cast<long long>(p.context),
      static_cast<long long>(p.windowed_kv_tokens), static_cast<long long>(p.max_sequences),
      static_cast<long long>(p.max_sequences * p.context));
  return buf;
}

}  // namespace

WeightCodec ChooseFastestCodec(std::span<const CodecFit> fits, int64_t min_kv_tokens) {
  const CodecFit* most = nullptr;
  for (WeightCodec codec : kCodecsBySpeed) {
    for (const CodecFit& f : fits) {
      if (f.codec != codec) continue;
      if (f.kv_tokens >= std::max<int64_t>(1, min_kv_tokens)) return codec;
      if (most == nullptr || f.kv_tokens > most->kv_tokens) most = &f;
    }
  }
  return most != nullptr ? most->codec : WeightCodec::kDf11;
}

const MemoryPlan& CodecPlans::Of(WeightCodec codec) const {
  for (size_t i = 0; i < plans.size(); ++i) {
    if (kCodecsBySpeed[i] == codec) return plans[i];
  }
  return plans.back();
}

StatusOr<CodecPlans> PlanCodecs(const ModelConfig& c, const MemoryPlanOptions& options) {
  CodecPlans out;
  std::vector<CodecFit> fits;
  for (WeightCodec codec : kCodecsBySpeed) {
    MemoryPlanOptions o = options;
    o.codec = codec;
    DF11_ASSIGN_OR_RETURN(MemoryPlan p, PlanMemory(c, o));
    fits.push_back({codec, p.kv_tokens});
    out.plans.push_back(p);
  }
  out.min_kv_tokens = options.min_kv_tokens > 0 ? options.min_kv_tokens : out.plans[0].context;
  out.chosen = ChooseFastestCodec(fits, out.min_kv_tokens);
  return out;
}

std::string CodecPlans::Format() const {
  std::string out = "codecs (fastest first), per GPU (worst rank):\n";
  char line[256];
  for (size_t i = 0; i < plans.size(); ++i) {
    const MemoryPlan& p = plans[i];
    std::snprintf(line, sizeof(line),
                  "  %-5s weights %8.2f GB + scratch %6.2f GB -> KV cache %8lld tokens%s\n",
                  CodecLabel(kCodecsBySpeed[i]), p.weight_bytes / 1e9, p.scratch_bytes / 1e9,
                  static_cast<long long>(p.kv_tokens),
                  kCodecsBySpeed[i] == chosen ? "   <- auto" : "");
    out += line;
  }
  std::snprintf(line, sizeof(line),
                "auto: %s, the fastest codec whose KV cache holds >= %lld tokens%s\n",
                CodecLabel(chosen), static_cast<long long>(min_kv_tokens),
                Of(chosen).kv_tokens >= min_kv_tokens ? "" : " (none does: the one with the most)");
  return out + line;
}

StatusOr<MemoryPlan> PlanMemory(const ModelConfig& c, const MemoryPlanOptions& o) {
  if (o.tp < 1 || o.pp < 1) return Status::InvalidArgument("--tp and --pp must be >= 1");
  // The layout must be one df11 shard can write: the same slices, the same errors.
  const StatusOr<TpSlices> slices = TensorParallelSlices(c, o.tp, 0);
  if (!slices.ok()) {
    return Status::InvalidArgument("--tp " + std::to_string(o.tp) + ": " +
                                   slices.status().message());
  }
  const StatusOr<std::vector<Range>> stages = StageLayers(c, o.pp, {});
  if (!stages.ok()) {
    return Status::InvalidArgument("--pp " + std::to_string(o.pp) + ": " +
                                   stages.status().message());
  }
  DF11_RETURN_IF_ERROR(CheckSizes(c, o));
  MemoryPlan p;
  DF11_ASSIGN_OR_RETURN(p.parameters, ParameterCount(c));
  // The worst rank: tp rank 0 (the longest vocabulary slice) of the stage holding the most.
  const TpSlices& s = *slices;
  const double bytes_per_weight = o.codec == WeightCodec::kDf11  ? o.df11_bits_per_weight / 8
                                  : o.codec == WeightCodec::kEw4 ? o.ew4_bits_per_weight / 8
                                                                 : 2;
  double layer_unit = 0, largest_matrix = 0;
  int64_t layers = 0;
  p.context = o.context > 0 ? o.context : c.max_position_embeddings;
  for (size_t stage = 0; stage < stages->size(); ++stage) {
    const Range held = (*stages)[stage];
    ModelPart part{held.begin,
                   held.end,
                   s.q_heads.size(),
                   s.kv_heads.size(),
                   s.intermediate.size(),
                   s.vocab.size(),
                   stage == 0,
                   stage + 1 == stages->size()};
    const HeldElements e = CountHeld(c, part);
    p.weight_bytes = std::max(p.weight_bytes, e.unit * bytes_per_weight + 2 * e.plain);
    layer_unit = std::max(layer_unit, e.layer_unit);
    largest_matrix = std::max(largest_matrix, e.largest_layer_matrix);
    layers = std::max(layers, held.size());
  }
  p.scratch_bytes = o.codec == WeightCodec::kDf11  ? 2 * 2 * layer_unit
                    : o.codec == WeightCodec::kEw4 ? 2 * largest_matrix
                                                   : 0;
  // Activations of one step's tokens, plus logits of the rows that sample (one per sequence).
  const double h = static_cast<double>(c.hidden_size), hd = static_cast<double>(c.head_dim);
  const double heads = static_cast<double>(s.q_heads.size());
  const double kv = static_cast<double>(s.kv_heads.size());
  const double inter = static_cast<double>(s.intermediate.size());
  const double vocab = static_cast<double>(s.vocab.size());
  const double rows = static_cast<double>(std::min<int64_t>(o.workspace_tokens, 256));
  p.workspace_bytes = static_cast<double>(o.workspace_tokens) * 4 *
                          (3 * h + 2 * heads * hd + 2 * kv * hd + 2 * inter) +
                      rows * 4 * vocab;
  const double row_bytes = static_cast<double>(KvBytesPerToken(1, s.kv_heads.size() * c.head_dim));
  PlanKv(row_bytes, layers, o, &p);
  PlanWindowSaving(c, *stages, row_bytes, o, &p);
  // It fits when the cache holds at least one sequence of the whole context.
  p.fits = p.max_sequences >= 1;
  return p;
}

std::string MemoryPlan::Format(const MemoryPlanOptions& o) const {
  char buf[2048];
  std::snprintf(
      buf, sizeof(buf),
      "model: %.1f B parameters, %s weights, tp %d x pp %d (%lld GPUs)\n"
      "per GPU (worst rank), of %.1f GiB x %.2f = %.1f GB usable:\n"
      "  weights            %8.2f GB\n"
      "  decode scratch     %8.2f GB  (%s)\n"
      "  step workspace     %8.2f GB  (%lld tokens of activations)\n"
      "  KV cache           %8.2f GB  = %lld tokens (%lld blocks of %lld; %.1f KB per token, "
      "BF16)\n"
      "  concurrency        %8lld %s of %lld tokens\n"
      "verdict: %s\n",
      parameters / 1e9, CodecLabel(o.codec), o.tp, o.pp, static_cast<long long>(o.tp) * o.pp,
      o.gpu_memory_bytes / (1 << 30), o.memory_fraction, budget_bytes / 1e9, weight_bytes / 1e9,
      scratch_bytes / 1e9,
      o.codec == WeightCodec::kDf11  ? "two BF16 buffers of the largest layer slice"
      : o.codec == WeightCodec::kEw4 ? "BF16 of the largest matrix, for steps of > 256 tokens"
                                     : "none",
      workspace_bytes / 1e9, static_cast<long long>(o.workspace_tokens),
      std::max(0.0, kv_bytes) / 1e9, static_cast<long long>(kv_tokens),
      static_cast<long long>(kv_blocks), static_cast<long long>(o.kv_block_tokens),
      kv_bytes_per_token / 1e3, static_cast<long long>(max_sequences),
      SequencesNoun(max_sequences), static_cast<long long>(context),
      fits            ? "FITS"
      : kv_tokens > 0 ? "DOES NOT FIT (the KV cache holds less than one sequence; "
                        "lower --context or use more GPUs)"
                      : "DOES NOT FIT");
  // The window saving goes before the verdict.
  std::string out = buf;
  const size_t verdict = out.rfind("verdict: ");
  return out.insert(verdict, WindowSaving(*this));
}

namespace {

// The device pool of *p (kv_bytes set): without sliding-window layers kv_blocks blocks of every
// local layer; with them the largest budget whose groups (the engine's split, KvGroupsOfBudget)
// the local layers keep in kv_bytes, and the sequences those groups hold.
void PlanDeviceKvGroups(const DeviceMemoryInputs& in, DeviceMemoryPlan* p) {
  const int64_t bt = in.kv_block_tokens;
  const int64_t layers = std::max<int64_t>(1, static_cast<int64_t>(in.local_windows.size()));
  const double row_bytes = static_cast<double>(in.kv_bytes_per_token) / static_cast<double>(layers);
  const int64_t layer_blocks = std::min<int64_t>(
      KvBlocksIn(static_cast<double>(p->kv_bytes), row_bytes, bt), int64_t{INT32_MAX} * layers);
  p->kv_blocks = std::min<int64_t>(
      INT32_MAX, KvBudgetBlocksIn(in.model_windows, in.local_windows, layer_blocks, bt, in.context,
                                  in.step_tokens));
  p->kv_tokens = p->kv_blocks * bt;
  p->groups = {p->kv_blocks, 0};
  int64_t window = 0;
  for (int64_t w : in.model_windows) window = std::max(window, w);
  if (window > 0 && p->kv_blocks > 0) {
    p->groups = KvGroupsOfBudget(in.model_windows, p->kv_tokens, bt, in.context, in.step_tokens);
  }
  p->max_sequences =
      in.context > 0 ? KvSequencesOf(p->groups, window, bt, in.context, in.step_tokens) : 0;
}

}  // namespace

StatusOr<DeviceMemoryPlan> PlanDeviceMemory(const DeviceMemoryInputs& in) {
  if (in.memory_fraction <= 0 || in.memory_fraction > 1) {
    return Status::InvalidArgument("--gpu-memory-fraction must be in (0, 1], got " +
                                   std::to_string(in.memory_fraction));
  }
  DeviceMemoryPlan p;
  p.in = in;
  p.budget_bytes =
      static_cast<int64_t>(in.memory_fraction * static_cast<double>(in.device_total_bytes));
  p.fixed_bytes = in.compressed_bytes + in.plain_bytes + in.small_bytes + in.layer_scratch_bytes +
                  in.head_scratch_bytes + in.activation_bytes + in.sampling_bytes;
  if (in.kv_block_tokens < 1) {
    return Status::InvalidArgument("--kv-block-tokens must be >= 1, got " +
                                   std::to_string(in.kv_block_tokens));
  }
  p.kv_bytes = p.budget_bytes - p.fixed_bytes;
  const int64_t free_for_kv = in.device_free_bytes - in.sampling_bytes - kDeviceMemoryMarginBytes;
  const bool free_limits = in.device_free_bytes > 0 && free_for_kv < p.kv_bytes;
  if (free_limits) p.kv_bytes = free_for_kv;
  PlanDeviceKvGroups(in, &p);
  if (p.kv_blocks < 1 && free_limits) {
    return Status::FailedPrecondition(
        "no room for the KV cache on the GPU: " + std::to_string(in.device_free_bytes / 1000000) +
        " MB of it are free once the weights and buffers are allocated (other processes or "
        "backends hold the rest), less " + std::to_string(in.sampling_bytes / 1000000) +
        " MB of sampling workspace and a " + std::to_string(kDeviceMemoryMarginBytes >> 20) +
        " MiB margin");
  }
  if (p.kv_blocks < 1) {
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "the model does not fit on the GPU: weights %.3f GB + layer scratch %.3f GB + "
                  "LM-head scratch %.3f GB + activations %.3f GB + sampling %.3f GB = %.3f GB "
                  "exceed %.2f x %.3f GB = %.3f GB (raise --gpu-memory-fraction, use more GPUs "
                  "(tp/pp), or a DF11 model)",
                  (in.compressed_bytes + in.plain_bytes + in.small_bytes) / 1e9,
                  in.layer_scratch_bytes / 1e9, in.head_scratch_bytes / 1e9,
                  in.activation_bytes / 1e9, in.sampling_bytes / 1e9, p.fixed_bytes / 1e9,
                  in.memory_fraction, in.device_total_bytes / 1e9, p.budget_bytes / 1e9);
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
      "  KV cache           %10.3f MB  = %lld tokens (%lld blocks of %lld; %.1f KB per token, "
      "BF16)\n"
      "  concurrency        %10lld %s of %lld tokens\n",
      in.device_total_bytes / 1e9, in.memory_fraction, budget_bytes / 1e9,
      (in.compressed_bytes + in.plain_bytes + in.small_bytes) / 1e6, in.compressed_bytes / 1e6,
      in.plain_bytes / 1e6, in.small_bytes / 1e6, in.layer_scratch_bytes / 1e6,
      in.head_scratch_bytes / 1e6, in.activation_bytes / 1e6, in.sampling_bytes / 1e6,
      weight_memory_bytes() / 1e6, kv_bytes / 1e6, static_cast<long long>(kv_tokens),
      static_cast<long long>(kv_blocks), static_cast<long long>(in.kv_block_tokens),
      in.kv_bytes_per_token / 1e3, static_cast<long long>(max_sequences),
      SequencesNoun(max_sequences), static_cast<long long>(in.context));
  if (groups.sliding == 0) return buf;
  char line[256];
  std::snprintf(line, sizeof(line),
                "  KV block groups    %lld blocks of each full-attention layer, %lld of each "
                "sliding-window layer (those before the window released)\n",
                static_cast<long long>(groups.full), static_cast<long long>(groups.sliding));
  return buf + std::string(line);
}

}  // namespace df11
