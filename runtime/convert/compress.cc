// SPDX-License-Identifier: Apache-2.0
#include "runtime/convert/compress.h"

#include <glog/logging.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "kernels/common/parallel_for.h"
#include "kernels/dfloat11/df11_encode.h"
#include "runtime/convert/model_files.h"
#include "runtime/core/file_util.h"
#include "runtime/core/progress.h"
#include "runtime/core/staged_dir.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_model_dir.h"
#include "runtime/formats/df11_unit.h"
#include "runtime/formats/model_tensors.h"
#include "runtime/formats/safetensors_writer.h"

namespace df11 {
namespace {

// Which tensors of the source go into which output file.
struct FilePlan {
  std::string file_name;
  const UnitPlan* unit = nullptr;   // null for the remainder file
  std::vector<std::string> others;  // tensors stored as they are
};

std::vector<FilePlan> PlanFiles(const std::vector<UnitPlan>& units,
                                const std::vector<std::string>& tensor_names) {
  std::set<std::string> in_units;
  for (const UnitPlan& u : units) in_units.insert(u.weights.begin(), u.weights.end());
  std::vector<FilePlan> files;
  std::map<std::string, size_t> by_unit;
  for (const UnitPlan& u : units) {
    by_unit[u.name] = files.size();
    files.push_back({UnitFileName(u.name), &u, {}});
  }
  FilePlan remainder{"model.safetensors", nullptr, {}};
  for (const std::string& t : tensor_names) {
    if (in_units.count(t)) continue;
    // A module's other tensors (norms, biases) go with its unit: the longest unit prefix.
    size_t best = files.size();
    size_t best_len = 0;
    for (size_t dot = t.find('.'); dot != std::string::npos; dot = t.find('.', dot + 1)) {
      auto it = by_unit.find(t.substr(0, dot));
      if (it != by_unit.end() && dot > best_len) {
        best = it->second;
        best_len = dot;
      }
    }
    (best < files.size() ? files[best].others : remainder.others).push_back(t);
  }
  files.push_back(std::move(remainder));
  return files;
}

std::string ShapesJson(const Checkpoint& ckpt, const UnitPlan& unit) {
  nlohmann::ordered_json shapes = nlohmann::ordered_json::object();
  for (size_t i = 0; i < unit.weights.size(); ++i) {
    shapes[unit.weights[i]] = ckpt.Find(unit.SourceOf(i))->shape;
  }
  return shapes.dump();
}

// The first weight of the unit holding an exponent DF11 cannot code, for the warning.
std::string FindUncodable(const Checkpoint& ckpt, const UnitPlan& unit) {
  for (size_t k = 0; k < unit.weights.size(); ++k) {
    const std::string& w = unit.weights[k];
    const TensorInfo* t = ckpt.Find(unit.SourceOf(k));
    std::vector<uint16_t> storage;
    auto words = Bf16Words(*t, &storage);
    if (!words.ok()) continue;
    for (size_t i = 0; i < words->size(); ++i) {
      if ((((*words)[i] >> 7) & 0xFF) >= 240) {
        return w + " element " + std::to_string(i) + " (Inf, NaN or |w| >= 2^113)";
      }
    }
  }
  return "an uncodable value";
}

// Encodes one unit and writes its file. *kept_bf16 is set when the unit stays BF16.
Status WriteUnitFile(const Checkpoint& ckpt, const FilePlan& plan, const std::string& out_dir,
                     int threads, int64_t* stored_bytes, std::string* kept_bf16) {
  const UnitPlan& unit = *plan.unit;
  std::vector<std::vector<uint16_t>> storage(unit.weights.size());
  std::vector<std::span<const uint16_t>> parts;
  for (size_t i = 0; i < unit.weights.size(); ++i) {
    DF11_ASSIGN_OR_RETURN(auto words, Bf16Words(*ckpt.Find(unit.SourceOf(i)), &storage[i]));
    parts.push_back(words);
  }
  Df11EncodedUnit encoded;
  std::string error;
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  if (Df11EncodeRef(parts, threads, &encoded, &error)) {
    DF11_RETURN_IF_ERROR(AddDf11UnitTensors(unit.name, encoded, &writer));
    writer.SetMetadata(kShapesMetadataKey, ShapesJson(ckpt, unit));
    *stored_bytes = static_cast<int64_t>(encoded.luts.size() + encoded.encoded_exponent.size() +
                                         encoded.sign_mantissa.size() +
                                         encoded.output_positions.size() + encoded.gaps.size() +
                                         8 * encoded.split_positions.size());
  } else {
    if (error.find("exponent") == std::string::npos) {
      return Status::InvalidArgument("unit " + unit.name + ": " + error);
    }
    *kept_bf16 = unit.name + " kept in BF16: " + FindUncodable(ckpt, unit);
    *stored_bytes = 0;
    for (size_t i = 0; i < unit.weights.size(); ++i) {
      const TensorInfo* t = ckpt.Find(unit.SourceOf(i));
      DF11_RETURN_IF_ERROR(writer.AddTensor(unit.weights[i], t->dtype, t->shape, t->bytes));
      *stored_bytes += static_cast<int64_t>(t->bytes.size());
    }
  }
  for (const std::string& name : plan.others) {
    const TensorInfo* t = ckpt.Find(name);
    DF11_RETURN_IF_ERROR(writer.AddTensor(name, t->dtype, t->shape, t->bytes));
  }
  return writer.Write(JoinPath(out_dir, plan.file_name));
}

}  // namespace

StatusOr<CompressSummary> CompressModel(const std::string& src_dir, const std::string& target_dir,
                                        const CompressOptions& options) {
  DF11_ASSIGN_OR_RETURN(nlohmann::ordered_json config, ReadConfigJson(src_dir));
  if (config.contains("dfloat11_config")) {
    return Status::InvalidArgument(src_dir + "/config.json already has dfloat11_config: the "
                                   "model is DF11 already (decompress it first)");
  }
  std::vector<Df11Pattern> patterns;
  if (!options.pattern_dict_json.empty()) {
    auto j = nlohmann::ordered_json::parse(options.pattern_dict_json, nullptr, false);
    if (j.is_discarded()) return Status::InvalidArgument("--pattern-dict: not valid JSON");
    DF11_ASSIGN_OR_RETURN(patterns, ParsePatternDict(j, "--pattern-dict"));
  } else {
    const auto& archs = config.value("architectures", nlohmann::ordered_json::array());
    if (!archs.is_array() || archs.empty() || !archs[0].is_string()) {
      return Status::InvalidArgument(src_dir + "/config.json: \"architectures\" must be a "
                                     "non-empty list of names (or pass --pattern-dict)");
    }
    DF11_ASSIGN_OR_RETURN(patterns, DefaultPatterns(archs[0].get<std::string>()));
  }
  const auto tied_it = config.find("tie_word_embeddings");
  const nlohmann::ordered_json tied =
      tied_it == config.end() ? nlohmann::ordered_json(false) : *tied_it;
  if (!tied.is_boolean()) {
    return Status::InvalidArgument(src_dir + "/config.json: \"tie_word_embeddings\" must be "
                                   "true or false; got " + tied.dump());
  }
  DF11_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::Open(src_dir));
  DF11_RETURN_IF_ERROR(CheckBf16WeightsAgainstConfig(src_dir, ckpt));
  const std::optional<TiedHeadNames> tied_head = TiedHeadNamesOf(config);
  DF11_ASSIGN_OR_RETURN(std::vector<UnitPlan> units,
                        PlanUnits(patterns, ckpt.tensor_names(), tied_head ? &*tied_head : nullptr));
  if (units.empty()) {
    return Status::InvalidArgument("no module of " + src_dir + " matches the pattern_dict");
  }
  for (const UnitPlan& u : units) {
    for (size_t i = 0; i < u.weights.size(); ++i) {
      const TensorInfo* t = ckpt.Find(u.SourceOf(i));
      if (t->dtype != DType::kBF16) {
        return Status::InvalidArgument("tensor " + u.SourceOf(i) + " is " +
                                       std::string(DTypeName(t->dtype)) +
                                       "; DF11 compresses BF16 models only");
      }
    }
  }
  DF11_ASSIGN_OR_RETURN(StagedDir staged, StagedDir::Create(target_dir));
  const std::string out_dir = staged.path();
  const std::vector<FilePlan> files = PlanFiles(units, ckpt.tensor_names());

