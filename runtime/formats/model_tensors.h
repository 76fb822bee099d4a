// SPDX-License-Identifier: Apache-2.0
// The table of each architecture's parameter tensors, one row per tensor: its Hugging Face name,
// its shape from the config, how tensor parallelism splits it, which DF11 unit holds it, when it
// is present, and (for a layer's tensors) the LayerWeights field it loads into. The model loaders
// (WeightResolver::Layer is a loop over the rows), the weight-set check, `df11 compress`'s
// default unit patterns, the DF11 directory reader, `df11 shard`, the memory planner and
// `df11 make-tiny` all read it. Adding a model family is adding its rows (and, for a tensor the
// forward pass has not used before, its LayerWeights field). Matrices are (out_features,
// in_features) as torch.nn.Linear stores them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "parallel/sharding.h"
#include "runtime/core/status.h"
#include "runtime/formats/layer_weights.h"
#include "runtime/formats/model_config.h"

namespace df11 {

// A dimension's size, from the config. A rank of a tensor-parallel layout holds a slice of kQ,
// kKv, kIntermediate and kVocab when the tensor is split along that dimension.
enum class Dim : uint8_t {
  kNone,          // no such dimension (the second of a vector)
  kHidden,        // hidden_size
  kHeadDim,       // head_dim
  kQ,             // num_attention_heads * head_dim; slice: the rank's query heads
  kKv,            // num_key_value_heads * head_dim; slice: the rank's kv heads
  kIntermediate,  // intermediate_size; slice: the rank's MLP rows
  kVocab,         // vocab_size; slice: the rank's vocabulary rows
};

// How tensor parallelism (Megatron) cuts a tensor: along its first dimension (column-parallel
// Linear, the embedding, the biases of split rows), its second (row-parallel Linear), or not.
enum class Split : uint8_t { kReplicated, kRows, kColumns };

// The DF11 unit that holds a tensor in the published DF11 layout (`df11 compress` writes it,
// `df11 shard` re-encodes it per rank); kPlain: stored as plain BF16 beside the units.
enum class UnitOf : uint8_t { kPlain, kEmbedding, kLayer, kLmHead };

// When a tensor exists.
enum class Presence : uint8_t {
  kAlways,
  kAttentionBias,  // config attention_bias (q/k/v biases; Qwen2 always)
  kOutputBias,     // OutputProjectionHasBias (o_proj's bias)
  kQkNorm,         // qk_norm (Qwen3)
  kUntiedHead,     // required unless tie_word_embeddings; a tied model may store it anyway
};

enum class TensorKind : uint8_t { kMatrix, kNorm, kBias };

struct TensorRow {
  std::string_view name;  // layer rows: the name under "<layer_prefix><i>."; else the full name
  TensorKind kind;
  Dim rows;
  Dim cols;  // kNone for a vector
  Split split;
  UnitOf unit;
  Presence presence;
  // A layer tensor's field: `matrix` for kMatrix rows, `vector` for the others.
  Weight LayerWeights::*matrix = nullptr;
  Vector LayerWeights::*vector = nullptr;
};

// One architecture's tensors, in transformers' named_parameters() order: embedding, each layer's
// rows, final norm, LM head.
struct ArchitectureTensors {
  // Layer i's tensors are "<layer_prefix><i>.<row name>" and its DF11 unit "<layer_prefix><i>"
  // (multimodal checkpoints keep the language model under another prefix).
  std::string_view layer_prefix;
  TensorRow embedding;
  std::span<const TensorRow> layer;
  TensorRow final_norm;
  TensorRow lm_head;
  // Modules of the checkpoint that this runtime recognises and never loads (a multimodal
  // model's vision tower): their tensors, "<module>.<anything>", are neither checked nor read.
  std::span<const std::string_view> unserved_modules = {};
};

const ArchitectureTensors& TensorsOf(Architecture arch);

// True when the config has the tensor; for kUntiedHead, when it is required (untied).
bool Present(const TensorRow& row, const ModelConfig& c);

// True when tensor `name` belongs to one of t.unserved_modules (a vision tower's).
bool IsUnserved(const ArchitectureTensors& t, std::string_view name);

// "model.layers.3" (layer 3's module and DF11 unit) and "model.layers.3.<row.name>".
std::string LayerModule(const ArchitectureTensors& t, int64_t layer);
std::string LayerTensorName(const ArchitectureTensors& t, int64_t layer, const TensorRow& row);
// The module a model-level row's tensor belongs to: "model.embed_tokens" for
// "model.embed_tokens.weight".
std::string_view ModuleOf(const TensorRow& row);
// The DF11 unit's name: "model.embed_tokens", "model.layers.<layer>" or "lm_head".
std::string UnitName(const ArchitectureTensors& t, UnitOf unit, int64_t layer);

// The pattern_dict `df11 compress` uses for the architecture when none is given, as the
// published DF11 models have it: {"lm_head": [], "model.embed_tokens": [],
// "model.layers.\\d+": [the layer rows' modules in unit order]}, without the embedding or LM head
// where their row is stored plainly (Gemma 3's multimodal releases code only the layers).
nlohmann::ordered_json DefaultPatternDict(const ArchitectureTensors& t);

// Tied embeddings (config "tie_word_embeddings": true): the checkpoint has no LM head weight and
// the LM head is the embedding. The reference encoder still writes the LM head's DF11 unit (a copy
// of the embedding: the tied model has an lm_head module, which the pattern matches), and the
// reference loader fills the LM head only from such a unit. The names involved:
struct TiedHeadNames {
  std::string unit;       // the LM head's module and DF11 unit: "lm_head"
  std::string weight;     // "lm_head.weight"
  std::string embedding;  // the weight it is tied to: "model.embed_tokens.weight"
};
TiedHeadNames TiedHeadNamesOf(const ArchitectureTensors& t);
// For a config.json that ties its embeddings and whose "architectures"[0] has a table; nullopt
// otherwise (untied, or an architecture this runtime does not know).
std::optional<TiedHeadNames> TiedHeadNamesOf(const nlohmann::ordered_json& config);

// The share of a model one rank of a sharded layout holds (`df11 shard`); the default is the
// whole model. Counts of -1 mean "all of the config's".
struct ModelPart {
  int64_t layer_begin = 0, layer_end = -1;  // layers [begin, end)
  int64_t heads = -1;                       // query heads held
  int64_t kv_heads = -1;                    // key/value heads held
  int64_t intermediate = -1;                // MLP rows held
  int64_t vocab_rows = -1;                  // embedding / LM head rows held
  bool embedding = true;  // the embedding (a pipeline's first stage)
  bool head = true;       // the final norm and the LM head (a pipeline's last stage)
};

// The size of `d` in the config (global) and in `part` (the rank's share of a split dimension).
int64_t GlobalSize(Dim d, const ModelConfig& c);
int64_t LocalSize(Dim d, const ModelConfig& c, const ModelPart& part);
// The tensor's shape in the config, and the rank's (its split dimension at the part's size).
std::vector<int64_t> GlobalShape(const TensorRow& row, const ModelConfig& c);
std::vector<int64_t> LocalShape(const TensorRow& row, const ModelConfig& c, const ModelPart& part);
// The rows (kRows) or columns (kColumns) of the whole tensor a rank with `slices` holds; the whole
// first dimension for a replicated tensor.
Range SliceOf(const TensorRow& row, const ModelConfig& c, const TpSlices& slices);

// One tensor of a model (or of a part of it).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // local to the part
  const TensorRow* row = nullptr;
  int64_t layer = -1;     // the layer it belongs to; -1 for the embedding, final norm, LM head
  bool required = true;  // false: may be stored, need not be (a tied model's lm_head.weight)
};

