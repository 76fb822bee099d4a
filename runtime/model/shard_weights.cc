// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/shard_weights.h"

#include <tuple>

#include "runtime/core/file_util.h"
#include "runtime/core/mapped_file.h"
#include "runtime/formats/df11_model_dir.h"
#include "runtime/formats/weight_set.h"

namespace df11 {
namespace {

StatusOr<std::pair<int64_t, int64_t>> RangeField(const nlohmann::json& entry, const char* key,
                                                 const std::string& where) {
  const auto& r = entry.value(key, nlohmann::json());
  if (!r.is_array() || r.size() != 2 || !r[0].is_number_integer() || !r[1].is_number_integer() ||
      r[0].get<int64_t>() < 0 || r[1].get<int64_t>() < r[0].get<int64_t>()) {
    return Status::Corruption(where + ": \"" + key + "\" must be [begin, end] with 0 <= begin <= end");
  }
  return std::make_pair(r[0].get<int64_t>(), r[1].get<int64_t>());
}

// What the rank holds, from its manifest entry: layer, head, MLP-row and vocabulary ranges,
// checked against the config; `first` / `last`: the rank is on the first / last stage.
StatusOr<ModelPart> RankPart(const nlohmann::json& entry, const ModelConfig& c, bool first,
                             bool last, const std::string& where, int64_t* vocab_begin) {
  DF11_ASSIGN_OR_RETURN(auto layers, RangeField(entry, "layers", where));
  DF11_ASSIGN_OR_RETURN(auto q_heads, RangeField(entry, "q_heads", where));
  DF11_ASSIGN_OR_RETURN(auto kv_heads, RangeField(entry, "kv_heads", where));
  DF11_ASSIGN_OR_RETURN(auto inter, RangeField(entry, "intermediate", where));
  DF11_ASSIGN_OR_RETURN(auto vocab, RangeField(entry, "vocab", where));
  // Ranges past the config's sizes: the config does not describe these weights.
  const std::tuple<const char*, std::pair<int64_t, int64_t>, const char*, int64_t> ranges[] = {
      {"layers", layers, "num_hidden_layers", c.num_hidden_layers},
      {"q_heads", q_heads, "num_attention_heads", c.num_attention_heads},
      {"kv_heads", kv_heads, "num_key_value_heads", c.num_key_value_heads},
      {"intermediate", inter, "intermediate_size", c.intermediate_size},
      {"vocab", vocab, "vocab_size", c.vocab_size}};
  for (const auto& [key, range, field, size] : ranges) {
    if (range.second > size) {
      return Status::InvalidArgument(
          where + ": the weights do not match config.json: the rank holds " + key + " [" +
          std::to_string(range.first) + ", " + std::to_string(range.second) + ") but " + field +
          " is " + std::to_string(size));
    }
  }
  ModelPart part;
  part.layer_begin = layers.first;
  part.layer_end = layers.second;
  part.heads = q_heads.second - q_heads.first;
  part.kv_heads = kv_heads.second - kv_heads.first;
  part.intermediate = inter.second - inter.first;
  part.vocab_rows = vocab.second - vocab.first;
  part.embedding = first;
  part.head = last;
  *vocab_begin = vocab.first;
  return part;
}

}  // namespace

bool IsShardedModelDir(const std::string& dir) {
  return FileExists(JoinPath(dir, kShardManifestName));
}

StatusOr<ShardLayout> ReadShardLayout(const std::string& dir) {
  ShardLayout l;
  DF11_ASSIGN_OR_RETURN(l.manifest, ReadShardManifest(dir));
  l.tp = l.manifest["layout"]["tp"].get<int>();
  l.pp = l.manifest["layout"]["pp"].get<int>();
  if (!l.manifest.value("config", nlohmann::json()).is_object()) {
    return Status::Corruption(JoinPath(dir, kShardManifestName) +
                              ": \"config\" (the model's config.json) is missing");
  }
  return l;
}

StatusOr<ModelWeights> LoadShardWeights(const std::string& dir, const ShardLayout& layout,
                                        int rank) {
  const std::string where = JoinPath(dir, kShardManifestName) + " rank " + std::to_string(rank);
  // ReadShardLayout checked the entry's rank, plain file name, size and checksum fields.
  const nlohmann::json& entry = layout.manifest["ranks"][rank];
  const std::string file = entry["file"].get<std::string>();
  const std::string path = JoinPath(dir, file);
  if (!FileExists(path)) {
    return Status::NotFound(path + ": rank " + std::to_string(rank) + "'s shard is missing");
  }

  // The config, then the weight set the manifest says this rank holds (headers only), then the
  // file's checksum: a config this runtime does not compute or weights that do not match it are
  // refused before any weight is read.
  ModelWeights w;
  DF11_ASSIGN_OR_RETURN(w.config, ParseModelConfig(layout.manifest["config"], where + " config"));
  const int stage = layout.Stage(rank);
  int64_t vocab_begin = 0;
  DF11_ASSIGN_OR_RETURN(
      ModelPart part,
      RankPart(entry, w.config, stage == 0, stage == layout.pp - 1, where, &vocab_begin));
  DF11_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::OpenFile(dir, file));
  Df11Config df11;
  DF11_ASSIGN_OR_RETURN(df11.patterns, DefaultPatterns(w.config.arch));
  DF11_ASSIGN_OR_RETURN(std::vector<StoredWeight> stored, ListStoredWeights(ckpt, df11.patterns));
  DF11_RETURN_IF_ERROR(CheckWeightSet(w.config, part, stored, path));
  DF11_RETURN_IF_ERROR(VerifyShardFile(layout.manifest, rank, dir));
  w.checkpoints.push_back(std::move(ckpt));
  DF11_ASSIGN_OR_RETURN(WeightResolver r, WeightResolver::Create(&w, Df11ConfigToJson(df11)));
  w.dims = {part.heads, part.kv_heads, part.intermediate, vocab_begin, part.vocab_rows};
  w.first_layer = part.layer_begin;
  DF11_RETURN_IF_ERROR(r.Resolve(part));
  return w;
}

}  // namespace df11
