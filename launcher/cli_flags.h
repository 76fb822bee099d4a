// SPDX-License-Identifier: Apache-2.0
// What the command-line tools (df11, df11-run, df11-ctl, df11-coordinator) share about flags:
// the exit status of an error (2 for bad input: a refused flag, file, config or request; 1 for
// anything else), parsing with that status, and range checks whose messages print the real
// bounds ("--max-tokens: 0 is not an integer >= 1"), refusing NaN and infinities.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "runtime/core/status.h"

namespace df11 {

// Parses the command line. nullopt: go on; otherwise the process's exit status (0 after --help,
// 2 after a flag error, which is printed with the flag's name).
std::optional<int> ParseFlags(CLI::App* app, int argc, char** argv);

// An integer in [lo, hi]; the message names the bounds ("an integer in [1, 16777216]", or
// "an integer >= 1" when hi is the type's maximum).
CLI::Validator IntegerIn(int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max());
// An integer in [0, 2^64) (a seed): "-1" is refused, not read as 2^64 - 1.
CLI::Validator Unsigned64();
// A finite number in [lo, hi] (or (lo, hi] with lo_open), e.g. "a number in (0, 1]".
CLI::Validator NumberIn(double lo, double hi, bool lo_open = false);
// A finite number > 0, and one >= 0.
CLI::Validator PositiveNumber();
CLI::Validator NonNegativeNumber();
// A finite number, range checked elsewhere (e.g. by the sampler's rules).
CLI::Validator FiniteNumber();

}  // namespace df11
