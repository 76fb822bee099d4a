// SPDX-License-Identifier: Apache-2.0
// ew4 matrices as stored in safetensors files (a `df11 shard --codec ew4` rank file): weight W
// is the six tensors "W.ew4_window" (U8 [1]), "W.ew4_sign_mantissa" (U8 [rows, cols], which
// gives the shape), "W.ew4_codes" (U8 [rows, Ew4RowCodeBytes(cols)]), "W.ew4_escape_offsets"
// (U32 [rows + 1]), "W.ew4_escape_columns" (U32 [n]) and "W.ew4_escape_values" (BF16 [n]).
// Loading checks every tensor's dtype and shape, then the fields (Ew4ValidateView), and names
// the weight and the tensor in each error: a hostile file is refused, never read out of bounds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/ew4/ew4_encode.h"
#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/safetensors_writer.h"

namespace df11 {

inline constexpr const char* kEw4Fields[] = {"ew4_window",         "ew4_sign_mantissa",
                                             "ew4_codes",          "ew4_escape_offsets",
                                             "ew4_escape_columns", "ew4_escape_values"};

// Whether `ckpt` stores weight `name` as ew4 (it has "<name>.ew4_sign_mantissa").
bool HasEw4Weight(const Checkpoint& ckpt, const std::string& name);
// The weight that tensor `tensor` is an ew4 field of ("" when it is none).
std::string Ew4WeightOfField(const std::string& tensor);

// (rows, cols) of ew4 weight `name` from its sign_mantissa tensor, or Corruption.
StatusOr<std::pair<int64_t, int64_t>> Ew4WeightShape(const Checkpoint& ckpt,
                                                     const std::string& name);

// Loads and validates ew4 weight `name`. The view points into the mapping, or into a copy
// appended to `realigned` when the 32-bit fields are not 4-byte aligned in the file.
StatusOr<Ew4View> LoadEw4Weight(const Checkpoint& ckpt, const std::string& name,
                                std::vector<std::vector<uint32_t>>* realigned);

// Adds weight `name`'s six tensors to `writer`, which refers to `m`'s buffers: `m` must outlive
// writer.Write().
Status AddEw4Tensors(const std::string& name, const Ew4Encoded& m, SafetensorsWriter* writer);

}  // namespace df11
