// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/token_io.h"

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/text/utf8.h"

namespace df11 {
namespace {

using json = nlohmann::json;

// Runs `convert` on every non-blank line of `in` and writes its result, or {"error": ...}, as one
// line of `out`.
Status ConvertLines(std::istream& in, std::ostream& out,
                    const std::function<StatusOr<json>(const json&)>& convert) {
  std::string line;
  for (size_t line_number = 1; std::getline(in, line); ++line_number) {
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    json result;
    const size_t bad_byte = FindInvalidUtf8(line);
    json input = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (bad_byte != std::string::npos) {
      result = {{"error", "line " + std::to_string(line_number) +
                              ": invalid UTF-8 at byte " + std::to_string(bad_byte)}};
    } else if (input.is_discarded()) {
      result = {{"error", "line " + std::to_string(line_number) + ": not valid JSON"}};
    } else if (!input.is_object()) {
      result = {{"error", "line " + std::to_string(line_number) + ": expected a JSON object"}};
    } else {
      StatusOr<json> converted = convert(input);
      result = converted.ok() ? std::move(converted).value()
                              : json{{"error", "line " + std::to_string(line_number) + ": " +
                                                   converted.status().message()}};
    }
    out << result.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace) << '\n';
    if (!out) {
      return Status::IoError("cannot write output (line " + std::to_string(line_number) + ")");
    }
  }
  if (in.bad()) return Status::IoError("cannot read input");
  out.flush();
  if (!out) return Status::IoError("cannot write output");
  return Status::Ok();
}

}  // namespace

Status TokenizeJsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out, bool bos) {
  return ConvertLines(in, out, [&](const json& input) -> StatusOr<json> {
    auto it = input.find("text");
    if (it == input.end()) return Status::InvalidArgument("\"text\" is missing");
    if (!it->is_string()) {
      return Status::InvalidArgument(std::string("\"text\" must be a string, got ") +
                                     it->type_name());
    }
    DF11_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                          tokenizer.Encode(it->get_ref<const std::string&>(), false));
    if (bos && tokenizer.bos_id()) ids.insert(ids.begin(), *tokenizer.bos_id());
    return json{{"ids", ids}};
  });
}

Status DetokenizeJsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out) {
  return ConvertLines(in, out, [&](const json& input) -> StatusOr<json> {
    auto it = input.find("ids");
    if (it == input.end()) return Status::InvalidArgument("\"ids\" is missing");
    if (!it->is_array()) {
      return Status::InvalidArgument(std::string("\"ids\" must be an array, got ") +
                                     it->type_name());
    }
    std::vector<int32_t> ids;
    ids.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      const json& id = (*it)[i];
      if (!id.is_number_integer()) {
        return Status::InvalidArgument("ids[" + std::to_string(i) + "] must be an integer, got " +
                                       id.dump());
      }
      const int64_t value = id.get<int64_t>();
      if (value < 0 || value >= tokenizer.vocab_size() ||
          !tokenizer.IdToToken(static_cast<int32_t>(value))) {
        return Status::InvalidArgument("ids[" + std::to_string(i) + "] = " + id.dump() +
                                       " is not a token id of this tokenizer");
      }
      ids.push_back(static_cast<int32_t>(value));
    }
    DF11_ASSIGN_OR_RETURN(std::string text, tokenizer.Decode(ids, /*skip_special_tokens=*/false));
    return json{{"text", std::move(text)}};
  });
}

}  // namespace df11
