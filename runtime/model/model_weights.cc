// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/model_weights.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "runtime/formats/df11_model_check.h"
#include "runtime/formats/df11_model_dir.h"
#include "runtime/formats/ew4_tensors.h"
#include "runtime/formats/weight_set.h"

namespace df11 {
namespace {

const TensorInfo* FindTensor(const ModelWeights& w, const std::string& name) {
  for (const Checkpoint& c : w.checkpoints) {
    if (const TensorInfo* t = c.Find(name)) return t;
  }
  return nullptr;
}

}  // namespace

int64_t ModelWeights::CompressedBytes() const {
  int64_t n = 0;
  for (const auto& u : units) n += u->stored_bytes();
  return n;
}

int64_t ModelWeights::WeightBytes() const {
  int64_t n = CompressedBytes();
  n += embed.own_bytes() + (lm_head.SameStorage(embed) ? 0 : lm_head.own_bytes());
  n += 2 * final_norm.size();
  for (const LayerWeights& l : layers) {
    for (const Weight* m : l.Matrices()) n += m->own_bytes();
    for (const Vector* v : l.Vectors()) n += 2 * v->size();
  }
  return n;
}

std::vector<const Weight*> ModelWeights::AllMatrices() const {
  std::vector<const Weight*> all = {&embed, &lm_head};
  for (const LayerWeights& l : layers) {
    for (const Weight* m : l.Matrices()) all.push_back(m);
  }
  return all;
}

std::vector<Weight*> ModelWeights::AllMatrices() {
  std::vector<Weight*> all = {&embed, &lm_head};
  for (LayerWeights& l : layers) {
    for (Weight* m : l.Matrices()) all.push_back(m);
  }
  return all;
}

std::string ModelWeights::CodecSummary() const {
  std::map<WeightCodec, int64_t> elements;
  for (const Weight* m : AllMatrices()) {
    if (m->numel() > 0) elements[m->codec] += m->numel();
  }
  std::vector<std::pair<int64_t, WeightCodec>> order;
  for (const auto& [codec, n] : elements) order.push_back({-n, codec});
  std::sort(order.begin(), order.end());
  std::string out;
  for (const auto& [n, codec] : order) out += (out.empty() ? "" : "+") + std::string(WeightCodecName(codec));
  return out.empty() ? "bf16" : out;
}

int64_t ModelWeights::MaxLayerScratch() const {
  int64_t n = 0;
  for (const LayerWeights& l : layers) n = std::max(n, l.ScratchElements());
  return n;
}

void ModelWeights::Finish() {
  matrix_count = 0;
  vector_count = 0;
  embed.id = matrix_count++;
  lm_head.id = matrix_count++;
  final_norm.id = vector_count++;
  std::set<const Df11Unit*> used = {embed.unit, lm_head.unit};
  for (LayerWeights& l : layers) {
    for (Weight* m : l.Matrices()) {
      m->id = matrix_count++;
      used.insert(m->unit);
    }
    for (Vector* v : l.Vectors()) v->id = vector_count++;
  }
  // Units no matrix refers to (a tied model's stored lm_head copy) are neither counted nor
  // uploaded.
  std::erase_if(units, [&](const std::unique_ptr<Df11Unit>& u) { return !used.count(u.get()); });
}

StatusOr<WeightResolver> WeightResolver::Create(ModelWeights* weights,
                                                const nlohmann::ordered_json& dfloat11_config) {
  WeightResolver r;
  r.weights_ = weights;
  if (dfloat11_config.is_null()) return r;
  DF11_ASSIGN_OR_RETURN(Df11Config df11, ParseDf11Config(dfloat11_config, "config.json"));
  for (const Checkpoint& ckpt : weights->checkpoints) {
    for (const std::string& name : FindDf11Units(ckpt)) {
      DF11_ASSIGN_OR_RETURN(Df11Unit unit, LoadDf11Unit(ckpt, name));
      DF11_ASSIGN_OR_RETURN(std::vector<std::string> names, UnitWeightNames(df11.patterns, name));
      if (names.size() != unit.split_positions.size() + 1) {
        return Status::Corruption("DF11 unit " + name + ": its pattern lists " +
                                  std::to_string(names.size()) + " weights but split_positions "
                                  "describes " + std::to_string(unit.split_positions.size() + 1));
      }
      weights->units.push_back(std::make_unique<Df11Unit>(std::move(unit)));
      const Df11Unit* u = weights->units.back().get();
      for (size_t i = 0; i < names.size(); ++i) {
        auto [b, e] = u->MatrixRange(i);
        r.in_units_[names[i]] = {u, b, e};
      }
    }
  }
  return r;
}

StatusOr<Weight> WeightResolver::Matrix(const std::string& name, int64_t rows, int64_t cols) {
  Weight m;
  m.rows = rows;
  m.cols = cols;
  for (const Checkpoint& ckpt : weights_->checkpoints) {
    if (!HasEw4Weight(ckpt, name)) continue;
    DF11_ASSIGN_OR_RETURN(m.ew4, LoadEw4Weight(ckpt, name, &weights_->realigned32));
    if (m.ew4.rows != rows || m.ew4.cols != cols) {
      return Status::InvalidArgument("weight " + name + " is ew4 [" + std::to_string(m.ew4.rows) +
                                     ", " + std::to_string(m.ew4.cols) +
                                     "]; the model's config implies [" + std::to_string(rows) +
                                     ", " + std::to_string(cols) + "]");
    }
    m.codec = WeightCodec::kEw4;
    return m;
  }
  auto it = in_units_.find(name);
  if (it != in_units_.end()) {
    if (it->second.end - it->second.begin != rows * cols) {
      return Status::InvalidArgument("weight " + name + " holds " +
                                     std::to_string(it->second.end - it->second.begin) +
                                     " elements in DF11 unit " + it->second.unit->name +
                                     "; the model's config implies [" + std::to_string(rows) + ", " +
                                     std::to_string(cols) + "]");
    }
    m.codec = WeightCodec::kDf11;
    m.unit = it->second.unit;
    m.begin = it->second.begin;
    return m;
  }
  const TensorInfo* t = FindTensor(*weights_, name);
  if (t == nullptr) return Status::NotFound("weight " + name + " is missing from the model");
  if (t->dtype != DType::kBF16 || t->shape != std::vector<int64_t>{rows, cols}) {
    return Status::InvalidArgument("weight " + name + " is " + std::string(DTypeName(t->dtype)) +
                                   " " + ShapeText(t->shape) + "; the model's config implies BF16 [" +
                                   std::to_string(rows) + ", " + std::to_string(cols) + "]");
  }
  if (reinterpret_cast<uintptr_t>(t->bytes.data()) % 2 == 0) {
    m.bf16 = reinterpret_cast<const uint16_t*>(t->bytes.data());
  } else {
    auto& copy = weights_->realigned.emplace_back(t->numel);
    std::memcpy(copy.data(), t->bytes.data(), t->bytes.size());
    m.bf16 = copy.data();
  }
  return m;
}

StatusOr<Vector> WeightResolver::Small(const std::string& name, int64_t numel) {
  const TensorInfo* t = FindTensor(*weights_, name);
  if (t == nullptr) return Status::NotFound("weight " + name + " is missing from the model");
  if (t->dtype != DType::kBF16 || t->numel != numel) {
    return Status::InvalidArgument("weight " + name + " is " + std::string(DTypeName(t->dtype)) +
                                   " " + ShapeText(t->shape) + "; expected BF16 with " +
                                   std::to_string(numel) + " elements");
  }
  Vector v;
  v.values.resize(static_cast<size_t>(numel));
  std::memcpy(v.values.data(), t->bytes.data(), t->bytes.size());
  return v;
}

StatusOr<LayerWeights> WeightResolver::Layer(const ModelConfig& c, const ModelPart& part,
                                             int64_t layer) {
  const ArchitectureTensors& t = TensorsOf(c.arch);
  LayerWeights l;
  for (const TensorRow& row : t.layer) {
    if (!Present(row, c)) continue;
    const std::string name = LayerTensorName(t, layer, row);
    const std::vector<int64_t> shape = LocalShape(row, c, part);
    if (row.matrix != nullptr) {
      DF11_ASSIGN_OR_RETURN(l.*row.matrix, Matrix(name, shape[0], shape[1]));
    } else {
      DF11_ASSIGN_OR_RETURN(l.*row.vector, Small(name, shape[0]));
    }
  }
  return l;
}

Status WeightResolver::Resolve(const ModelPart& part) {
  ModelWeights& w = *weights_;
  const ModelConfig& c = w.config;
  const ArchitectureTensors& t = TensorsOf(c.arch);
  auto matrix = [&](const TensorRow& row) {
    const std::vector<int64_t> shape = LocalShape(row, c, part);
    return Matrix(std::string(row.name), shape[0], shape[1]);
  };
  if (part.embedding) {
    DF11_ASSIGN_OR_RETURN(w.embed, matrix(t.embedding));
  }
  const int64_t end = part.layer_end < 0 ? c.num_hidden_layers : part.layer_end;
  for (int64_t i = part.layer_begin; i < end; ++i) {
    DF11_ASSIGN_OR_RETURN(LayerWeights l, Layer(c, part, i));
    w.layers.push_back(std::move(l));
  }
  if (part.head) {
    const int64_t norm = LocalShape(t.final_norm, c, part)[0];
    DF11_ASSIGN_OR_RETURN(w.final_norm, Small(std::string(t.final_norm.name), norm));
    if (c.tie_word_embeddings && part.embedding) {
      // The LM head is the embedding. A stored LM head (the reference encoder writes a copy of
      // the embedding) is not used; Finish frees its unit.
      w.lm_head = w.embed;
    } else {
      DF11_ASSIGN_OR_RETURN(w.lm_head, matrix(t.lm_head));
    }
  }
  w.Finish();
  return Status::Ok();
}

StatusOr<ModelWeights> LoadModelWeights(const std::string& dir) {
  DF11_ASSIGN_OR_RETURN(nlohmann::ordered_json raw, ReadConfigJson(dir));
  ModelWeights w;
  DF11_ASSIGN_OR_RETURN(w.config,
                        ParseModelConfig(nlohmann::json::parse(raw.dump()), dir + "/config.json"));
  DF11_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::Open(dir));
  // The weight set must be the config's before anything is read or decoded.
  const nlohmann::ordered_json df11_json = raw.value("dfloat11_config", nlohmann::ordered_json());
  std::vector<Df11Pattern> patterns;
  if (!df11_json.is_null()) {
    DF11_ASSIGN_OR_RETURN(Df11Config df11, ParseDf11Config(df11_json, dir + "/config.json"));
    patterns = std::move(df11.patterns);
  }
  if (!df11_json.is_null()) DF11_RETURN_IF_ERROR(CheckDf11ModelDir(ckpt, patterns));
  DF11_RETURN_IF_ERROR(CheckModelWeights(w.config, ckpt, patterns, dir));
  w.checkpoints.push_back(std::move(ckpt));
  DF11_ASSIGN_OR_RETURN(WeightResolver r, WeightResolver::Create(&w, df11_json));
  const ModelConfig& c = w.config;
  w.dims = {c.num_attention_heads, c.num_key_value_heads, c.intermediate_size, 0, c.vocab_size};
  DF11_RETURN_IF_ERROR(r.Resolve(ModelPart()));
  return w;
}

}  // namespace df11
