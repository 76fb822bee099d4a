// SPDX-License-Identifier: Apache-2.0
// The per-GEMM kernel choice for ew4 matrices (ew4_gemm_select.h): the derived rule by batch, the
// measured table's text (round trip, and errors naming the source, line and field), and the
// choice from measurements: the fastest allowed path at the batch that stands for the step,
// cuBLAS BF16 only where a raw copy is allowed, the derived rule for unmeasured shapes.
#include <gtest/gtest.h>

#include "kernels/ew4/ew4_gemm_select.h"

namespace df11 {
namespace {

using P = Ew4GemmPath;

TEST(Ew4GemmSelect, DerivedRuleByBatch) {
  EXPECT_EQ(Ew4DefaultGemmPath(1), P::kGemv);
  EXPECT_EQ(Ew4DefaultGemmPath(8), P::kGemv);
  EXPECT_EQ(Ew4DefaultGemmPath(9), P::kTensorCore);
  EXPECT_EQ(Ew4DefaultGemmPath(256), P::kTensorCore);
  EXPECT_EQ(Ew4DefaultGemmPath(257), P::kDecodeCublas);
  EXPECT_EQ(Ew4DefaultGemmPath(4096), P::kDecodeCublas);
}

const char kTable[] =
    "# measured on one GPU\n"
    "4096 4096 8 ew4_gemv 12.5\n"
    "4096 4096 8 ew4_tc 14\n"
    "4096 4096 16 ew4_tc 20\n"
    "4096 4096 16 cublas_bf16 25\n"
    "4096 4096 16 ew4_decode_cublas 60\n"
    "\n"
    "4096 4096 64 ew4_tc 30\n"
    "4096 4096 64 cublas_bf16 24\n"
    "4096 4096 256 ew4_tc 80\n"
    "4096 4096 256 cublas_bf16 50\n"
    "4096 4096 256 ew4_decode_cublas 70\n";

TEST(Ew4GemmSelect, ChoosesTheFastestAllowedMeasuredPath) {
  Ew4GemmTable table;
  ASSERT_EQ(table.Parse(kTable, "table.txt"), "");
  ASSERT_EQ(table.timings().size(), 10u);
  EXPECT_EQ(table.Choose(4096, 4096, 4, true), P::kGemv);          // measured at 8
  EXPECT_EQ(table.Choose(4096, 4096, 16, true), P::kTensorCore);
  EXPECT_EQ(table.Choose(4096, 4096, 64, true), P::kCublasBf16);   // faster, copy allowed
  EXPECT_EQ(table.Choose(4096, 4096, 64, false), P::kTensorCore);  // no room for a copy
  EXPECT_EQ(table.Choose(4096, 4096, 40, true), P::kCublasBf16);   // stands for 64
  EXPECT_EQ(table.Choose(4096, 4096, 300, true), P::kCublasBf16);  // above all: 256's rows
  EXPECT_EQ(table.Choose(4096, 4096, 300, false), P::kDecodeCublas);  // tc cannot take 300
  EXPECT_EQ(table.Choose(14336, 4096, 64, true), P::kTensorCore);  // unmeasured: derived rule
  EXPECT_EQ(table.Choose(14336, 4096, 3, true), P::kGemv);
  EXPECT_EQ(Ew4GemmTable().Choose(4096, 4096, 1000, true), P::kDecodeCublas);
}

TEST(Ew4GemmSelect, FormatReadsBack) {
  Ew4GemmTable table;
  ASSERT_EQ(table.Parse(kTable, "table.txt"), "");
  Ew4GemmTable again;
  ASSERT_EQ(again.Parse(table.Format(), "formatted"), "");
  ASSERT_EQ(again.timings().size(), table.timings().size());
  for (size_t i = 0; i < table.timings().size(); ++i) {
    const Ew4GemmTiming &a = table.timings()[i], &b = again.timings()[i];
    EXPECT_EQ(a.rows, b.rows);
    EXPECT_EQ(a.cols, b.cols);
    EXPECT_EQ(a.batch, b.batch);
    EXPECT_EQ(a.path, b.path);
    EXPECT_DOUBLE_EQ(a.microseconds, b.microseconds);
  }
}

TEST(Ew4GemmSelect, BadLinesNameTheSourceLineAndField) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"4096 4096 16 ew4_tc\n",
       "t.txt:1: expected 5 fields (ROWS COLS BATCH PATH MICROSECONDS), got 4"},
      {"# c\n0 4096 16 ew4_tc 1\n", "t.txt:2: ROWS must be an integer >= 1, got 0"},
      {"4096 -3 16 ew4_tc 1\n", "t.txt:1: COLS must be an integer >= 1, got -3"},
      {"4096 4096 x ew4_tc 1\n", "t.txt:1: BATCH must be an integer >= 1, got x"},
      {"4096 4096 16 wgmma 1\n",
       "t.txt:1: PATH must be ew4_gemv, ew4_tc, ew4_decode_cublas or cublas_bf16, got wgmma"},
      {"4096 4096 16 ew4_gemv 1\n", "t.txt:1: ew4_gemv does not run a batch of 16 tokens"},
      {"4096 4096 512 ew4_tc 1\n", "t.txt:1: ew4_tc does not run a batch of 512 tokens"},
      {"4096 4096 16 ew4_tc 0\n", "t.txt:1: MICROSECONDS must be a positive number, got 0"},
      {"4096 4096 16 ew4_tc 5us\n", "t.txt:1: MICROSECONDS must be a positive number, got 5us"},
      {"4096 4096 16 ew4_tc nan\n", "t.txt:1: MICROSECONDS must be a positive number, got nan"},
      {"", "t.txt: no timings (lines of ROWS COLS BATCH PATH MICROSECONDS)"},
      {"# ROWS COLS BATCH PATH MICROSECONDS\n\n",
       "t.txt: no timings (lines of ROWS COLS BATCH PATH MICROSECONDS)"},
  };
  for (const Case& c : cases) {
    Ew4GemmTable table;
    EXPECT_EQ(table.Parse(c.text, "t.txt"), c.error) << c.text;
    EXPECT_TRUE(table.timings().empty()) << "a failed parse adds nothing: " << c.text;
  }
}

}  // namespace
}  // namespace df11
