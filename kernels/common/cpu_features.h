// SPDX-License-Identifier: Apache-2.0
// Run-time CPU dispatch: the instruction-set level kernels use is read from the CPU the process
// runs on (cpuid, and xgetbv for the OS's register state), never from the build's -march.
// Kernels for a level are ordinary functions marked DF11_TARGET_<LEVEL>, so one binary holds
// every level and runs anywhere; a kernel entry point calls ActiveCpuLevel() and picks one.
// The level may be lowered (never raised past the CPU's) by DF11_CPU_LEVEL=scalar|avx2|avx512|
// avx512bf16 in the environment, read once, or by SetCpuLevel, so each path can be tested on
// one machine. Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace df11 {

// Ordered: each level includes the ones below it.
enum class CpuLevel : int {
  kScalar = 0,      // plain C++
  kAvx2 = 1,        // AVX2 + FMA (+ F16C)
  kAvx512 = 2,      // AVX-512 F, BW, VL, DQ (+ the AVX2 level)
  kAvx512Bf16 = 3,  // AVX512_BF16 (+ the AVX-512 level)
};

// The environment variable that lowers the level.
inline constexpr const char* kCpuLevelVariable = "DF11_CPU_LEVEL";

// "scalar", "avx2", "avx512", "avx512bf16".
const char* CpuLevelName(CpuLevel level);
// false for a name CpuLevelName does not return.
bool ParseCpuLevel(std::string_view name, CpuLevel* level);

// The highest level this CPU and OS support (computed once).
CpuLevel DetectedCpuLevel();

// "" when DF11_CPU_LEVEL is unset or names a level, else a message naming the variable, its
// value and the accepted names (launchers report it as bad input before any kernel runs).
std::string CpuLevelEnvironmentError();

// The level kernels use now: DetectedCpuLevel(), lowered to DF11_CPU_LEVEL when that is set
// (a value CpuLevelEnvironmentError() refuses is fatal here), or to the last SetCpuLevel.
CpuLevel ActiveCpuLevel();

// Makes kernels use min(level, DetectedCpuLevel()) from now on; returns that level. For tests
// and benchmarks; not meant to change while kernels run on other threads.
CpuLevel SetCpuLevel(CpuLevel level);

}  // namespace df11

// Function attributes that compile one function (not its callers) for a level. A lambda inside
// such a function is not compiled for the level: call a marked function from it instead.
#if defined(__x86_64__) || defined(__i386__)
#define DF11_HAS_X86_LEVELS 1
#define DF11_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define DF11_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define DF11_TARGET_AVX512BF16 \
  __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#else
#define DF11_HAS_X86_LEVELS 0
#endif