  CompressSummary summary;
  for (const std::string& name : ckpt.tensor_names()) {
    summary.total_input_bytes += static_cast<int64_t>(ckpt.Find(name)->bytes.size());
  }
  const int threads = options.threads > 0 ? options.threads : DefaultThreadCount();
  const int workers = std::min<int>(2, std::max<int>(1, threads));
  const int inner = std::max(1, threads / workers);
  int64_t total_elements = 0;
  for (const UnitPlan& u : units) {
    for (size_t k = 0; k < u.weights.size(); ++k) total_elements += ckpt.Find(u.SourceOf(k))->numel;
  }
  Progress progress("compress", total_elements, "weights", options.show_progress);
  std::mutex mu;
  Status first_error;
  ParallelFor(static_cast<int64_t>(units.size()), workers, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!first_error.ok()) return;
      }
      int64_t stored = 0, elements = 0;
      std::string kept;
      Status s = WriteUnitFile(ckpt, files[i], out_dir, inner, &stored, &kept);
      for (size_t k = 0; k < units[i].weights.size(); ++k) {
        elements += ckpt.Find(units[i].SourceOf(k))->numel;
      }
      if (options.show_progress) progress.Add(elements);
      std::lock_guard<std::mutex> lock(mu);
      if (!s.ok() && first_error.ok()) first_error = s;
      summary.units += 1;
      summary.unit_elements += elements;
      summary.unit_stored_bytes += stored;
      if (!kept.empty()) {
        LOG(WARNING) << kept;
        summary.kept_bf16.push_back(kept);
      }
    }
  });
  if (options.show_progress) progress.Finish();
  DF11_RETURN_IF_ERROR(first_error);

  // The remainder file: every tensor no unit file took.
  const FilePlan& rest = files.back();
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  for (const std::string& name : rest.others) {
    const TensorInfo* t = ckpt.Find(name);
    DF11_RETURN_IF_ERROR(writer.AddTensor(name, t->dtype, t->shape, t->bytes));
  }
  DF11_RETURN_IF_ERROR(writer.Write(JoinPath(out_dir, rest.file_name)));

  Df11Config df11;
  df11.patterns = std::move(patterns);
  config["dfloat11_config"] = Df11ConfigToJson(df11);
  DF11_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(out_dir, "config.json"), config.dump(2) + "\n"));
  DF11_RETURN_IF_ERROR(CopySideFiles(src_dir, out_dir, {"config.json"}));

  {
    DF11_ASSIGN_OR_RETURN(Checkpoint written, Checkpoint::Open(out_dir));
    for (const std::string& name : written.tensor_names()) {
      summary.total_output_bytes += static_cast<int64_t>(written.Find(name)->bytes.size());
    }
  }
  DF11_RETURN_IF_ERROR(staged.Commit());
  return summary;
}

}  // namespace df11
