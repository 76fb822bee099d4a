// SPDX-License-Identifier: Apache-2.0
// ShardModel: source weights (SourceWeights) -> per step (embedding, each layer, LM head) every
// rank's slices (Cut) -> one DF11 unit per rank and step, written as a part file -> per rank, the
// parts merged into rank-<r>.safetensors (RankOutput) -> manifest.json.
#include "runtime/convert/shard.h"

#include <glog/logging.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "kernels/common/parallel_for.h"
#include "kernels/dfloat11/df11_encode.h"
#include "kernels/ew4/ew4_encode.h"
#include "parallel/sharding.h"
#include "parallel/world.h"
#include "runtime/convert/model_files.h"
#include "runtime/convert/source_weights.h"
#include "runtime/core/file_util.h"
#include "runtime/core/mapped_file.h"
#include "runtime/core/progress.h"
#include "runtime/core/staged_dir.h"
#include "runtime/formats/df11_unit.h"
#include "runtime/formats/ew4_tensors.h"
#include "runtime/formats/model_tensors.h"
#include "runtime/formats/safetensors_writer.h"

namespace df11 {
namespace {

// One source tensor as the ranks get it: the table's row says how it is cut.
struct Piece {
  std::string name;    // output (and source) weight name
  std::string source;  // the source tensor (differs for a tied LM head)
  std::vector<int64_t> shape;  // source shape: (rows, cols) or (n)
  const TensorRow* row = nullptr;
};

// One step of the conversion: for each tp rank of `stage`, one unit's matrices + small tensors.
struct Step {
  int stage = 0;
  std::string unit;
  std::vector<Piece> matrices;  // in unit order
  std::vector<Piece> small;     // norms, biases
  std::vector<std::string> hash_prefixes;  // source tensors read by this step
};

struct LocalTensor {
  std::string name;
  std::vector<int64_t> shape;  // local
  std::vector<uint16_t> data;
};

// The rank's part of piece `p` (source data `src`) of model `c`.
LocalTensor Cut(const Piece& p, std::span<const uint16_t> src, const TpSlices& s,
                const ModelConfig& c) {
  const Range r = SliceOf(*p.row, c, s);
  const int64_t rows = p.shape[0];
  const int64_t cols = p.shape.size() == 2 ? p.shape[1] : 1;
  LocalTensor t{p.name, p.shape, {}};
  if (p.row->split == Split::kRows) {
    t.shape[0] = r.size();
    t.data.resize(r.size() * cols);
    SliceRows(src.data(), rows, cols, r, t.data.data());
  } else if (p.row->split == Split::kColumns) {
    t.shape[1] = r.size();
    t.data.resize(rows * r.size());
    SliceColumns(src.data(), rows, cols, r, t.data.data());
  } else {
    t.data.assign(src.begin(), src.end());
  }
  return t;
}

std::span<const uint8_t> Bytes(const std::vector<uint16_t>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(uint16_t)};
}

// One rank's output: part files (one per step) merged into rank-<r>.safetensors by Finish().
class RankOutput {
 public:
  RankOutput(std::string out_dir, int rank) : out_dir_(std::move(out_dir)) {
    char name[64];
    std::snprintf(name, sizeof(name), "rank-%05d.safetensors", rank);
    file_name_ = name;
  }
  RankOutput(RankOutput&&) = default;
  ~RankOutput() {
    for (const std::string& p : parts_) std::remove(p.c_str());
  }

  const std::string& file_name() const { return file_name_; }

