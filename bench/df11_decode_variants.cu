// SPDX-License-Identifier: Apache-2.0
// The decode kernel's other instances, launched as the product's is.
#include "bench/df11_decode_variants.h"

#include "kernels/dfloat11/df11_decode_kernel.cuh"

namespace df11 {

void Df11DecodeVariantCuda(const Df11DeviceUnit& unit, int64_t begin, int64_t end, uint16_t* out,
                           int* error_flag, cudaStream_t stream, Df11DecodeVariant variant) {
  switch (variant) {
    case Df11DecodeVariant::kMulti:
      Df11DecodeCuda(unit, begin, end, out, error_flag, stream);
      return;
    case Df11DecodeVariant::kWalk:
      decode_kernel::Launch(decode_kernel::Df11DecodeKernel<false, false>, /*multi=*/false, unit,
                            begin, end, out, error_flag, stream, 1.0);
      return;
    case Df11DecodeVariant::kMultiCutEach:
      decode_kernel::Launch(decode_kernel::Df11DecodeKernel<true, false>, /*multi=*/true, unit,
                            begin, end, out, error_flag, stream, 1.0);
      return;
  }
}

}  // namespace df11
