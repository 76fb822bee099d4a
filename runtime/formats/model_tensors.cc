// SPDX-License-Identifier: Apache-2.0
// The tensor tables (one per module tree; Llama, Qwen2, Qwen3 and Mistral share theirs, their
// differences being the config switches of the Presence column; Gemma 3's text model has its
// own, kept under "language_model." by Gemma3ForConditionalGeneration) and the views every reader
// takes of them.
#include "runtime/formats/model_tensors.h"

#include <charconv>
#include <optional>

namespace df11 {
namespace {

using enum Dim;
using enum Split;
using enum UnitOf;
using enum Presence;
using enum TensorKind;

using L = LayerWeights;

// A row of each kind; a layer row names its LayerWeights field.
constexpr TensorRow Matrix(std::string_view name, Dim rows, Dim cols, Split split, UnitOf unit,
                           Presence when, Weight L::*field = nullptr) {
  return {name, kMatrix, rows, cols, split, unit, when, field, nullptr};
}
constexpr TensorRow Bias(std::string_view name, Dim rows, Split split, Presence when,
                         Vector L::*field) {
  return {name, kBias, rows, kNone, split, kPlain, when, nullptr, field};
}
constexpr TensorRow Norm(std::string_view name, Dim rows, Presence when,
                         Vector L::*field = nullptr) {
  return {name, kNorm, rows, kNone, kReplicated, kPlain, when, nullptr, field};
}

// transformers' LlamaDecoderLayer, Qwen2DecoderLayer, Qwen3DecoderLayer, MistralDecoderLayer.
// The o_proj bias is replicated: only the tensor-parallel leader adds it (LayerContext).
// clang-format off
constexpr TensorRow kDecoderLayer[] = {
  // Matrix(name, rows, cols, split, unit, when, field); Bias(name, rows, split, when, field);
  // Norm(name, rows, when, field)
  Matrix("self_attn.q_proj.weight",    kQ, kHidden, kRows, kLayer, kAlways, &L::q),
  Bias(  "self_attn.q_proj.bias",      kQ, kRows, kAttentionBias, &L::q_bias),
  Matrix("self_attn.k_proj.weight",    kKv, kHidden, kRows, kLayer, kAlways, &L::k),
  Bias(  "self_attn.k_proj.bias",      kKv, kRows, kAttentionBias, &L::k_bias),
  Matrix("self_attn.v_proj.weight",    kKv, kHidden, kRows, kLayer, kAlways, &L::v),
  Bias(  "self_attn.v_proj.bias",      kKv, kRows, kAttentionBias, &L::v_bias),
  Matrix("self_attn.o_proj.weight",    kHidden, kQ, kColumns, kLayer, kAlways, &L::o),
  Bias(  "self_attn.o_proj.bias",      kHidden, kReplicated, kOutputBias, &L::o_bias),
  Norm(  "self_attn.q_norm.weight",    kHeadDim, kQkNorm, &L::q_norm),
  Norm(  "self_attn.k_norm.weight",    kHeadDim, kQkNorm, &L::k_norm),
  Matrix("mlp.gate_proj.weight",       kIntermediate, kHidden, kRows, kLayer, kAlways, &L::gate),
  Matrix("mlp.up_proj.weight",         kIntermediate, kHidden, kRows, kLayer, kAlways, &L::up),
  Matrix("mlp.down_proj.weight",       kHidden, kIntermediate, kColumns, kLayer, kAlways, &L::down),
  Norm(  "input_layernorm.weight",     kHidden, kAlways, &L::input_norm),
  Norm(  "post_attention_layernorm.weight", kHidden, kAlways, &L::mlp_norm),
};

constexpr ArchitectureTensors kDecoder = {
  .layer_prefix = "model.layers.",
  .embedding  = Matrix("model.embed_tokens.weight", kVocab, kHidden, kRows, kEmbedding, kAlways),
  .layer      = kDecoderLayer,
  .final_norm = Norm(  "model.norm.weight",         kHidden, kAlways),
  .lm_head    = Matrix("lm_head.weight",            kVocab, kHidden, kRows, kLmHead, kUntiedHead),
};

// transformers' Gemma3DecoderLayer: four norms, its post_attention_layernorm on the attention
// output (not before the MLP, which has pre_feedforward_layernorm).
constexpr TensorRow kGemma3Layer[] = {
  Matrix("self_attn.q_proj.weight",    kQ, kHidden, kRows, kLayer, kAlways, &L::q),
  Bias(  "self_attn.q_proj.bias",      kQ, kRows, kAttentionBias, &L::q_bias),
  Matrix("self_attn.k_proj.weight",    kKv, kHidden, kRows, kLayer, kAlways, &L::k),
  Bias(  "self_attn.k_proj.bias",      kKv, kRows, kAttentionBias, &L::k_bias),
  Matrix("self_attn.v_proj.weight",    kKv, kHidden, kRows, kLayer, kAlways, &L::v),
  Bias(  "self_attn.v_proj.bias",      kKv, kRows, kAttentionBias, &L::v_bias),
  Matrix("self_attn.o_proj.weight",    kHidden, kQ, kColumns, kLayer, kAlways, &L::o),
  Bias(  "self_attn.o_proj.bias",      kHidden, kReplicated, kOutputBias, &L::o_bias),
  Norm(  "self_attn.q_norm.weight",    kHeadDim, kQkNorm, &L::q_norm),
  Norm(  "self_attn.k_norm.weight",    kHeadDim, kQkNorm, &L::k_norm),
  Matrix("mlp.gate_proj.weight",       kIntermediate, kHidden, kRows, kLayer, kAlways, &L::gate),
  Matrix("mlp.up_proj.weight",         kIntermediate, kHidden, kRows, kLayer, kAlways, &L::up),
  Matrix("mlp.down_proj.weight",       kHidden, kIntermediate, kColumns, kLayer, kAlways, &L::down),
  Norm(  "input_layernorm.weight",     kHidden, kAlways, &L::input_norm),
  Norm(  "post_attention_layernorm.weight", kHidden, kAlways, &L::attention_out_norm),
  Norm(  "pre_feedforward_layernorm.weight", kHidden, kAlways, &L::mlp_norm),
  Norm(  "post_feedforward_layernorm.weight", kHidden, kAlways, &L::mlp_out_norm),
};

// Gemma3ForCausalLM (text-only checkpoints such as gemma-3-1b).
constexpr ArchitectureTensors kGemma3 = {
  .layer_prefix = "model.layers.",
  .embedding  = Matrix("model.embed_tokens.weight", kVocab, kHidden, kRows, kEmbedding, kAlways),
  .layer      = kGemma3Layer,
  .final_norm = Norm(  "model.norm.weight",         kHidden, kAlways),
  .lm_head    = Matrix("lm_head.weight",            kVocab, kHidden, kRows, kLmHead, kUntiedHead),
};

// Gemma3ForConditionalGeneration as its checkpoints (and transformers' save_pretrained) name it:
// the language model under "language_model.", the vision tower and its projector beside it. The
// published DF11 releases code the layers only: the embedding and a stored LM head stay BF16.
constexpr std::string_view kGemma3VisionModules[] = {"vision_tower", "multi_modal_projector"};
constexpr ArchitectureTensors kGemma3Multimodal = {
  .layer_prefix = "language_model.model.layers.",
  .embedding  = Matrix("language_model.model.embed_tokens.weight", kVocab, kHidden, kRows, kPlain,
                       kAlways),
  .layer      = kGemma3Layer,
  .final_norm = Norm(  "language_model.model.norm.weight", kHidden, kAlways),
  .lm_head    = Matrix("language_model.lm_head.weight", kVocab, kHidden, kRows, kPlain,
                       kUntiedHead),
  .unserved_modules = kGemma3VisionModules,
};
// clang-format on

std::string_view WithoutWeightSuffix(std::string_view name) {
  constexpr std::string_view kSuffix = ".weight";
  return name.ends_with(kSuffix) ? name.substr(0, name.size() - kSuffix.size()) : name;
}

// The layer index and the rest of `path` when it is "<prefix><i>.<rest>" with i in [0, layers).
std::optional<std::pair<int64_t, std::string_view>> SplitLayerPath(
    const ArchitectureTensors& t, std::string_view path, int64_t layers) {
  if (!path.starts_with(t.layer_prefix)) return std::nullopt;
  path.remove_prefix(t.layer_prefix.size());
  const size_t dot = path.find('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;
  const std::string_view digits = path.substr(0, dot);
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;  // "03" is not a module name
  int64_t layer = -1;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), layer);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  if (layer < 0 || layer >= layers) return std::nullopt;
  return std::make_pair(layer, path.substr(dot + 1));
}

}  // namespace

