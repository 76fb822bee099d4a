// SPDX-License-Identifier: Apache-2.0
#include "runtime/formats/df11_unit.h"

#include <algorithm>
#include <cstring>

#include "kernels/common/parallel_for.h"

namespace df11 {
namespace {

constexpr std::string_view kEncodedSuffix = ".encoded_exponent";

// The U8 tensor "<unit>.<field>" of rank 1 (or 2 for luts), or Corruption.
StatusOr<const TensorInfo*> FieldTensor(const Checkpoint& ckpt, const std::string& unit,
                                        const char* field, size_t rank) {
  const std::string name = unit + "." + field;
  const TensorInfo* t = ckpt.Find(name);
  if (t == nullptr) {
    return Status::Corruption("DF11 unit " + unit + ": tensor " + name + " is missing");
  }
  if (t->dtype != DType::kU8 || t->shape.size() != rank) {
    return Status::Corruption("DF11 unit " + unit + ": " + name + " is " +
                              std::string(DTypeName(t->dtype)) + " " + ShapeText(t->shape) +
                              "; expected U8 of rank " + std::to_string(rank));
  }
  return t;
}

}  // namespace

int64_t Df11Unit::stored_bytes() const {
  return static_cast<int64_t>(view.n_luts) * 256 + view.n_bytes + view.n_elements +
         4 * view.n_output_positions + view.n_gap_bytes +
         8 * static_cast<int64_t>(split_positions.size());
}

std::pair<int64_t, int64_t> Df11Unit::MatrixRange(size_t i) const {
  const int64_t begin = i == 0 ? 0 : split_positions[i - 1];
  const int64_t end = i < split_positions.size() ? split_positions[i] : n_elements();
  return {begin, end};
}

std::vector<std::string> FindDf11Units(const Checkpoint& checkpoint) {
  std::vector<std::string> units;
  for (const std::string& name : checkpoint.tensor_names()) {
    if (name.size() > kEncodedSuffix.size() && name.ends_with(kEncodedSuffix)) {
      units.push_back(name.substr(0, name.size() - kEncodedSuffix.size()));
    }
  }
  std::sort(units.begin(), units.end());
  return units;
}

StatusOr<Df11Unit> LoadDf11Unit(const Checkpoint& ckpt, const std::string& name) {
  DF11_ASSIGN_OR_RETURN(const TensorInfo* luts, FieldTensor(ckpt, name, "luts", 2));
  DF11_ASSIGN_OR_RETURN(const TensorInfo* enc, FieldTensor(ckpt, name, "encoded_exponent", 1));
  DF11_ASSIGN_OR_RETURN(const TensorInfo* sm, FieldTensor(ckpt, name, "sign_mantissa", 1));
  DF11_ASSIGN_OR_RETURN(const TensorInfo* gaps, FieldTensor(ckpt, name, "gaps", 1));
  const std::string pos_name = name + ".output_positions";
  const TensorInfo* pos = ckpt.Find(pos_name);
  if (pos == nullptr) {
    return Status::Corruption("DF11 unit " + name + ": tensor " + pos_name + " is missing");
  }
  // The reference stores uint32 positions viewed as bytes; 32-bit integer tensors are accepted.
  const bool pos_ok = pos->shape.size() == 1 &&
                      ((pos->dtype == DType::kU8 && pos->numel % 4 == 0) ||
                       pos->dtype == DType::kU32 || pos->dtype == DType::kI32);
  if (!pos_ok) {
    return Status::Corruption("DF11 unit " + name + ": " + pos_name + " is " +
                              std::string(DTypeName(pos->dtype)) + " " +
                              ShapeText(pos->shape) +
                              "; expected U8 with a multiple of 4 bytes (little-endian uint32)");
  }
  if (luts->shape[1] != 256) {
    return Status::Corruption("DF11 unit " + name + ": luts has shape " +
                              ShapeText(luts->shape) + "; expected [rows, 256]");
  }
  Df11Unit unit;
  unit.name = name;
  Df11UnitView& v = unit.view;
  v.luts = luts->bytes.data();
  v.n_luts = static_cast<int32_t>(std::min<int64_t>(luts->shape[0], 1 << 20));
  v.encoded = enc->bytes.data();
  v.n_bytes = enc->numel;
  v.sign_mantissa = sm->bytes.data();
  v.n_elements = sm->numel;
  v.output_positions = pos->bytes.data();
  v.n_output_positions = static_cast<int64_t>(pos->bytes.size() / 4);
  v.gaps = gaps->bytes.data();
  v.n_gap_bytes = gaps->numel;

  const std::string split_name = name + ".split_positions";
  if (const TensorInfo* split = ckpt.Find(split_name)) {
    if (split->dtype != DType::kI64 || split->shape.size() != 1) {
      return Status::Corruption("DF11 unit " + name + ": " + split_name + " is " +
                                std::string(DTypeName(split->dtype)) + " " +
                                ShapeText(split->shape) + "; expected I64 of rank 1");
    }
    unit.split_positions.resize(split->numel);
    // (An empty tensor has no data pointer; memcpy may not be given null even for 0 bytes.)
    if (!split->bytes.empty()) {
      std::memcpy(unit.split_positions.data(), split->bytes.data(), split->bytes.size());
    }
    int64_t prev = 0;
    for (int64_t p : unit.split_positions) {
      if (p < prev || p > v.n_elements) {
        return Status::Corruption("DF11 unit " + name + ": split_positions must be "
                                  "non-decreasing within [0, " + std::to_string(v.n_elements) +
                                  "]; found " + std::to_string(p) + " after " +
                                  std::to_string(prev));
      }
      prev = p;
    }
  }
  const std::string err = Df11ValidateUnit(v);
  if (!err.empty()) return Status::Corruption("DF11 unit " + name + ": " + err);
  BuildDf11CpuTables(v, &unit.tables);
  return unit;
}

Status DecodeDf11Unit(const Df11Unit& unit, int64_t begin, int64_t end, int threads,
                      uint16_t* out) {
  if (begin < 0 || begin > end || end > unit.n_elements()) {
    return Status::OutOfRange("DF11 unit " + unit.name + ": range [" + std::to_string(begin) +
                              ", " + std::to_string(end) + ") outside its " +
                              std::to_string(unit.n_elements()) + " elements");
  }
  // Work items are runs of 64 format blocks; each decodes its share of [begin, end).
  const Df11UnitView& v = unit.view;
  const int64_t blocks = Df11PositionBlocks(v);
  constexpr int64_t kBlocksPerItem = 64;
  const int64_t items = (blocks + kBlocksPerItem - 1) / kBlocksPerItem;
  std::vector<std::string> errors(std::max<int64_t>(items, 1));
  ParallelFor(items, threads, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t lo = std::max(begin, Df11OutputPosition(v, i * kBlocksPerItem));
      const int64_t hi =
          std::min(end, Df11OutputPosition(v, std::min(blocks, (i + 1) * kBlocksPerItem)));
      if (lo >= hi) continue;
      errors[i] = Df11DecodeRangeRef(v, unit.tables, lo, hi, out + (lo - begin));
    }
  });
  for (const std::string& err : errors) {
    if (!err.empty()) return Status::Corruption("DF11 unit " + unit.name + ": " + err);
  }
  return Status::Ok();
}