  // Writes one step's tensors as the next part file; records the DF11 unit's weights (if any).
  Status AddPart(const SafetensorsWriter& writer, const std::string& unit,
                 const std::vector<LocalTensor>& unit_weights) {
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), ".part-%05zu.tmp", parts_.size());
    parts_.push_back(JoinPath(out_dir_, file_name_ + suffix));
    if (!unit.empty()) {
      for (const LocalTensor& w : unit_weights) {
        shapes_[w.name] = w.shape;
        units_[unit].push_back(w.name);
      }
    }
    return writer.Write(parts_.back());
  }

  // Merges the parts into the rank's file; returns its size and xxh64.
  Status Finish(int64_t* bytes, std::string* xxh64) {
    std::vector<SafetensorsFile> parts;
    for (const std::string& p : parts_) {
      DF11_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(p));
      parts.push_back(std::move(f));
    }
    // Alignment classes: I64 (8), uint32 positions (4), BF16 (2), bytes (1); stable within.
    std::vector<const TensorInfo*> tensors;
    for (const SafetensorsFile& f : parts) {
      for (const TensorInfo& t : f.tensors()) tensors.push_back(&t);
    }
    auto align = [](const TensorInfo* t) {
      if (t->name.ends_with(".output_positions")) return 4;
      return static_cast<int>(DTypeSize(t->dtype));
    };
    std::stable_sort(tensors.begin(), tensors.end(),
                     [&](const TensorInfo* a, const TensorInfo* b) { return align(a) > align(b); });
    SafetensorsWriter writer;
    writer.SetMetadata("format", "pt");
    writer.SetMetadata(kShapesMetadataKey, shapes_.dump());
    writer.SetMetadata(kUnitsMetadataKey, units_.dump());
    for (const TensorInfo* t : tensors) {
      DF11_RETURN_IF_ERROR(writer.AddTensor(t->name, t->dtype, t->shape, t->bytes));
    }
    const std::string path = JoinPath(out_dir_, file_name_);
    DF11_RETURN_IF_ERROR(writer.Write(path));
    parts.clear();
    for (const std::string& p : parts_) std::remove(p.c_str());
    parts_.clear();
    DF11_ASSIGN_OR_RETURN(MappedFile written, MappedFile::Open(path));
    *bytes = static_cast<int64_t>(written.size());
    *xxh64 = Hex64(XXH64(written.data(), written.size(), 0));
    return Status::Ok();
  }

 private:
  std::string out_dir_;
  std::string file_name_;
  std::vector<std::string> parts_;  // paths, in step order
  nlohmann::ordered_json shapes_ = nlohmann::ordered_json::object();
  nlohmann::ordered_json units_ = nlohmann::ordered_json::object();
};

// The steps of the conversion, in source order: embedding, layers, LM head + final norm.
StatusOr<std::vector<Step>> PlanSteps(const ModelConfig& c, const SourceWeights& src,
                                      const std::vector<Range>& stages) {
  const ArchitectureTensors& t = TensorsOf(c.arch);
  auto piece = [&](const TensorRow& row, std::string name) {
    return Piece{name, name, GlobalShape(row, c), &row};
  };
  auto module_prefix = [](const TensorRow& row) { return std::string(ModuleOf(row)) + "."; };
  // A row the table stores plainly (Gemma 3 multimodal's embedding and LM head) stays BF16.
  auto coded = [](const TensorRow& row) { return row.unit != UnitOf::kPlain; };
  std::vector<Step> steps;
  std::vector<Piece> embedding = {piece(t.embedding, std::string(t.embedding.name))};
  const bool embedding_coded = coded(t.embedding);
  steps.push_back({0, UnitName(t, UnitOf::kEmbedding, 0),
                   embedding_coded ? embedding : std::vector<Piece>{},
                   embedding_coded ? std::vector<Piece>{} : embedding,
                   {module_prefix(t.embedding)}});
  for (int s = 0; s < static_cast<int>(stages.size()); ++s) {
    for (int64_t i = stages[s].begin; i < stages[s].end; ++i) {
      Step step{s, UnitName(t, UnitOf::kLayer, i), {}, {}, {LayerModule(t, i) + "."}};
      for (const TensorRow& row : t.layer) {
        if (!Present(row, c)) continue;
        std::vector<Piece>& into = row.unit == UnitOf::kLayer ? step.matrices : step.small;
        into.push_back(piece(row, LayerTensorName(t, i, row)));
      }
      steps.push_back(std::move(step));
    }
  }
  Piece head = piece(t.lm_head, std::string(t.lm_head.name));
  // Tied: the LM head is the embedding (a stored lm_head, as the reference encoder writes one,
  // is a copy of it and is not read).
  if (c.tie_word_embeddings) {
    head.source = t.embedding.name;
  } else if (!src.Has(head.name)) {
    return Status::NotFound("tensor " + head.name + " is missing from " + src.dir() +
                            " (and tie_word_embeddings is false)");
  }
  // Tied embeddings on a single stage: that rank's embedding unit serves as the LM head too.
  std::vector<Piece> head_matrices = {head};
  if (c.tie_word_embeddings && stages.size() == 1) head_matrices.clear();
  std::vector<Piece> head_small = {piece(t.final_norm, std::string(t.final_norm.name))};
  if (!coded(t.lm_head)) {
    head_small.insert(head_small.end(), head_matrices.begin(), head_matrices.end());
    head_matrices.clear();
  }
  steps.push_back({static_cast<int>(stages.size()) - 1, UnitName(t, UnitOf::kLmHead, 0),
                   head_matrices, head_small,
                   {module_prefix(t.lm_head), module_prefix(t.final_norm)}});
  return steps;
}

