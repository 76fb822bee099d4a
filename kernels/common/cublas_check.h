// SPDX-License-Identifier: Apache-2.0
// DF11_CUBLAS_CHECK: the cuBLAS member of the check-macro family (see check.h). Include only from
// CUDA-enabled translation units that link CUDA::cublas.
#pragma once

#include <cublas_api.h>

#include <string>

#include "kernels/common/check.h"

#define DF11_CUBLAS_CHECK(expr)                                                         \
  do {                                                                                  \
    cublasStatus_t df11_cublas_status_ = (expr);                                        \
    if (df11_cublas_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                      \
      ::df11::FatalError(__FILE__, __LINE__, #expr,                                     \
                         std::string(cublasGetStatusName(df11_cublas_status_)) + ": " + \
                             cublasGetStatusString(df11_cublas_status_));               \
  } while (0)
