// SPDX-License-Identifier: Apache-2.0
#include "runtime/formats/weight_set.h"

#include <cstring>
#include <map>
#include <set>

#include "runtime/formats/df11_unit.h"
#include "runtime/formats/ew4_tensors.h"

namespace df11 {
namespace {

std::string FileName(const SafetensorsFile* f) {
  if (f == nullptr) return "?";
  const std::string& p = f->path();
  return p.substr(p.rfind('/') + 1);
}

// Old checkpoints carry per-layer rotary buffers; transformers drops them when loading.
bool IsIgnoredLeftover(const std::string& name) {
  return name.find("rotary_emb.inv_freq") != std::string::npos;
}

// The weights inside unit `unit` of `ckpt`.
Status AddUnitWeights(const Checkpoint& ckpt, const std::vector<Df11Pattern>& patterns,
                      const std::string& unit, std::vector<StoredWeight>* out) {
  DF11_ASSIGN_OR_RETURN(std::vector<std::string> names, UnitWeightNames(patterns, unit));
  const TensorInfo* sm = ckpt.Find(unit + ".sign_mantissa");
  if (sm == nullptr) {
    return Status::Corruption("DF11 unit " + unit + ": tensor " + unit +
                              ".sign_mantissa is missing");
  }
  std::vector<int64_t> bounds = {0};
  if (const TensorInfo* split = ckpt.Find(unit + ".split_positions")) {
    if (split->dtype != DType::kI64 || split->shape.size() != 1) {
      return Status::Corruption("DF11 unit " + unit + ": " + unit + ".split_positions is " +
                                std::string(DTypeName(split->dtype)) + " " +
                                ShapeText(split->shape) + "; expected I64 of rank 1");
    }
    for (int64_t i = 0; i < split->numel; ++i) {
      int64_t p = 0;
      std::memcpy(&p, split->bytes.data() + 8 * i, 8);
      if (p < bounds.back() || p > sm->numel) {
        return Status::Corruption("DF11 unit " + unit +
                                  ": split_positions must be non-decreasing within [0, " +
                                  std::to_string(sm->numel) + "]; found " + std::to_string(p));
      }
      bounds.push_back(p);
    }
  }
  bounds.push_back(sm->numel);
  if (names.size() != bounds.size() - 1) {
    return Status::Corruption(
        "DF11 unit " + unit + ": its pattern lists " + std::to_string(names.size()) +
        " weights but split_positions describes " + std::to_string(bounds.size() - 1));
  }
  const SafetensorsFile* file = ckpt.FileOf(unit + ".sign_mantissa");
  nlohmann::json recorded;
  if (auto it = file->metadata().find(kShapesMetadataKey); it != file->metadata().end()) {
    recorded = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  }
  for (size_t i = 0; i < names.size(); ++i) {
    StoredWeight w;
    w.name = names[i];
    w.numel = bounds[i + 1] - bounds[i];
    w.where = "DF11 unit " + unit + " (" + FileName(file) + ")";
    if (recorded.is_object() && recorded.contains(w.name) && recorded[w.name].is_array()) {
      for (const auto& d : recorded[w.name]) {
        if (!d.is_number_integer()) {
          return Status::Corruption(file->path() + ": metadata df11_shapes[" + w.name +
                                    "] must hold integers");
        }
        w.shape.push_back(d.get<int64_t>());
      }
    }
    out->push_back(std::move(w));
  }
  return Status::Ok();
}

// Where the published DF11 layout keeps `tensor`, for a missing one: " (DF11 unit U, kept in
// U_file)" when a pattern's unit holds it, " (kept in U_file)" when it belongs to a unit's module
// but is stored plainly (norms, biases), "" without patterns or for the remainder file's tensors.
std::string MissingHint(const std::vector<Df11Pattern>& patterns, const std::string& tensor) {
  std::string unit, module_file;
  for (size_t dot = tensor.find('.'); dot != std::string::npos; dot = tensor.find('.', dot + 1)) {
    const std::string module = tensor.substr(0, dot);
    auto names = UnitWeightNames(patterns, module);
    if (!names.ok()) continue;
    module_file = UnitFileName(module);
    for (const std::string& w : *names) {
      if (w == tensor) unit = module;
    }
  }
  if (!unit.empty()) return " (DF11 unit " + unit + ", kept in " + UnitFileName(unit) + ")";
  if (!module_file.empty()) return " (kept in " + module_file + ")";
  return "";
}

}  // namespace

StatusOr<std::vector<StoredWeight>> ListStoredWeights(const Checkpoint& ckpt,
                                                      const std::vector<Df11Pattern>& patterns) {
  const std::vector<std::string> units = FindDf11Units(ckpt);
  const std::set<std::string> unit_set(units.begin(), units.end());
  std::vector<StoredWeight> out;
  for (const std::string& unit : units) {
    DF11_RETURN_IF_ERROR(AddUnitWeights(ckpt, patterns, unit, &out));
  }
  for (const std::string& name : ckpt.tensor_names()) {
    const size_t dot = name.rfind('.');
    if (dot != std::string::npos && unit_set.count(name.substr(0, dot))) {
      bool field = false;
      for (const char* f : kDf11UnitFields) {
        field = field || name.compare(dot + 1, std::string::npos, f) == 0;
      }
      if (field) continue;
    }
    if (const std::string weight = Ew4WeightOfField(name); !weight.empty()) {
      // An ew4 weight: listed once, with the shape its sign_mantissa tensor gives.
      if (!name.ends_with(".ew4_sign_mantissa")) continue;
      DF11_ASSIGN_OR_RETURN(auto shape, Ew4WeightShape(ckpt, weight));
      out.push_back({weight, DType::kBF16, {shape.first, shape.second}, shape.first * shape.second,
                     "ew4 weight in " + FileName(ckpt.FileOf(name))});
      continue;
    }
    const TensorInfo* t = ckpt.Find(name);
    out.push_back({name, t->dtype, t->shape, t->numel, FileName(ckpt.FileOf(name))});
  }
  return out;
}

Status CheckWeightSet(const ModelConfig& c, const ModelPart& part,
                      const std::vector<StoredWeight>& stored, const std::string& source,
                      const std::vector<Df11Pattern>& patterns) {
  // The table's tensors: the required ones must be stored, the optional ones may be.
  std::map<std::string, std::vector<int64_t>> expected, optional;
  for (TensorSpec& t : ModelTensors(c, part)) {
    (t.required ? expected : optional)[std::move(t.name)] = std::move(t.shape);
  }
  std::vector<std::string> problems;
  std::set<std::string> seen;
  const ArchitectureTensors& table = TensorsOf(c.arch);
  for (const StoredWeight& w : stored) {
    if (IsIgnoredLeftover(w.name) || IsUnserved(table, w.name)) continue;
    auto it = expected.find(w.name);
    if (it == expected.end()) it = optional.find(w.name);
    if (it == optional.end()) {
      problems.push_back("unexpected tensor " + w.name + " in " + w.where);
      continue;
    }
    if (!seen.insert(w.name).second) {
      problems.push_back("tensor " + w.name + " is stored twice (again in " + w.where + ")");
      continue;
    }
    int64_t numel = 1;
    for (int64_t d : it->second) numel *= d;
    const bool shape_ok = w.shape.empty() ? w.numel == numel : w.shape == it->second;
    if (w.dtype != DType::kBF16 || !shape_ok) {
      problems.push_back(
          "tensor " + w.name + " in " + w.where + " is " + std::string(DTypeName(w.dtype)) + " " +
          (w.shape.empty() ? std::to_string(w.numel) + " elements" : ShapeText(w.shape)) +
          "; expected BF16 " + ShapeText(it->second));
    }
  }
  for (const auto& [name, shape] : expected) {
    if (!seen.count(name)) {
      problems.push_back("tensor " + name + " " + ShapeText(shape) + " is missing" +
                         MissingHint(patterns, name));
    }
  }
  if (problems.empty()) return Status::Ok();
  std::string text = source + ": the weights do not match config.json (" + c.architecture_name +
                     ", " + std::to_string(c.num_hidden_layers) + " layers, hidden_size " +
                     std::to_string(c.hidden_size) + (c.qk_norm ? ", q/k norms" : "") +
                     (c.attention_bias ? ", q/k/v biases" : "") +
                     (c.tie_word_embeddings ? ", tied embeddings" : "") + "): ";
  for (size_t i = 0; i < problems.size() && i < 3; ++i) text += (i ? "; " : "") + problems[i];
  if (problems.size() > 3) text += "; and " + std::to_string(problems.size() - 3) + " more";
  return Status::InvalidArgument(text);
}

Status CheckModelWeights(const ModelConfig& c, const Checkpoint& ckpt,
                         const std::vector<Df11Pattern>& patterns, const std::string& source) {
  DF11_ASSIGN_OR_RETURN(std::vector<StoredWeight> stored, ListStoredWeights(ckpt, patterns));
  return CheckWeightSet(c, ModelPart(), stored, source, patterns);
}

}  // namespace df11