// One rank's output of a step as ew4 matrices (BF16 when too many escape) + small tensors.
Status WriteRankStepEw4(std::vector<LocalTensor> matrices, std::vector<LocalTensor> small,
                        int threads, RankOutput* out, int64_t* written, std::string* kept_bf16) {
  SafetensorsWriter writer;
  std::vector<Ew4Encoded> encoded(matrices.size());
  for (size_t i = 0; i < matrices.size(); ++i) {
    LocalTensor& m = matrices[i];
    std::string why = Ew4EncodeRef(m.data.data(), m.shape[0], m.shape[1], threads, &encoded[i]);
    if (why.empty()) why = encoded[i].TooManyEscapes();
    if (!why.empty()) {
      *kept_bf16 += (kept_bf16->empty() ? out->file_name() + ": " : "; ") + m.name +
                    " kept in BF16: " + why;
      small.push_back(std::move(m));
      continue;
    }
    DF11_RETURN_IF_ERROR(AddEw4Tensors(m.name, encoded[i], &writer));
    ++*written;
  }
  for (const LocalTensor& t : small) {
    DF11_RETURN_IF_ERROR(writer.AddTensor(t.name, DType::kBF16, t.shape, Bytes(t.data)));
  }
  return out->AddPart(writer, "", {});
}

// One rank's output of a step: its DF11 unit (BF16 weights when uncodable) + small tensors.
Status WriteRankStep(const Step& step, std::vector<LocalTensor> matrices,
                     std::vector<LocalTensor> small, int threads, RankOutput* out,
                     std::string* kept_bf16) {
  std::vector<std::span<const uint16_t>> parts;
  for (const LocalTensor& m : matrices) parts.emplace_back(m.data);
  Df11EncodedUnit encoded;
  std::string error;
  SafetensorsWriter writer;
  std::vector<LocalTensor> unit_weights;
  if (matrices.empty()) {
    // Only small tensors in this step (the tied LM head reuses the embedding unit).
  } else if (Df11EncodeRef(parts, threads, &encoded, &error)) {
    DF11_RETURN_IF_ERROR(AddDf11UnitTensors(step.unit, encoded, &writer));
    for (LocalTensor& m : matrices) unit_weights.push_back({m.name, m.shape, {}});
  } else {
    if (error.find("exponent") == std::string::npos) {
      return Status::InvalidArgument(out->file_name() + ": unit " + step.unit + ": " + error);
    }
    *kept_bf16 = out->file_name() + ": " + step.unit + " kept in BF16: " + error;
    for (LocalTensor& m : matrices) small.push_back(std::move(m));
  }
  for (const LocalTensor& t : small) {
    DF11_RETURN_IF_ERROR(writer.AddTensor(t.name, DType::kBF16, t.shape, Bytes(t.data)));
  }
  return out->AddPart(writer, kept_bf16->empty() && !matrices.empty() ? step.unit : "",
                      unit_weights);
}

nlohmann::json RangeJson(Range r) { return nlohmann::json::array({r.begin, r.end}); }

}  // namespace

