// SPDX-License-Identifier: Apache-2.0
// DF11_HD marks functions compiled for both the host and the device, so that CPU tests exercise
// the same per-thread logic the CUDA kernels run.
#pragma once

#if defined(__CUDACC__)
#define DF11_HD __host__ __device__ __forceinline__
#else
#define DF11_HD inline
#endif