const ArchitectureTensors& TensorsOf(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama:
    case Architecture::kQwen2:
    case Architecture::kQwen3:
    case Architecture::kMistral:
      return kDecoder;
    case Architecture::kGemma3:
      return kGemma3;
    case Architecture::kGemma3Multimodal:
      return kGemma3Multimodal;
  }
  return kDecoder;
}

bool IsUnserved(const ArchitectureTensors& t, std::string_view name) {
  for (std::string_view module : t.unserved_modules) {
    if (name.size() > module.size() && name.starts_with(module) && name[module.size()] == '.') {
      return true;
    }
  }
  return false;
}

bool Present(const TensorRow& row, const ModelConfig& c) {
  switch (row.presence) {
    case kAlways:
      return true;
    case kAttentionBias:
      return c.attention_bias;
    case kOutputBias:
      return OutputProjectionHasBias(c);
    case kQkNorm:
      return c.qk_norm;
    case kUntiedHead:
      return !c.tie_word_embeddings;
  }
  return true;
}

std::string LayerModule(const ArchitectureTensors& t, int64_t layer) {
  return std::string(t.layer_prefix) + std::to_string(layer);
}

std::string LayerTensorName(const ArchitectureTensors& t, int64_t layer, const TensorRow& row) {
  return LayerModule(t, layer) + "." + std::string(row.name);
}

