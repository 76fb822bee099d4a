// SPDX-License-Identifier: Apache-2.0
// A generation request's JSON, read with one set of rules wherever a request is checked: by
// df11-ctl before it submits a batch (control/batch_input.h) and by the worker that serves it
// (batch_io.h), so the two accept exactly the same lines, and exactly what the sampler serves.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/sampling/sampling.h"

namespace df11 {

// Parses one request line into *out and returns "" or why it is not JSON. A number no double
// can hold (1e999, which nlohmann refuses) does not make the whole line unreadable: it is read
// as 0 and *overflow names it ("\"temperature\" = 1e999: out of range ..."), so the caller can
// still report the line's custom_id. Never throws.
std::string ParseRequestJson(const std::string& text, nlohmann::json* out, std::string* overflow);

// The fields of a request besides its prompt.
struct RequestFields {
  int64_t max_tokens = 128;       // "max_tokens": an integer >= 1 (new tokens; clamped to the
                                  // context by the engine)
  SamplingParams sampling;        // "temperature", "top_p", "top_k", "min_p",
                                  // "repetition_penalty": InvalidSamplingField's rules
  uint64_t seed = 0;              // "seed": an integer in [0, 2^64)
  std::vector<std::string> stop;  // "stop": a string or a list of strings
  bool speculative = true;        // "speculative": a boolean; false: no drafted tokens
};

// Reads the fields `body` (a request object, or an OpenAI "body") sets into *fields; absent and
// null fields keep their value. Returns "" or the first error, naming the field, its value and
// what it must be (a number of the wrong JSON type, a fraction where an integer goes, a value a
// float cannot hold, one the sampler refuses).
std::string ReadRequestFields(const nlohmann::json& body, RequestFields* fields);

}  // namespace df11
