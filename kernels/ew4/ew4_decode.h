// SPDX-License-Identifier: Apache-2.0
// ew4 decoding to BF16 (the path for batches the fused GEMV does not take, the embedding's rows
// and the round-trip checks). Ew4ValidateView checks every field of an untrusted matrix once
// (offsets, columns, the window, and that the escape list names exactly the weights coded 0), so
// the decoders and the fused kernels read nothing outside the fields and leave no weight
// undecoded; they do not check again.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/ew4/ew4_format.h"

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// "" when the fields are consistent, else what is wrong (naming the field, row and column).
// Reads every code once. Requires the pointers to hold the sizes the view states.
std::string Ew4ValidateView(const Ew4View& view);

// Rows [row_begin, row_end) into out (row_end - row_begin, cols) as BF16 bit patterns, on
// `threads` threads. Requires a validated view and 0 <= row_begin <= row_end <= rows.
void Ew4DecodeRowsRef(const Ew4View& view, int64_t row_begin, int64_t row_end, int threads,
                      uint16_t* out);

#if DF11_WITH_CUDA
// The same on `stream` (device view, device out). No allocation or host synchronisation, so it
// can be captured in a CUDA graph.
void Ew4DecodeRowsCuda(const Ew4View& view, int64_t row_begin, int64_t row_end, uint16_t* out,
                       cudaStream_t stream);
#endif

}  // namespace df11