Status AddDf11UnitTensors(const std::string& name, const Df11EncodedUnit& unit,
                          SafetensorsWriter* writer) {
  auto bytes = [](const auto& vec) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(vec.data()),
                                    vec.size() * sizeof(vec[0]));
  };
  DF11_RETURN_IF_ERROR(writer->AddTensor(name + ".luts", DType::kU8, {unit.n_luts, 256},
                                         bytes(unit.luts)));
  DF11_RETURN_IF_ERROR(writer->AddTensor(name + ".encoded_exponent", DType::kU8,
                                         {static_cast<int64_t>(unit.encoded_exponent.size())},
                                         bytes(unit.encoded_exponent)));
  DF11_RETURN_IF_ERROR(writer->AddTensor(name + ".sign_mantissa", DType::kU8,
                                         {static_cast<int64_t>(unit.sign_mantissa.size())},
                                         bytes(unit.sign_mantissa)));
  DF11_RETURN_IF_ERROR(writer->AddTensor(name + ".output_positions", DType::kU8,
                                         {static_cast<int64_t>(unit.output_positions.size())},
                                         bytes(unit.output_positions)));
  DF11_RETURN_IF_ERROR(writer->AddTensor(name + ".gaps", DType::kU8,
                                         {static_cast<int64_t>(unit.gaps.size())},
                                         bytes(unit.gaps)));
  return writer->AddTensor(name + ".split_positions", DType::kI64,
                           {static_cast<int64_t>(unit.split_positions.size())},
                           bytes(unit.split_positions));
}

}  // namespace df11
