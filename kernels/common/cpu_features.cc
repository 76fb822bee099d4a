// SPDX-License-Identifier: Apache-2.0
#include "kernels/common/cpu_features.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "kernels/common/check.h"

#if DF11_HAS_X86_LEVELS
#include <cpuid.h>
#endif

namespace df11 {
namespace {

constexpr const char* kLevelNames[] = {"scalar", "avx2", "avx512", "avx512bf16"};

#if DF11_HAS_X86_LEVELS
uint64_t EnabledRegisterState() {  // XCR0: which register files the OS saves and restores
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuLevel Detect() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return CpuLevel::kScalar;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return CpuLevel::kScalar;
  const uint64_t xcr0 = EnabledRegisterState();
  if ((xcr0 & 0x6) != 0x6) return CpuLevel::kScalar;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return CpuLevel::kScalar;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512dq = b & (1u << 17),
             avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  if (!avx2 || !fma || !f16c) return CpuLevel::kScalar;
  const bool zmm_state = (xcr0 & 0xE0) == 0xE0;  // opmask and ZMM state
  if (!zmm_state || !avx512f || !avx512dq || !avx512bw || !avx512vl) return CpuLevel::kAvx2;
  unsigned a1 = 0, b1, c1, d1;
  __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
  return (a1 & (1u << 5)) ? CpuLevel::kAvx512Bf16 : CpuLevel::kAvx512;
}
#else
CpuLevel Detect() { return CpuLevel::kScalar; }
#endif

CpuLevel Lower(CpuLevel a, CpuLevel b) { return static_cast<int>(a) < static_cast<int>(b) ? a : b; }

std::atomic<int> g_active{-1};  // -1: not chosen yet
std::once_flag g_from_environment;

}  // namespace

const char* CpuLevelName(CpuLevel level) { return kLevelNames[static_cast<int>(level)]; }

bool ParseCpuLevel(std::string_view name, CpuLevel* level) {
  for (int i = 0; i < 4; ++i) {
    if (name == kLevelNames[i]) {
      *level = static_cast<CpuLevel>(i);
      return true;
    }
  }
  return false;
}

CpuLevel DetectedCpuLevel() {
  static const CpuLevel detected = Detect();
  return detected;
}

std::string CpuLevelEnvironmentError() {
  const char* value = std::getenv(kCpuLevelVariable);
  CpuLevel level;
  if (value == nullptr || ParseCpuLevel(value, &level)) return "";
  return std::string(kCpuLevelVariable) + "='" + value +
         "': expected one of scalar, avx2, avx512, avx512bf16";
}

CpuLevel ActiveCpuLevel() {
  const int active = g_active.load(std::memory_order_acquire);
  if (active >= 0) [[likely]] return static_cast<CpuLevel>(active);
  std::call_once(g_from_environment, [] {
    const std::string error = CpuLevelEnvironmentError();
    DF11_CHECK_MSG(error.empty(), error);
    CpuLevel level = DetectedCpuLevel();
    if (const char* value = std::getenv(kCpuLevelVariable)) {
      CpuLevel wanted;
      ParseCpuLevel(value, &wanted);
      level = Lower(level, wanted);
    }
    int expected = -1;  // a SetCpuLevel that came first wins
    g_active.compare_exchange_strong(expected, static_cast<int>(level));
  });
  return static_cast<CpuLevel>(g_active.load(std::memory_order_acquire));
}

CpuLevel SetCpuLevel(CpuLevel level) {
  const CpuLevel set = Lower(level, DetectedCpuLevel());
  g_active.store(static_cast<int>(set), std::memory_order_release);
  return set;
}

}  // namespace df11
