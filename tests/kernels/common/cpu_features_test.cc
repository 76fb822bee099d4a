// SPDX-License-Identifier: Apache-2.0
// Run-time CPU dispatch: the detected level is the one /proc/cpuinfo's flags imply, levels can be
// lowered but never raised past the CPU's, and level names round-trip.
#include "kernels/common/cpu_features.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace df11 {
namespace {

std::set<std::string> CpuinfoFlags() {
  std::ifstream in("/proc/cpuinfo");
  std::set<std::string> flags;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  return flags;
}

TEST(CpuFeatures, DetectedLevelIsTheOneCpuinfoImplies) {
  const std::set<std::string> f = CpuinfoFlags();
  if (f.empty()) GTEST_SKIP() << "no x86 flags in /proc/cpuinfo";
  auto has = [&f](const char* flag) { return f.count(flag) > 0; };
  CpuLevel expected = CpuLevel::kScalar;
  if (has("avx2") && has("fma") && has("f16c")) {
    expected = CpuLevel::kAvx2;
    if (has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512dq")) {
      expected = has("avx512_bf16") ? CpuLevel::kAvx512Bf16 : CpuLevel::kAvx512;
    }
  }
  EXPECT_STREQ(CpuLevelName(DetectedCpuLevel()), CpuLevelName(expected));
}

TEST(CpuFeatures, SetCpuLevelLowersButNeverRaises) {
  const CpuLevel original = ActiveCpuLevel();
  const int detected = static_cast<int>(DetectedCpuLevel());
  for (int l = 0; l <= static_cast<int>(CpuLevel::kAvx512Bf16); ++l) {
    const CpuLevel want = static_cast<CpuLevel>(l);
    const CpuLevel got = SetCpuLevel(want);
    EXPECT_EQ(static_cast<int>(got), std::min(l, detected)) << CpuLevelName(want);
    EXPECT_EQ(ActiveCpuLevel(), got);
  }
  SetCpuLevel(original);
}

TEST(CpuFeatures, NamesRoundTrip) {
  for (int l = 0; l <= static_cast<int>(CpuLevel::kAvx512Bf16); ++l) {
    CpuLevel parsed = CpuLevel::kScalar;
    ASSERT_TRUE(ParseCpuLevel(CpuLevelName(static_cast<CpuLevel>(l)), &parsed));
    EXPECT_EQ(static_cast<int>(parsed), l);
  }
  CpuLevel unused;
  for (const char* bad : {"", "AVX2", "avx-512", "sse4", "avx512_bf16"}) {
    EXPECT_FALSE(ParseCpuLevel(bad, &unused)) << bad;
  }
}

}  // namespace
}  // namespace df11
