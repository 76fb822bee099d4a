// SPDX-License-Identifier: Apache-2.0
// DF11 units as stored in safetensors files (spec section 2): `<name>.luts`, `.encoded_exponent`,
// `.sign_mantissa`, `.output_positions`, `.gaps`, `.split_positions`. Loading checks every
// tensor's dtype and shape and the unit's fields (Df11ValidateUnit) and names the unit in each
// error. A loaded unit points into the checkpoint's mappings; it stays compressed in memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/dfloat11/df11_decode.h"
#include "kernels/dfloat11/df11_encode.h"
#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/safetensors_writer.h"

namespace df11 {

inline constexpr const char* kDf11UnitFields[] = {"luts", "encoded_exponent", "sign_mantissa",
                                                  "output_positions", "gaps", "split_positions"};

struct Df11Unit {
  std::string name;                      // e.g. "model.layers.3"
  Df11UnitView view;                     // into the checkpoint's mappings
  std::vector<int64_t> split_positions;  // element offsets where matrices 2.. start
  Df11CpuTables tables;                  // the CPU decoder's lookup tables

  int64_t n_elements() const { return view.n_elements; }
  // Compressed bytes of the stored fields.
  int64_t stored_bytes() const;
  // [begin, end) element range of matrix i (0 <= i <= split_positions.size()).
  std::pair<int64_t, int64_t> MatrixRange(size_t i) const;
};

// Names of the units in a checkpoint (tensors "<name>.encoded_exponent"), sorted.
std::vector<std::string> FindDf11Units(const Checkpoint& checkpoint);

// Loads and validates unit `name`. Corruption naming the unit and the field otherwise.
StatusOr<Df11Unit> LoadDf11Unit(const Checkpoint& checkpoint, const std::string& name);

// Decodes elements [begin, end) of the unit into out[0, end - begin) on `threads` threads
// (blocks are independent). Corruption naming the unit when the stream is inconsistent.
Status DecodeDf11Unit(const Df11Unit& unit, int64_t begin, int64_t end, int threads,
                      uint16_t* out);

// Adds the unit's six tensors, named "<name>.<field>" with the reference's dtypes and shapes, to
// `writer`. The writer refers to `unit`'s buffers, which must outlive writer.Write().
Status AddDf11UnitTensors(const std::string& name, const Df11EncodedUnit& unit,
                          SafetensorsWriter* writer);

}  // namespace df11
