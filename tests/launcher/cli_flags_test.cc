// SPDX-License-Identifier: Apache-2.0
// The flag checks every tool uses: each accepts exactly the values it names, reads integers as
// CLI11 converts them (so the value checked is the value used), refuses NaN, infinities and
// overflowing text, and a refused flag makes ParseFlags return exit status 2 (--help: 0).
#include "launcher/cli_flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace df11 {
namespace {

// "" when `v` accepts `text`, else its message.
std::string Check(const CLI::Validator& v, std::string text) { return v(text); }

TEST(CliFlags, IntegerRangesNameTheirBoundsAndTakeWhatCli11Reads) {
  const CLI::Validator positive = IntegerIn(1);
  EXPECT_EQ(Check(positive, "1"), "");
  EXPECT_EQ(Check(positive, "9223372036854775807"), "");
  EXPECT_EQ(Check(positive, "0"), "'0' is not an integer >= 1");
  for (const char* bad : {"1.5", "1e3", "", " 5", "5 ", "x", "9223372036854775808", "nan"}) {
    EXPECT_NE(Check(positive, bad), "") << bad;
  }
  const CLI::Validator step = IntegerIn(1, int64_t{1} << 24);
  EXPECT_EQ(Check(step, "16777217"), "'16777217' is not an integer in [1, 16777216]");
  EXPECT_EQ(Check(step, "0x10"), "");  // CLI11 reads 16
  EXPECT_EQ(Check(IntegerIn(0, 9), "010"), "");  // octal: CLI11 reads 8
}

TEST(CliFlags, NumberRangesRefuseNanInfinityAndOverflow) {
  const CLI::Validator fraction = NumberIn(0.01, 1.0);
  EXPECT_EQ(Check(fraction, "0.5"), "");
  EXPECT_EQ(Check(fraction, "1"), "");
  EXPECT_EQ(Check(fraction, "1.5"), "'1.5' is not a number in [0.01, 1]");
  const CLI::Validator open = NumberIn(0, 60, /*lo_open=*/true);
  EXPECT_EQ(Check(open, "0"), "'0' is not a number in (0, 60]");
  EXPECT_EQ(Check(open, "1e-300"), "");
  for (const char* bad : {"nan", "inf", "-inf", "1e999", "", "0.5x"}) {
    EXPECT_NE(Check(FiniteNumber(), bad), "") << bad;
    EXPECT_NE(Check(NonNegativeNumber(), bad), "") << bad;
    EXPECT_NE(Check(PositiveNumber(), bad), "") << bad;
  }
  EXPECT_EQ(Check(NonNegativeNumber(), "0"), "");
  EXPECT_EQ(Check(PositiveNumber(), "0"), "'0' is not a finite number > 0");
  EXPECT_EQ(Check(Unsigned64(), "18446744073709551615"), "");
  EXPECT_EQ(Check(Unsigned64(), "18446744073709551616"),
            "'18446744073709551616' is not an integer in [0, 2^64)");
  EXPECT_EQ(Check(Unsigned64(), "-1"), "'-1' is not an integer in [0, 2^64)");
}

TEST(CliFlags, ParseFlagsExitsTwoOnAFlagErrorAndZeroOnHelp) {
  auto parse = [](std::vector<std::string> args) {
    CLI::App app{"test"};
    int64_t n = 1;
    app.add_option("-n,--max-tokens", n)->check(IntegerIn(1));
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return ParseFlags(&app, static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_EQ(parse({"t", "-n", "3"}), std::nullopt);
  EXPECT_EQ(parse({"t", "-n", "0"}), 2);
  EXPECT_EQ(parse({"t", "--unknown"}), 2);
  EXPECT_EQ(parse({"t", "--help"}), 0);
  EXPECT_EQ(ExitCode(Status::InvalidArgument("x")), 2);
  EXPECT_EQ(ExitCode(Status::IoError("x")), 1);
  EXPECT_EQ(ExitCode(Status::Ok()), 0);
}

}  // namespace
}  // namespace df11
