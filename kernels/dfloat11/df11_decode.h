// SPDX-License-Identifier: Apache-2.0
// DF11 decoding. Df11ValidateUnit checks every stored field of an untrusted unit that can be
// checked without decoding (sizes, table pointers, code lengths, positions); the decoders then
// check the rest while decoding (each window's gap against the stream, each block's element
// count, the stream's end) and report a message instead of reading out of bounds.
// Df11DecodeRangeRef is the single-threaded CPU oracle; callers split blocks across threads.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "kernels/dfloat11/df11_layout.h"

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// Returns "" when the unit's fields are consistent, else what is wrong.
std::string Df11ValidateUnit(const Df11UnitView& unit);

// A direct lookup table over the next 12 stream bits for the CPU decoder, derived from the
// stored tables: entry = symbol | (code length << 8), or 0 where the 12 bits do not determine
// the result (longer codes), which falls back to walking the stored tables.
struct Df11CpuTables {
  static constexpr int kBits = 12;
  std::array<uint16_t, 1 << kBits> fast{};
  // The same index decoding as many whole codes as fit in 12 bits (at most 4): bytes 0-3 the
  // symbols, byte 4 their number (0: use `fast` or the stored tables), byte 5 their total bits,
  // then 4 bits each for where codes 1, 2 and 3 start (15 where there is no such code).
  std::array<uint64_t, 1 << kBits> multi{};
};

// Requires a unit that passed Df11ValidateUnit.
void BuildDf11CpuTables(const Df11UnitView& unit, Df11CpuTables* tables);

// Decodes elements [begin, end) into out[0, end - begin) as BF16 bit patterns. Requires a
// validated unit and 0 <= begin <= end <= n_elements. Returns "" or what is wrong with the stream.
std::string Df11DecodeRangeRef(const Df11UnitView& unit, const Df11CpuTables& tables,
                               int64_t begin, int64_t end, uint16_t* out);

// The CUDA kernel's algorithm run on the CPU with the same __host__ __device__ window code
// (df11_window.h): one window at a time, counts, a prefix sum, then the writes. Same contract
// and the same error rules as Df11DecodeCuda; used to test that logic where no GPU is present.
// late_cut: the window decoding of Df11DecodeCuda (Df11DecodeWindowGroups<true>), else that of
// the cut-per-lookup variant the benchmark compares it with (bench/df11_decode_variants.h).
std::string Df11DecodeWindowsRef(const Df11UnitView& unit, int64_t begin, int64_t end,
                                 uint16_t* out, bool late_cut = true);

#if DF11_WITH_CUDA
// A unit resident on the device, as the kernel takes it (see the map in df11_layout.h): a view
// that a Df11DeviceBuffer owns and builds. The kernel requires
// `encoded` and `sign_mantissa` 16-byte aligned, `luts` and `output_positions` 4-byte aligned,
// `encoded` readable (zero-filled) up to Df11BlockCount(n_bytes) * 4096 + 16 bytes and
// `sign_mantissa` readable up to n_elements rounded up to a multiple of 16.
struct Df11DeviceUnit {
  Df11UnitView view;                                // device pointers, validated on the host
  const uint8_t* host_output_positions = nullptr;  // host copy, for launch geometry
  int64_t n_position_blocks = 0;                    // n_output_positions - 1
  int32_t max_block_elements = 0;                   // max over b of positions[b + 1] - [b]
  // Device copy of Df11CpuTables::multi built from the unit's tables (8-byte aligned).
  const uint64_t* multi = nullptr;
};

// Decodes elements [begin, end) into out[0, end - begin) (16-byte aligned) on `stream`. No
// allocation and no host synchronisation, so it can be captured in a CUDA graph. When the unit
// is inconsistent, *error_flag (a device int, may be null) gets non-zero bits: 1 bad code,
// 2 gap mismatch, 4 count mismatch, 8 code past the stream's end.
// Windows are decoded with up to four codes per lookup in the unit's multi-code table (which
// Df11DeviceBuffer builds). The grid holds as many CUDA blocks as fit on the device at once (at
// most one per format block in the range); each walks format blocks with a stride, so the tables
// are loaded into shared memory once per CUDA block. grid_fraction in (0, 1] caps the grid at
// that share of them (at least one): a decode running beside other kernels on another stream can
// leave them SMs. One block uses the multi-code table (32 KB), the stored tables and two bytes
// per element of the unit's largest block in shared memory: ~62 KB for typical weights, at most
// ~102 KB (the launcher raises the kernel's dynamic limit above the default 48 KB once).
void Df11DecodeCuda(const Df11DeviceUnit& unit, int64_t begin, int64_t end, uint16_t* out,
                    int* error_flag, cudaStream_t stream, double grid_fraction = 1.0);
#endif

}  // namespace df11
