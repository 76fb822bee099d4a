// SPDX-License-Identifier: Apache-2.0
// DF11_CUDA_CHECK: the CUDA runtime member of the check-macro family (see check.h). Include only
// from CUDA-enabled translation units.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/common/check.h"

#define DF11_CUDA_CHECK(expr)                                                        \
  do {                                                                               \
    cudaError_t df11_cuda_err_ = (expr);                                             \
    if (df11_cuda_err_ != cudaSuccess) [[unlikely]]                                  \
      ::df11::FatalError(__FILE__, __LINE__, #expr,                                  \
                         std::string(cudaGetErrorName(df11_cuda_err_)) + ": " +      \
                             cudaGetErrorString(df11_cuda_err_));                    \
  } while (0)

// Checks the launch of the kernel just enqueued (no device synchronisation).
#define DF11_CUDA_CHECK_LAUNCH() DF11_CUDA_CHECK(cudaGetLastError())
