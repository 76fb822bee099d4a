// SPDX-License-Identifier: Apache-2.0
#include "runtime/convert/decompress.h"

#include <map>

#include "kernels/common/parallel_for.h"
#include "runtime/convert/model_files.h"
#include "runtime/convert/unit_weights.h"
#include "runtime/core/file_util.h"
#include "runtime/core/progress.h"
#include "runtime/core/staged_dir.h"
#include "runtime/formats/model_tensors.h"
#include "runtime/formats/safetensors_writer.h"

namespace df11 {
namespace {

// The bytes DecompressModel writes into its safetensors files: every unit's weights as BF16
// (a tied model's stored head excepted) and every other tensor as it is.
StatusOr<uint64_t> DecompressedBytes(const Df11Model& model) {
  const std::optional<TiedHeadNames> tied = TiedHeadNamesOf(model.config_json);
  uint64_t bytes = 0;
  for (const SafetensorsFile& file : model.checkpoint.files()) {
    for (const TensorInfo& t : file.tensors()) {
      if (tied && t.name.starts_with(tied->unit + ".")) continue;
      if (!IsUnitField(model, t.name)) {
        bytes += t.bytes.size();
      } else if (t.name.ends_with(".encoded_exponent")) {
        DF11_ASSIGN_OR_RETURN(
            Df11Unit unit, LoadDf11Unit(model.checkpoint, t.name.substr(0, t.name.rfind('.'))));
        bytes += 2 * static_cast<uint64_t>(unit.n_elements());
      }
    }
  }
  return bytes;
}

}  // namespace

StatusOr<DecompressSummary> DecompressModel(const std::string& df11_dir,
                                            const std::string& target_dir, int threads,
                                            bool show_progress) {
  DF11_ASSIGN_OR_RETURN(Df11Model model, OpenDf11Model(df11_dir));
  DF11_ASSIGN_OR_RETURN(StagedDir staged, StagedDir::Create(target_dir));
  const std::string out_dir = staged.path();
  DF11_ASSIGN_OR_RETURN(const uint64_t out_bytes, DecompressedBytes(model));
  DF11_RETURN_IF_ERROR(CheckFreeSpace(out_dir, out_bytes, target_dir));
  threads = threads > 0 ? threads : DefaultThreadCount();
  int64_t total = 0;
  for (const std::string& t : model.checkpoint.tensor_names()) {
    total += static_cast<int64_t>(model.checkpoint.Find(t)->bytes.size());
  }
  Progress progress("decompress", total, "bytes", show_progress);
  DecompressSummary summary;
  std::map<std::string, std::string> weight_map;
  const std::optional<TiedHeadNames> tied = TiedHeadNamesOf(model.config_json);
  // One output file per input file, so memory holds one file's decoded units at a time.
  for (const SafetensorsFile& file : model.checkpoint.files()) {
    const std::string file_name = file.path().substr(file.path().rfind('/') + 1);
    SafetensorsWriter writer;
    writer.SetMetadata("format", "pt");
    std::vector<std::vector<uint16_t>> decoded;  // kept alive until Write()
    const size_t tensors_before = weight_map.size();
    for (const TensorInfo& t : file.tensors()) {
      // A tied model's checkpoint has no lm_head: a stored copy is not written back.
      if (tied && t.name.starts_with(tied->unit + ".")) continue;
      if (IsUnitField(model, t.name)) {
        if (!t.name.ends_with(".encoded_exponent")) continue;
        const std::string unit_name = t.name.substr(0, t.name.rfind('.'));
        DF11_ASSIGN_OR_RETURN(Df11Unit unit, LoadDf11Unit(model.checkpoint, unit_name));
        DF11_ASSIGN_OR_RETURN(std::vector<UnitWeight> weights, ResolveUnitWeights(model, unit));
        std::vector<uint16_t>& words = decoded.emplace_back(unit.n_elements());
        DF11_RETURN_IF_ERROR(DecodeDf11Unit(unit, 0, unit.n_elements(), threads, words.data()));
        for (const UnitWeight& w : weights) {
          auto bytes = std::span<const uint8_t>(
              reinterpret_cast<const uint8_t*>(words.data() + w.begin), 2 * (w.end - w.begin));
          DF11_RETURN_IF_ERROR(writer.AddTensor(w.name, DType::kBF16, w.shape, bytes));
          weight_map[w.name] = file_name;
          summary.output_bytes += static_cast<int64_t>(bytes.size());
          ++summary.tensors;
        }
        ++summary.units;
        if (show_progress) progress.Add(unit.stored_bytes());
        continue;
      }
      DF11_RETURN_IF_ERROR(writer.AddTensor(t.name, t.dtype, t.shape, t.bytes));
      weight_map[t.name] = file_name;
      summary.output_bytes += static_cast<int64_t>(t.bytes.size());
      ++summary.tensors;
      if (show_progress) progress.Add(static_cast<int64_t>(t.bytes.size()));
    }
    if (weight_map.size() == tensors_before) continue;  // nothing of this file is kept
    DF11_RETURN_IF_ERROR(writer.Write(JoinPath(out_dir, file_name)));
  }
  if (show_progress) progress.Finish();
  DF11_RETURN_IF_ERROR(
      WriteCheckpointIndex(out_dir, weight_map, static_cast<uint64_t>(summary.output_bytes)));
  nlohmann::ordered_json config = model.config_json;
  config.erase("dfloat11_config");
  DF11_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(out_dir, "config.json"), config.dump(2) + "\n"));
  DF11_RETURN_IF_ERROR(CopySideFiles(df11_dir, out_dir, {"config.json"}));
  DF11_RETURN_IF_ERROR(staged.Commit());
  return summary;
}

}  // namespace df11
