// SPDX-License-Identifier: Apache-2.0
#include "launcher/cli_flags.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

namespace df11 {
namespace {

// The whole of `text` as a finite double; false for "nan", "inf", "1e999", "2x", "".
bool ParseFinite(const std::string& text, double* out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

// The whole of `text` as a 64-bit integer.
bool ParseInteger(const std::string& text, int64_t* out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 0);  // as CLI11 reads it (0x10, 010)
  if (end != text.c_str() + text.size() || errno == ERANGE) return false;
  *out = v;
  return true;
}

// Integral bounds in full ("1000000", not "1e+06"), others as %g ("0.01").
std::string Number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), v == std::floor(v) && std::fabs(v) < 1e15 ? "%.0f" : "%g", v);
  return buf;
}

CLI::Validator Make(const std::string& expected, std::function<bool(const std::string&)> ok) {
  return CLI::Validator(
      [expected, ok](std::string& input) -> std::string {
        if (ok(input)) return "";
        return "'" + input + "' is not " + expected;
      },
      expected);
}

}  // namespace

std::optional<int> ParseFlags(CLI::App* app, int argc, char** argv) {
  try {
    app->parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app->exit(e);
    return code == 0 ? 0 : 2;
  }
  return std::nullopt;
}

CLI::Validator IntegerIn(int64_t lo, int64_t hi) {
  const std::string expected =
      hi == std::numeric_limits<int64_t>::max()
          ? "an integer >= " + std::to_string(lo)
          : "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return Make(expected, [lo, hi](const std::string& s) {
    int64_t v = 0;
    return ParseInteger(s, &v) && v >= lo && v <= hi;
  });
}

CLI::Validator Unsigned64() {
  return Make("an integer in [0, 2^64)", [](const std::string& s) {
    if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0]))) return false;
    errno = 0;
    char* end = nullptr;
    std::strtoull(s.c_str(), &end, 0);  // as CLI11 reads it
    return end == s.c_str() + s.size() && errno != ERANGE;
  });
}

CLI::Validator NumberIn(double lo, double hi, bool lo_open) {
  const std::string expected =
      "a number in " + std::string(lo_open ? "(" : "[") + Number(lo) + ", " + Number(hi) + "]";
  return Make(expected, [lo, hi, lo_open](const std::string& s) {
    double v = 0;
    return ParseFinite(s, &v) && (lo_open ? v > lo : v >= lo) && v <= hi;
  });
}

CLI::Validator PositiveNumber() {
  return Make("a finite number > 0", [](const std::string& s) {
    double v = 0;
    return ParseFinite(s, &v) && v > 0;
  });
}

CLI::Validator NonNegativeNumber() {
  return Make("a finite number >= 0", [](const std::string& s) {
    double v = 0;
    return ParseFinite(s, &v) && v >= 0;
  });
}

CLI::Validator FiniteNumber() {
  return Make("a finite number", [](const std::string& s) {
    double v = 0;
    return ParseFinite(s, &v);
  });
}

}  // namespace df11
