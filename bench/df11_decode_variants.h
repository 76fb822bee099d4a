// SPDX-License-Identifier: Apache-2.0
// Other ways for the DF11 decode kernel (kernels/dfloat11/df11_decode_kernel.cuh) to decode its
// windows, kept beside the product's for the benchmark's side-by-side timing and for the decode
// test, which checks that every way gives the same elements and error flags. kWalk walks the
// stored tables once per code (the reference's way); kMultiCutEach is the multi-code lookup with
// every lookup checking the window's end (the earlier default, 11-13 % slower on an H100).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dfloat11/df11_decode.h"

namespace df11 {

// kMulti is Df11DecodeCuda itself.
enum class Df11DecodeVariant { kMulti, kWalk, kMultiCutEach };

// Df11DecodeCuda's contract (full grid), decoding windows the `variant` way.
void Df11DecodeVariantCuda(const Df11DeviceUnit& unit, int64_t begin, int64_t end, uint16_t* out,
                           int* error_flag, cudaStream_t stream, Df11DecodeVariant variant);

}  // namespace df11
