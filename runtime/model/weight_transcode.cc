// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/weight_transcode.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>

#include "kernels/dfloat11/df11_encode.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_encode.h"

namespace df11 {
namespace {

// "embedding", "LM head", "layer 3 q_proj" (global layer index).
std::vector<std::pair<Weight*, std::string>> NamedMatrices(ModelWeights* w) {
  std::vector<std::pair<Weight*, std::string>> out = {{&w->embed, "embedding"},
                                                      {&w->lm_head, "LM head"}};
  for (size_t li = 0; li < w->layers.size(); ++li) {
    const auto matrices = w->layers[li].Matrices();
    for (size_t i = 0; i < matrices.size(); ++i) {
      out.push_back({matrices[i], "layer " + std::to_string(w->first_layer + li) + " " +
                                      LayerWeights::kMatrixNames[i]});
    }
  }
  return out;
}

// `m` re-encoded as `target` from its BF16 `words`, or "" in *why_kept with the weights
// unchanged.
Status Encode(ModelWeights* w, Weight* m, const std::string& name, const uint16_t* words,
              WeightCodec target, int threads, std::string* why_kept) {
  const int64_t n = m->numel();
  Weight out;
  out.rows = m->rows;
  out.cols = m->cols;
  out.id = m->id;
  out.codec = target;
  switch (target) {
    case WeightCodec::kEw4: {
      auto e = std::make_unique<Ew4Encoded>();
      if (std::string err = Ew4EncodeRef(words, m->rows, m->cols, threads, e.get()); !err.empty()) {
        *why_kept = err;
        return Status::Ok();
      }
      if (std::string too_many = e->TooManyEscapes(); !too_many.empty()) {
        *why_kept = too_many;
        return Status::Ok();
      }
      out.ew4 = e->View();
      w->ew4.push_back(std::move(e));
      break;
    }
    case WeightCodec::kDf11: {
      auto e = std::make_unique<Df11EncodedUnit>();
      std::span<const uint16_t> one(words, static_cast<size_t>(n));
      std::string err;
      if (!Df11EncodeRef(std::span<const std::span<const uint16_t>>(&one, 1), threads, e.get(),
                         &err)) {
        *why_kept = err;
        return Status::Ok();
      }
      auto unit = std::make_unique<Df11Unit>();
      unit->name = name;
      unit->view = e->View();
      BuildDf11CpuTables(unit->view, &unit->tables);
      out.unit = unit.get();
      w->df11_encoded.push_back(std::move(e));
      w->units.push_back(std::move(unit));
      break;
    }
    case WeightCodec::kBf16: {
      auto& copy = w->realigned.emplace_back(words, words + n);
      out.bf16 = copy.data();
      break;
    }
  }
  *m = out;
  return Status::Ok();
}

}  // namespace

std::string TranscodeReport::Format() const {
  char line[160];
  std::snprintf(line, sizeof(line), "transcoded %lld matrices to %s in %.2f s",
                static_cast<long long>(transcoded), WeightCodecName(target), seconds);
  std::string out = line;
  if (!kept.empty()) {
    out += " (" + std::to_string(kept.size()) + " kept their codec: " + kept[0];
    if (kept.size() > 1) out += "; ...";
    out += ")";
  }
  return out;
}

int64_t ServedBytes(const ModelWeights& w, WeightCodec codec) {
  const bool tied = w.lm_head.numel() > 0 && w.lm_head.SameStorage(w.embed);
  double bytes = 0;
  for (const Weight* m : w.AllMatrices()) {
    if (tied && m == &w.lm_head) continue;
    const double n = static_cast<double>(m->numel());
    if (m->codec == codec && codec == WeightCodec::kDf11) {
      bytes += static_cast<double>(m->unit->stored_bytes()) * n /
               static_cast<double>(std::max<int64_t>(1, m->unit->n_elements()));
    } else if (m->codec == codec) {
      bytes += static_cast<double>(m->own_bytes());
    } else if (codec == WeightCodec::kEw4) {
      bytes += static_cast<double>(Ew4StoredBytes(m->rows, m->cols, m->numel() / 2000));
    } else {
      bytes += codec == WeightCodec::kDf11 ? n * 10.87 / 8 : 2 * n;
    }
  }
  for (const Vector* v : {&w.final_norm}) bytes += 2.0 * static_cast<double>(v->size());
  int64_t layer = 0, matrix = 0;
  for (const LayerWeights& l : w.layers) {
    int64_t n = 0;
    for (const Weight* m : l.Matrices()) n += m->numel(), matrix = std::max(matrix, m->numel());
    for (const Vector* v : l.Vectors()) bytes += 2.0 * static_cast<double>(v->size());
    layer = std::max(layer, n);
  }
  const int64_t scratch = codec == WeightCodec::kDf11  ? 2 * 2 * layer
                          : codec == WeightCodec::kEw4 ? 2 * matrix
                                                       : 0;
  return static_cast<int64_t>(bytes) + scratch;
}

Status DecodeWeight(const Weight& m, int threads, std::vector<uint16_t>* out) {
  out->resize(static_cast<size_t>(m.numel()));
  switch (m.codec) {
    case WeightCodec::kBf16:
      std::memcpy(out->data(), m.bf16, 2 * m.numel());
      return Status::Ok();
    case WeightCodec::kDf11:
      return DecodeDf11Unit(*m.unit, m.begin, m.begin + m.numel(), threads, out->data());
    case WeightCodec::kEw4:
      Ew4DecodeRowsRef(m.ew4, 0, m.rows, threads, out->data());
      return Status::Ok();
  }
  return Status::Ok();
}

Status TranscodeWeights(ModelWeights* w, WeightCodec target, int threads,
                        TranscodeReport* report) {
  const auto start = std::chrono::steady_clock::now();
  *report = TranscodeReport();
  report->target = target;
  const bool tied = w->lm_head.numel() > 0 && w->lm_head.SameStorage(w->embed);
  std::vector<uint16_t> decoded;
  for (auto& [m, name] : NamedMatrices(w)) {
    if (m->codec == target || m->numel() == 0 || (tied && m == &w->lm_head)) continue;
    const uint16_t* words = m->bf16;
    if (m->codec != WeightCodec::kBf16) {
      DF11_RETURN_IF_ERROR(DecodeWeight(*m, threads, &decoded));
      words = decoded.data();
    }
    std::string why_kept;
    DF11_RETURN_IF_ERROR(Encode(w, m, name, words, target, threads, &why_kept));
    if (why_kept.empty()) {
      ++report->transcoded;
    } else {
      report->kept.push_back(name + ": " + why_kept);
    }
  }
  if (tied) {
    const int32_t id = w->lm_head.id;
    w->lm_head = w->embed;
    w->lm_head.id = id;
  }
  w->Finish();
  report->seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Status::Ok();
}

}  // namespace df11