std::string_view ModuleOf(const TensorRow& row) { return WithoutWeightSuffix(row.name); }

std::string UnitName(const ArchitectureTensors& t, UnitOf unit, int64_t layer) {
  switch (unit) {
    case kEmbedding:
      return std::string(ModuleOf(t.embedding));
    case kLmHead:
      return std::string(ModuleOf(t.lm_head));
    case kLayer:
      return LayerModule(t, layer);
    case kPlain:
      break;
  }
  return "";
}

nlohmann::ordered_json DefaultPatternDict(const ArchitectureTensors& t) {
  std::vector<std::string> layer_unit;
  for (const TensorRow& row : t.layer) {
    if (row.unit == kLayer) layer_unit.emplace_back(WithoutWeightSuffix(row.name));
  }
  // Module paths as written (the reference leaves their dots unescaped), the layer index \d+.
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const TensorRow* row : {&t.lm_head, &t.embedding}) {
    if (row->unit != kPlain) j[std::string(ModuleOf(*row))] = nlohmann::ordered_json::array();
  }
  j[std::string(t.layer_prefix) + "\\d+"] = layer_unit;
  return j;
}

TiedHeadNames TiedHeadNamesOf(const ArchitectureTensors& t) {
  return {std::string(ModuleOf(t.lm_head)), std::string(t.lm_head.name),
          std::string(t.embedding.name)};
}

std::optional<TiedHeadNames> TiedHeadNamesOf(const nlohmann::ordered_json& config) {
  const auto tied = config.find("tie_word_embeddings");
  if (tied == config.end() || !tied->is_boolean() || !tied->get<bool>()) return std::nullopt;
  const auto archs = config.find("architectures");
  if (archs == config.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    return std::nullopt;
  }
  const std::optional<Architecture> arch = ArchitectureOfClass((*archs)[0].get<std::string>());
  if (!arch) return std::nullopt;
  return TiedHeadNamesOf(TensorsOf(*arch));
}

int64_t GlobalSize(Dim d, const ModelConfig& c) {
  switch (d) {
    case kNone:
      return 1;
    case kHidden:
      return c.hidden_size;
    case kHeadDim:
      return c.head_dim;
    case kQ:
      return c.num_attention_heads * c.head_dim;
    case kKv:
      return c.num_key_value_heads * c.head_dim;
    case kIntermediate:
      return c.intermediate_size;
    case kVocab:
      return c.vocab_size;
  }
  return 0;
}

int64_t LocalSize(Dim d, const ModelConfig& c, const ModelPart& part) {
  auto held = [](int64_t n, int64_t whole) { return n < 0 ? whole : n; };
  switch (d) {
    case kQ:
      return held(part.heads, c.num_attention_heads) * c.head_dim;
    case kKv:
      return held(part.kv_heads, c.num_key_value_heads) * c.head_dim;
    case kIntermediate:
      return held(part.intermediate, c.intermediate_size);
    case kVocab:
      return held(part.vocab_rows, c.vocab_size);
    default:
      return GlobalSize(d, c);
  }
}

std::vector<int64_t> GlobalShape(const TensorRow& row, const ModelConfig& c) {
  if (row.cols == kNone) return {GlobalSize(row.rows, c)};
  return {GlobalSize(row.rows, c), GlobalSize(row.cols, c)};
}

