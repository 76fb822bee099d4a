// SPDX-License-Identifier: Apache-2.0
#include "runtime/convert/verify.h"

#include <cstdio>
#include <cstring>
#include <set>

#include "kernels/common/parallel_for.h"
#include "runtime/convert/model_files.h"
#include "runtime/convert/unit_weights.h"
#include "runtime/core/progress.h"
#include "runtime/formats/model_tensors.h"

namespace df11 {
namespace {

std::string Hex16(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%04x", v);
  return buf;
}

}  // namespace

StatusOr<VerifyReport> VerifyModel(const std::string& df11_dir, const std::string& bf16_dir,
                                   int threads, bool show_progress) {
  DF11_ASSIGN_OR_RETURN(Df11Model model, OpenDf11Model(df11_dir));
  DF11_ASSIGN_OR_RETURN(Checkpoint original, Checkpoint::Open(bf16_dir));
  DF11_RETURN_IF_ERROR(CheckBf16WeightsAgainstConfig(bf16_dir, original));
  threads = threads > 0 ? threads : DefaultThreadCount();
  // A tied model's original has no lm_head.weight; an lm_head the DF11 model stores anyway (the
  // reference encoder writes one) must equal the embedding.
  const std::optional<TiedHeadNames> tied = TiedHeadNamesOf(model.config_json);
  auto original_of = [&](const std::string& name) -> const TensorInfo* {
    const TensorInfo* t = original.Find(name);
    if (t == nullptr && tied && name == tied->weight) t = original.Find(tied->embedding);
    return t;
  };
  VerifyReport report;
  std::set<std::string> covered;
  auto mismatch = [&](std::string what) {
    if (report.first_mismatch.empty()) report.first_mismatch = std::move(what);
  };
  int64_t total = 0;
  for (const std::string& u : model.units) {
    if (const TensorInfo* sm = model.checkpoint.Find(u + ".sign_mantissa")) total += sm->numel;
  }
  Progress progress("verify", total, "weights", show_progress);
  std::vector<uint16_t> words;
  for (const std::string& name : model.units) {
    DF11_ASSIGN_OR_RETURN(Df11Unit unit, LoadDf11Unit(model.checkpoint, name));
    DF11_ASSIGN_OR_RETURN(std::vector<UnitWeight> weights, ResolveUnitWeights(model, unit));
    words.resize(unit.n_elements());
    DF11_RETURN_IF_ERROR(DecodeDf11Unit(unit, 0, unit.n_elements(), threads, words.data()));
    ++report.units;
    for (const UnitWeight& w : weights) {
      covered.insert(w.name);
      ++report.tensors;
      const TensorInfo* t = original_of(w.name);
      if (t == nullptr) {
        mismatch(w.name + ": in DF11 unit " + name + " but not in " + bf16_dir);
        continue;
      }
      if (t->dtype != DType::kBF16 || t->shape != w.shape) {
        mismatch(w.name + ": original is " + std::string(DTypeName(t->dtype)) + " " +
                 ShapeText(t->shape) + ", DF11 holds BF16 " + ShapeText(w.shape));
        continue;
      }
      const uint8_t* expected = t->bytes.data();
      for (int64_t i = 0; i < w.end - w.begin; ++i) {
        uint16_t e;
        std::memcpy(&e, expected + 2 * i, 2);
        if (e != words[w.begin + i]) {
          mismatch(w.name + " element " + std::to_string(i) + ": original " + Hex16(e) +
                   ", decoded " + Hex16(words[w.begin + i]));
          break;
        }
      }
      report.elements += w.end - w.begin;
    }
    if (show_progress) progress.Add(unit.n_elements());
  }
  if (show_progress) progress.Finish();
  // Tensors stored as they are.
  for (const std::string& name : model.checkpoint.tensor_names()) {
    if (IsUnitField(model, name)) continue;
    covered.insert(name);
    ++report.tensors;
    const TensorInfo* mine = model.checkpoint.Find(name);
    const TensorInfo* t = original_of(name);
    if (t == nullptr) {
      mismatch(name + ": in the DF11 model but not in " + bf16_dir);
    } else if (t->dtype != mine->dtype || t->shape != mine->shape) {
      mismatch(name + ": original is " + std::string(DTypeName(t->dtype)) + " " +
               ShapeText(t->shape) + ", DF11 model has " + std::string(DTypeName(mine->dtype)) +
               " " + ShapeText(mine->shape));
    } else if (std::memcmp(t->bytes.data(), mine->bytes.data(), t->bytes.size()) != 0) {
      size_t i = 0;
      while (t->bytes[i] == mine->bytes[i]) ++i;
      mismatch(name + " byte " + std::to_string(i) + " differs");
    }
  }
  for (const std::string& name : original.tensor_names()) {
    if (!covered.count(name)) mismatch(name + ": in " + bf16_dir + " but not in the DF11 model");
  }
  report.identical = report.first_mismatch.empty();
  return report;
}

}  // namespace df11
