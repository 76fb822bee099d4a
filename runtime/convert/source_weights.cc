// SPDX-License-Identifier: Apache-2.0
#include "runtime/convert/source_weights.h"

#include <xxhash.h>

#include <cstdio>

#include "kernels/common/parallel_for.h"
#include "runtime/convert/model_files.h"
#include "runtime/core/file_util.h"
#include "runtime/formats/df11_model_dir.h"
#include "runtime/formats/weight_set.h"

namespace df11 {

StatusOr<std::unique_ptr<SourceWeights>> SourceWeights::Open(const std::string& dir,
                                                             int threads) {
  auto s = std::unique_ptr<SourceWeights>(new SourceWeights);
  s->dir_ = dir;
  s->threads_ = threads;
  DF11_ASSIGN_OR_RETURN(s->config_json_, ReadConfigJson(dir));
  DF11_ASSIGN_OR_RETURN(s->config_bytes_, ReadFileToString(JoinPath(dir, "config.json")));
  if (s->config_json_.contains("dfloat11_config")) {
    DF11_ASSIGN_OR_RETURN(Df11Model m, OpenDf11Model(dir));
    s->df11_.emplace(std::move(m));
    for (const std::string& unit : s->df11_->units) {
      DF11_ASSIGN_OR_RETURN(auto names, UnitWeightNames(s->df11_->df11.patterns, unit));
      for (const std::string& w : names) s->unit_of_[w] = unit;
    }
    s->config_json_.erase("dfloat11_config");
  } else {
    DF11_ASSIGN_OR_RETURN(Checkpoint c, Checkpoint::Open(dir));
    s->bf16_.emplace(std::move(c));
  }
  // Sharding serves the model: a config this runtime does not compute is refused here (DF11
  // sources had their weight set checked by OpenDf11Model).
  DF11_ASSIGN_OR_RETURN(s->config_, ParseModelConfig(nlohmann::json::parse(s->config_json_.dump()),
                                                     dir + "/config.json"));
  if (s->bf16_) DF11_RETURN_IF_ERROR(CheckModelWeights(s->config_, *s->bf16_, {}, dir));
  s->hashes_.assign(s->checkpoint().tensor_names().size(), std::nullopt);
  return s;
}

bool SourceWeights::Has(const std::string& name) const {
  return unit_of_.count(name) != 0 || checkpoint().Find(name) != nullptr;
}

StatusOr<std::span<const uint16_t>> SourceWeights::Get(const std::string& name,
                                                       const std::vector<int64_t>& shape) {
  const TensorInfo* t = checkpoint().Find(name);
  auto unit = unit_of_.find(name);
  // A unit the compressor kept in BF16 leaves its weights as stored tensors.
  if (t == nullptr && unit != unit_of_.end()) {
    if (decoded_unit_ != unit->second) DF11_RETURN_IF_ERROR(Decode(unit->second));
    const UnitWeight& w = decoded_weights_.at(name);
    DF11_RETURN_IF_ERROR(CheckShape(name, w.shape, shape));
    return std::span<const uint16_t>(decoded_.data() + w.begin, w.end - w.begin);
  }
  if (t == nullptr) return Status::NotFound("tensor " + name + " is missing from " + dir_);
  DF11_RETURN_IF_ERROR(CheckShape(name, t->shape, shape));
  return Bf16Words(*t, &copies_.emplace_back());
}

void SourceWeights::Release() {
  decoded_ = {};
  decoded_unit_.clear();
  decoded_weights_.clear();
  copies_.clear();
}

void SourceWeights::HashTensors(const std::vector<std::string>& prefixes) {
  const auto& names = checkpoint().tensor_names();
  std::vector<size_t> todo;
  for (size_t i = 0; i < names.size(); ++i) {
    for (const std::string& p : prefixes) {
      if (!hashes_[i] && names[i].starts_with(p)) {
        todo.push_back(i);
        break;
      }
    }
  }
  ParallelFor(static_cast<int64_t>(todo.size()), threads_, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const auto bytes = checkpoint().Find(names[todo[k]])->bytes;
      hashes_[todo[k]] = XXH64(bytes.data(), bytes.size(), 0);
    }
  });
}

std::string SourceWeights::SourceHash() {
  HashTensors({""});
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  XXH64_update(state, config_bytes_.data(), config_bytes_.size());
  const auto& names = checkpoint().tensor_names();
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorInfo* t = checkpoint().Find(names[i]);
    const std::string dtype(DTypeName(t->dtype));
    XXH64_update(state, names[i].c_str(), names[i].size() + 1);
    XXH64_update(state, dtype.c_str(), dtype.size() + 1);
    for (int64_t d : t->shape) XXH64_update(state, &d, sizeof(d));  // little-endian hosts
    const uint64_t h = *hashes_[i];
    XXH64_update(state, &h, sizeof(h));
  }
  const uint64_t h = XXH64_digest(state);
  XXH64_freeState(state);
  return Hex64(h);
}

Status SourceWeights::CheckShape(const std::string& name, const std::vector<int64_t>& actual,
                                 const std::vector<int64_t>& expected) const {
  if (actual == expected) return Status::Ok();
  return Status::InvalidArgument(dir_ + ": tensor " + name + " has shape " +
                                 nlohmann::json(actual).dump() + "; config.json implies " +
                                 nlohmann::json(expected).dump());
}

Status SourceWeights::Decode(const std::string& unit_name) {
  Release();
  DF11_ASSIGN_OR_RETURN(Df11Unit unit, LoadDf11Unit(df11_->checkpoint, unit_name));
  DF11_ASSIGN_OR_RETURN(std::vector<UnitWeight> weights, ResolveUnitWeights(*df11_, unit));
  decoded_.resize(unit.n_elements());
  DF11_RETURN_IF_ERROR(DecodeDf11Unit(unit, 0, unit.n_elements(), threads_, decoded_.data()));
  for (UnitWeight& w : weights) decoded_weights_[w.name] = std::move(w);
  decoded_unit_ = unit_name;
  return Status::Ok();
}

}  // namespace df11