std::vector<int64_t> LocalShape(const TensorRow& row, const ModelConfig& c, const ModelPart& part) {
  std::vector<int64_t> shape = GlobalShape(row, c);
  if (row.split == kRows) shape[0] = LocalSize(row.rows, c, part);
  if (row.split == kColumns) shape[1] = LocalSize(row.cols, c, part);
  return shape;
}

Range SliceOf(const TensorRow& row, const ModelConfig& c, const TpSlices& s) {
  const Dim d = row.split == kColumns ? row.cols : row.rows;
  if (row.split == kReplicated) return {0, GlobalSize(d, c)};
  switch (d) {
    case kQ:
      return {s.q_heads.begin * c.head_dim, s.q_heads.end * c.head_dim};
    case kKv:
      return {s.kv_heads.begin * c.head_dim, s.kv_heads.end * c.head_dim};
    case kIntermediate:
      return s.intermediate;
    case kVocab:
      return s.vocab;
    default:
      return {0, GlobalSize(d, c)};
  }
}

std::vector<TensorSpec> ModelTensors(const ModelConfig& c, const ModelPart& part) {
  const ArchitectureTensors& t = TensorsOf(c.arch);
  std::vector<TensorSpec> out;
  if (part.embedding) {
    out.push_back({std::string(t.embedding.name), LocalShape(t.embedding, c, part), &t.embedding});
  }
  const int64_t end = part.layer_end < 0 ? c.num_hidden_layers : part.layer_end;
  for (int64_t i = part.layer_begin; i < end; ++i) {
    for (const TensorRow& row : t.layer) {
      if (!Present(row, c)) continue;
      out.push_back({LayerTensorName(t, i, row), LocalShape(row, c, part), &row, i});
    }
  }
  if (part.head) {
    out.push_back(
        {std::string(t.final_norm.name), LocalShape(t.final_norm, c, part), &t.final_norm});
    out.push_back({std::string(t.lm_head.name), LocalShape(t.lm_head, c, part), &t.lm_head, -1,
                   Present(t.lm_head, c)});
  }
  return out;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(const ModelConfig& c,
                                                                          const ModelPart& part) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (TensorSpec& s : ModelTensors(c, part)) {
    if (s.required) out.emplace_back(std::move(s.name), std::move(s.shape));
  }
  return out;
}

StatusOr<std::vector<int64_t>> WeightShape(const ModelConfig& c, const std::string& module_path) {
  const ArchitectureTensors& t = TensorsOf(c.arch);
  for (const TensorRow* row : {&t.embedding, &t.lm_head}) {
    if (module_path == ModuleOf(*row)) return GlobalShape(*row, c);
  }
  std::string layer_modules;
  const auto layer_path = SplitLayerPath(t, module_path, c.num_hidden_layers);
  for (const TensorRow& row : t.layer) {
    if (row.kind != kMatrix) continue;
    if (layer_path && layer_path->second == WithoutWeightSuffix(row.name)) {
      return GlobalShape(row, c);
    }
    layer_modules += (layer_modules.empty() ? "" : ", ") + std::string(ModuleOf(row));
  }
  return Status::NotFound("\"" + module_path + "\" is not a Linear or Embedding module of " +
                          c.architecture_name + " with " + std::to_string(c.num_hidden_layers) +
                          " layers (expected " + std::string(ModuleOf(t.embedding)) + ", " +
                          std::string(ModuleOf(t.lm_head)) + " or " + std::string(t.layer_prefix) +
                          "<i>.{" + layer_modules + "})");
}

StatusOr<std::vector<Range>> StageLayers(const ModelConfig& c, int pp,
                                         const std::vector<int64_t>& explicit_counts) {
  LayoutResult<std::vector<Range>> r = StageLayers(c.num_hidden_layers, pp, explicit_counts);
  if (!r.ok()) return Status::InvalidArgument(r.error());
  return *r;
}

StatusOr<TpSlices> TensorParallelSlices(const ModelConfig& c, int tp, int tp_rank) {
  const TpDims dims{c.num_attention_heads, c.num_key_value_heads, c.intermediate_size,
                    c.vocab_size};
  LayoutResult<TpSlices> r = TensorParallelSlices(dims, tp, tp_rank);
  if (!r.ok()) return Status::InvalidArgument(r.error());
  return *r;
}

}  // namespace df11