// Every tensor of `part` of the model, in transformers' named_parameters() order, including the
// optional ones.
std::vector<TensorSpec> ModelTensors(const ModelConfig& c, const ModelPart& part = ModelPart());

// The required tensors of ModelTensors as (name, local shape): model.embed_tokens.weight; per
// layer self_attn.{q,k,v}_proj.{weight,bias?}, o_proj, self_attn.{q,k}_norm.weight [head_dim]
// (Qwen3), mlp.{gate,up,down}_proj.weight, {input,post_attention}_layernorm.weight [hidden];
// model.norm.weight; lm_head.weight unless tied.
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const ModelConfig& c, const ModelPart& part = ModelPart());

// Shape of the weight of a Linear or Embedding module by its path, e.g.
// "model.layers.3.self_attn.q_proj" -> {num_attention_heads * head_dim, hidden_size},
// "model.embed_tokens" and "lm_head" -> {vocab_size, hidden_size} (lm_head also when tied: the
// module exists and shares the embedding). NotFound for any other path (a layer index out of
// range, a norm, a misspelt name).
StatusOr<std::vector<int64_t>> WeightShape(const ModelConfig& c, const std::string& module_path);

// parallel/sharding.h's slices for the config's sizes; InvalidArgument naming the sizes when the
// layout does not fit the model.
StatusOr<std::vector<Range>> StageLayers(const ModelConfig& c, int pp,
                                         const std::vector<int64_t>& explicit_counts);
StatusOr<TpSlices> TensorParallelSlices(const ModelConfig& c, int tp, int tp_rank);

}  // namespace df11
