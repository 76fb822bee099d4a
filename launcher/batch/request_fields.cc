// SPDX-License-Identifier: Apache-2.0
#include "launcher/batch/request_fields.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace df11 {
namespace {

using nlohmann::json;

// A DOM parser that remembers the last key and the first error, with its position and token.
class RecordingSax : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  explicit RecordingSax(json* out) : json_sax_dom_parser(*out, /*allow_exceptions=*/false) {}
  bool key(std::string& k) {
    last_key = k;
    return json_sax_dom_parser::key(k);
  }
  template <class Exception>
  bool parse_error(size_t position, const std::string& token, const Exception& e) {
    error_id = e.id;
    error_end = position;
    error_token = token;
    error_text = e.what();
    return false;
  }
  std::string last_key, error_token, error_text;
  int error_id = 0;
  size_t error_end = 0;
};

std::string Quoted(const char* key) { return std::string("\"") + key + "\""; }

// Reads the optional integer field `key` (absent or null: *out unchanged) within [lo, hi]; `rule`
// says what is expected. A float with an integral value (1e9) counts, 1.5 does not.
template <typename T>
std::string ReadInteger(const json& body, const char* key, T lo, T hi, const char* rule, T* out) {
  if (!body.contains(key) || body[key].is_null()) return "";
  const json& v = body[key];
  const std::string bad = Quoted(key) + " = " + v.dump() + ": expected " + rule;
  if (!v.is_number()) return bad;
  // long double holds every 64-bit integer exactly, so the bounds compare exactly.
  long double x = 0;
  if (v.is_number_unsigned()) {
    x = static_cast<long double>(v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    x = static_cast<long double>(v.get<int64_t>());
  } else {
    const double d = v.get<double>();
    if (d != std::floor(d)) return bad;
    x = d;
  }
  if (x < static_cast<long double>(lo) || x > static_cast<long double>(hi)) return bad;
  *out = v.is_number_unsigned() ? static_cast<T>(v.get<uint64_t>())
         : v.is_number_integer() ? static_cast<T>(v.get<int64_t>())
                                 : static_cast<T>(x);
  return "";
}

// Reads the optional number field `key` into the float *out (absent or null: unchanged); it must
// stay finite as a float. Its range is the sampler's (checked after all fields are read).
std::string ReadFloat(const json& body, const char* key, float* out) {
  if (!body.contains(key) || body[key].is_null()) return "";
  const json& v = body[key];
  if (!v.is_number()) return Quoted(key) + " = " + v.dump() + ": expected a number";
  const float f = static_cast<float>(v.get<double>());
  if (!std::isfinite(f)) {
    return Quoted(key) + " = " + v.dump() + ": out of range (a float holds at most 3.4e38)";
  }
  *out = f;
  return "";
}

}  // namespace

std::string ParseRequestJson(const std::string& line, json* out, std::string* overflow) {
  std::string text = line;
  for (int tries = 0;; ++tries) {
    *out = json();
    RecordingSax sax(out);
    if (json::sax_parse(text, &sax)) return "";
    const size_t begin = sax.error_end - std::min(sax.error_end, sax.error_token.size());
    const bool number_overflow = sax.error_id == 406 && tries < 16 &&
                                 text.compare(begin, sax.error_token.size(), sax.error_token) == 0;
    if (!number_overflow) {
      // e.g. "... syntax error while parsing value - invalid string: ill-formed UTF-8 byte"
      return "not valid JSON: " + sax.error_text;
    }
    if (overflow->empty()) {
      *overflow = "\"" + sax.last_key + "\" = " + sax.error_token +
                  ": out of range (a double holds at most 1.8e308)";
    }
    text.replace(begin, sax.error_token.size(), "0");
  }
}

std::string ReadRequestFields(const json& body, RequestFields* r) {
  constexpr int kIntMax = std::numeric_limits<int>::max(), kIntMin = std::numeric_limits<int>::min();
  for (const std::string& e :
       {ReadInteger<int64_t>(body, "max_tokens", 1, std::numeric_limits<int64_t>::max(),
                             "an integer >= 1 (new tokens)", &r->max_tokens),
        ReadFloat(body, "temperature", &r->sampling.temperature),
        ReadFloat(body, "top_p", &r->sampling.top_p),
        ReadInteger<int>(body, "top_k", kIntMin, kIntMax, "a 32-bit integer", &r->sampling.top_k),
        ReadFloat(body, "min_p", &r->sampling.min_p),
        ReadFloat(body, "repetition_penalty", &r->sampling.repetition_penalty),
        ReadInteger<uint64_t>(body, "seed", 0, std::numeric_limits<uint64_t>::max(),
                              "an integer in [0, 2^64)", &r->seed)}) {
    if (!e.empty()) return e;
  }
  if (std::string e = SamplingParamsError(r->sampling); !e.empty()) return e;
  if (body.contains("speculative") && !body["speculative"].is_null()) {
    const json& v = body["speculative"];
    if (!v.is_boolean()) {
      return "\"speculative\" = " + v.dump() +
             ": expected true or false (false: no drafted tokens)";
    }
    r->speculative = v.get<bool>();
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const auto& s = body["stop"];
    if (s.is_string()) {
      r->stop.push_back(s.get<std::string>());
    } else if (s.is_array() &&
               std::all_of(s.begin(), s.end(), [](const auto& x) { return x.is_string(); })) {
      for (const auto& x : s) r->stop.push_back(x.get<std::string>());
    } else {
      return "\"stop\" must be a string or a list of strings";
    }
  }
  return "";
}

}  // namespace df11
