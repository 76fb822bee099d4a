// SPDX-License-Identifier: Apache-2.0
#include "runtime/formats/ew4_tensors.h"

#include <cstring>

#include "kernels/ew4/ew4_decode.h"

namespace df11 {
namespace {

constexpr std::string_view kShapeField = ".ew4_sign_mantissa";

// Tensor "<name>.<field>" with `dtype` and `shape`, or Corruption naming both.
StatusOr<const TensorInfo*> Field(const Checkpoint& ckpt, const std::string& name,
                                  const char* field, DType dtype,
                                  const std::vector<int64_t>& shape) {
  const std::string t_name = name + "." + field;
  const TensorInfo* t = ckpt.Find(t_name);
  if (t == nullptr) return Status::Corruption("ew4 weight " + name + ": tensor " + t_name + " is missing");
  if (t->dtype != dtype || t->shape != shape) {
    return Status::Corruption("ew4 weight " + name + ": " + t_name + " is " +
                              std::string(DTypeName(t->dtype)) + " " + ShapeText(t->shape) +
                              "; expected " + std::string(DTypeName(dtype)) + " " +
                              ShapeText(shape));
  }
  return t;
}

template <typename T>
std::span<const uint8_t> Bytes(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

// A typed pointer into `t`, or into a copy in `realigned` when the mapping is misaligned.
const uint32_t* U32s(const TensorInfo* t, std::vector<std::vector<uint32_t>>* realigned) {
  if (reinterpret_cast<uintptr_t>(t->bytes.data()) % alignof(uint32_t) == 0) {
    return reinterpret_cast<const uint32_t*>(t->bytes.data());
  }
  auto& copy = realigned->emplace_back(static_cast<size_t>(t->numel));
  std::memcpy(copy.data(), t->bytes.data(), t->bytes.size());
  return copy.data();
}

}  // namespace

bool HasEw4Weight(const Checkpoint& ckpt, const std::string& name) {
  return ckpt.Find(name + std::string(kShapeField)) != nullptr;
}

std::string Ew4WeightOfField(const std::string& tensor) {
  const size_t dot = tensor.rfind('.');
  if (dot == std::string::npos) return "";
  for (const char* f : kEw4Fields) {
    if (tensor.compare(dot + 1, std::string::npos, f) == 0) return tensor.substr(0, dot);
  }
  return "";
}

StatusOr<std::pair<int64_t, int64_t>> Ew4WeightShape(const Checkpoint& ckpt,
                                                     const std::string& name) {
  const std::string t_name = name + std::string(kShapeField);
  const TensorInfo* sm = ckpt.Find(t_name);
  if (sm == nullptr) return Status::Corruption("ew4 weight " + name + ": tensor " + t_name + " is missing");
  if (sm->dtype != DType::kU8 || sm->shape.size() != 2 || sm->shape[1] > kEw4MaxCols) {
    return Status::Corruption("ew4 weight " + name + ": " + t_name + " is " +
                              std::string(DTypeName(sm->dtype)) + " " + ShapeText(sm->shape) +
                              "; expected U8 [rows, cols] with cols < 2^31");
  }
  return std::make_pair(sm->shape[0], sm->shape[1]);
}

StatusOr<Ew4View> LoadEw4Weight(const Checkpoint& ckpt, const std::string& name,
                                std::vector<std::vector<uint32_t>>* realigned) {
  DF11_ASSIGN_OR_RETURN(auto shape, Ew4WeightShape(ckpt, name));
  const auto [rows, cols] = shape;
  DF11_ASSIGN_OR_RETURN(const TensorInfo* window, Field(ckpt, name, "ew4_window", DType::kU8, {1}));
  DF11_ASSIGN_OR_RETURN(const TensorInfo* sm,
                        Field(ckpt, name, "ew4_sign_mantissa", DType::kU8, {rows, cols}));
  DF11_ASSIGN_OR_RETURN(const TensorInfo* codes, Field(ckpt, name, "ew4_codes", DType::kU8,
                                                       {rows, Ew4RowCodeBytes(cols)}));
  DF11_ASSIGN_OR_RETURN(const TensorInfo* offsets,
                        Field(ckpt, name, "ew4_escape_offsets", DType::kU32, {rows + 1}));
  const std::string columns_name = name + ".ew4_escape_columns";
  const TensorInfo* columns_t = ckpt.Find(columns_name);
  const int64_t n = columns_t != nullptr && columns_t->shape.size() == 1 ? columns_t->shape[0] : -1;
  if (n < 0) {
    return Status::Corruption("ew4 weight " + name + ": tensor " + columns_name +
                              (columns_t == nullptr ? " is missing" : " must have rank 1"));
  }
  DF11_ASSIGN_OR_RETURN(const TensorInfo* columns,
                        Field(ckpt, name, "ew4_escape_columns", DType::kU32, {n}));
  DF11_ASSIGN_OR_RETURN(const TensorInfo* values,
                        Field(ckpt, name, "ew4_escape_values", DType::kBF16, {n}));
  Ew4View v;
  v.rows = rows;
  v.cols = cols;
  v.window_start = window->bytes[0];
  v.sign_mantissa = sm->bytes.data();
  v.codes = codes->bytes.data();
  v.escape_offsets = U32s(offsets, realigned);
  v.escape_columns = U32s(columns, realigned);
  v.n_escapes = n;
  if (reinterpret_cast<uintptr_t>(values->bytes.data()) % 2 == 0) {
    v.escape_values = reinterpret_cast<const uint16_t*>(values->bytes.data());
  } else {
    // Stored as 32-bit words so one owner type serves both copies.
    auto& copy = realigned->emplace_back(static_cast<size_t>((n + 1) / 2));
    std::memcpy(copy.data(), values->bytes.data(), values->bytes.size());
    v.escape_values = reinterpret_cast<const uint16_t*>(copy.data());
  }
  if (std::string e = Ew4ValidateView(v); !e.empty()) {
    return Status::Corruption("ew4 weight " + name + ": " + e);
  }
  return v;
}

Status AddEw4Tensors(const std::string& name, const Ew4Encoded& m, SafetensorsWriter* w) {
  const uint8_t window = static_cast<uint8_t>(m.window_start);
  DF11_RETURN_IF_ERROR(w->AddOwnedTensor(name + ".ew4_window", DType::kU8, {1}, {window}));
  DF11_RETURN_IF_ERROR(w->AddTensor(name + ".ew4_sign_mantissa", DType::kU8, {m.rows, m.cols},
                                    Bytes(m.sign_mantissa)));
  DF11_RETURN_IF_ERROR(w->AddTensor(name + ".ew4_codes", DType::kU8,
                                    {m.rows, Ew4RowCodeBytes(m.cols)}, Bytes(m.codes)));
  DF11_RETURN_IF_ERROR(w->AddTensor(name + ".ew4_escape_offsets", DType::kU32, {m.rows + 1},
                                    Bytes(m.escape_offsets)));
  DF11_RETURN_IF_ERROR(w->AddTensor(name + ".ew4_escape_columns", DType::kU32,
                                    {m.n_escapes()}, Bytes(m.escape_columns)));
  return w->AddTensor(name + ".ew4_escape_values", DType::kBF16, {m.n_escapes()},
                      Bytes(m.escape_values));
}

}  // namespace df11