StatusOr<ShardSummary> ShardModel(const std::string& src_dir, const std::string& target_dir,
                                  const ShardOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const int threads = options.threads > 0 ? options.threads : DefaultThreadCount();
  if (FileExists(JoinPath(src_dir, kShardManifestName))) {
    return Status::InvalidArgument(src_dir + " is already sharded (has " + kShardManifestName +
                                   "); shard its source model instead");
  }
  DF11_ASSIGN_OR_RETURN(std::unique_ptr<SourceWeights> src, SourceWeights::Open(src_dir, threads));
  const ModelConfig& c = src->config();
  const ParallelLayout layout{options.tp, options.pp};
  if (layout.tp < 1) {
    return Status::InvalidArgument("--tp must be >= 1; got " + std::to_string(layout.tp));
  }
  DF11_ASSIGN_OR_RETURN(std::vector<Range> stages, StageLayers(c, layout.pp, options.stage_layers));
  std::vector<TpSlices> slices;
  for (int t = 0; t < layout.tp; ++t) {
    DF11_ASSIGN_OR_RETURN(TpSlices s, TensorParallelSlices(c, layout.tp, t));
    slices.push_back(s);
  }
  DF11_ASSIGN_OR_RETURN(std::vector<Step> steps, PlanSteps(c, *src, stages));
  DF11_ASSIGN_OR_RETURN(StagedDir staged, StagedDir::Create(target_dir));
  const std::string out_dir = staged.path();

  std::vector<RankOutput> outs;
  for (int r = 0; r < layout.world(); ++r) outs.emplace_back(out_dir, r);
  int64_t total_elements = 0;
  for (const Step& step : steps) {
    for (const Piece& p : step.matrices) total_elements += p.shape[0] * p.shape[1];
  }
  std::optional<Progress> progress;
  if (options.show_progress) progress.emplace("shard", total_elements, "weights");
  const int workers = std::min(threads, layout.tp);
  const int inner = std::max(1, threads / workers);
  ShardSummary summary;
  std::mutex mu;
  for (const Step& step : steps) {
    src->HashTensors(step.hash_prefixes);
    std::vector<std::span<const uint16_t>> matrix_src, small_src;
    for (const Piece& p : step.matrices) {
      DF11_ASSIGN_OR_RETURN(auto words, src->Get(p.source, p.shape));
      matrix_src.push_back(words);
    }
    for (const Piece& p : step.small) {
      DF11_ASSIGN_OR_RETURN(auto words, src->Get(p.source, p.shape));
      small_src.push_back(words);
    }
    // Cut every rank's slices, free the decoded source, then encode and write per rank.
    std::vector<std::vector<LocalTensor>> matrices(layout.tp), small(layout.tp);
    ParallelFor(layout.tp, workers, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        for (size_t i = 0; i < step.matrices.size(); ++i) {
          matrices[t].push_back(Cut(step.matrices[i], matrix_src[i], slices[t], c));
        }
        for (size_t i = 0; i < step.small.size(); ++i) {
          small[t].push_back(Cut(step.small[i], small_src[i], slices[t], c));
        }
      }
    });
    src->Release();
    std::vector<Status> status(layout.tp);
    ParallelFor(layout.tp, workers, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        std::string kept;
        int64_t ew4_written = 0;
        RankOutput* out = &outs[layout.Rank(step.stage, static_cast<int>(t))];
        status[t] = options.codec == WeightCodec::kEw4
                        ? WriteRankStepEw4(std::move(matrices[t]), std::move(small[t]), inner,
                                           out, &ew4_written, &kept)
                        : WriteRankStep(step, std::move(matrices[t]), std::move(small[t]),
                                        inner, out, &kept);
        std::lock_guard<std::mutex> lock(mu);
        summary.ew4_matrices += ew4_written;
        if (!kept.empty()) {
          LOG(WARNING) << kept;
          summary.kept_bf16.push_back(kept);
        } else if (status[t].ok() && options.codec == WeightCodec::kDf11) {
          summary.units += 1;
        }
      }
    });
    for (const Status& s : status) DF11_RETURN_IF_ERROR(s);
    if (progress) {
      int64_t n = 0;
      for (const Piece& p : step.matrices) n += p.shape[0] * p.shape[1];
      progress->Add(n);
    }
  }
  if (progress) progress->Finish();

  nlohmann::ordered_json manifest;
  manifest["format"] = kShardFormat;
  manifest["format_version"] = kShardFormatVersion;
  manifest["codec"] = WeightCodecName(options.codec);
  summary.source_hash = src->SourceHash();
  manifest["source"] = {{"dir", src_dir},
                        {"format", src->is_df11() ? "df11" : "bf16"},
                        {"hash", summary.source_hash},
                        {"hash_of", "xxh64 of config.json, then per tensor: name, dtype, shape, "
                                    "xxh64(data)"}};
  manifest["config"] = src->config_json();
  nlohmann::json stage_json = nlohmann::json::array();
  for (Range r : stages) stage_json.push_back(RangeJson(r));
  manifest["layout"] = {{"tp", layout.tp}, {"pp", layout.pp}, {"world_size", layout.world()},
                        {"stage_layers", stage_json}};
  manifest["ranks"] = nlohmann::ordered_json::array();
  for (int r = 0; r < layout.world(); ++r) {
    int64_t bytes = 0;
    std::string xxh64;
    DF11_RETURN_IF_ERROR(outs[r].Finish(&bytes, &xxh64));
    summary.rank_bytes.push_back(bytes);
    summary.total_bytes += bytes;
    const TpSlices& s = slices[layout.TpRank(r)];
    nlohmann::ordered_json entry;
    entry["rank"] = r;
    entry["stage"] = layout.Stage(r);
    entry["tp_rank"] = layout.TpRank(r);
    entry["file"] = outs[r].file_name();
    entry["bytes"] = bytes;
    entry["xxh64"] = xxh64;
    entry["layers"] = RangeJson(stages[layout.Stage(r)]);
    entry["q_heads"] = RangeJson(s.q_heads);
    entry["kv_heads"] = RangeJson(s.kv_heads);
    entry["kv_replicated"] = s.kv_replicated;
    entry["intermediate"] = RangeJson(s.intermediate);
    entry["vocab"] = RangeJson(s.vocab);
    manifest["ranks"].push_back(std::move(entry));
  }
  DF11_RETURN_IF_ERROR(
      WriteFileAtomic(JoinPath(out_dir, "config.json"), src->config_json().dump(2) + "\n"));
  DF11_RETURN_IF_ERROR(CopySideFiles(src_dir, out_dir, {"config.json", kShardManifestName}));
  DF11_RETURN_IF_ERROR(
      WriteFileAtomic(JoinPath(out_dir, kShardManifestName), manifest.dump(2) + "\n"));
  DF11_RETURN_IF_ERROR(staged.Commit());
  summary.elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace df11
