// SPDX-License-Identifier: Apache-2.0
#include "launcher/control/batch_input.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "launcher/batch/request_fields.h"

namespace df11 {
namespace {

using nlohmann::json;

constexpr char kCompletions[] = "/v1/completions";
constexpr char kChatCompletions[] = "/v1/chat/completions";

std::string CheckMessages(const json& messages) {
  if (!messages.is_array() || messages.empty()) return "\"messages\" must be a non-empty list";
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return where + " must be an object";
    if (!m.contains("role") || !m["role"].is_string()) return where + ".role must be a string";
    if (!m.contains("content") || !(m["content"].is_string() || m["content"].is_array())) {
      return where + ".content must be a string or a list of parts";
    }
  }
  return "";
}

// Checks the request body; `url` is empty for the plain form.
std::string CheckBody(const json& body, const std::string& url) {
  const bool has_prompt = body.contains("prompt");
  const bool has_messages = body.contains("messages");
  if (has_prompt == has_messages) return "needs exactly one of \"prompt\" and \"messages\"";
  if (url == kCompletions && !has_prompt) return std::string(kCompletions) + " needs \"prompt\"";
  if (url == kChatCompletions && !has_messages) {
    return std::string(kChatCompletions) + " needs \"messages\"";
  }
  if (has_prompt && !body["prompt"].is_string()) return "\"prompt\" must be a string";
  if (has_messages) {
    std::string e = CheckMessages(body["messages"]);
    if (!e.empty()) return e;
  }
  // The worker's own rules (launcher/batch/request_fields.h).
  RequestFields fields;
  return ReadRequestFields(body, &fields);
}

// Checks one parsed line; returns the error, or "" when valid.
std::string CheckLine(const json& j) {
  const bool batch_form = j.contains("body") || j.contains("url") || j.contains("method");
  if (!batch_form) return CheckBody(j, "");
  if (j.contains("method") && j["method"] != "POST") return "\"method\" must be \"POST\"";
  if (!j.contains("url") || !j["url"].is_string()) return "\"url\" must be a string";
  const std::string url = j["url"].get<std::string>();
  if (url != kCompletions && url != kChatCompletions) {
    return "\"url\" = \"" + url + "\" is not " + kCompletions + " or " + kChatCompletions;
  }
  if (!j.contains("body") || !j["body"].is_object()) return "\"body\" must be an object";
  return CheckBody(j["body"], url);
}

}  // namespace

std::vector<BatchInputLine> ReadBatchInput(std::istream& in) {
  std::vector<BatchInputLine> lines;
  std::unordered_map<std::string, int64_t> first_line;  // custom_id -> line number
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); })) {
      continue;
    }
    BatchInputLine line;
    line.line_number = number;
    line.custom_id = "line-" + std::to_string(number);
    const std::string where = "line " + std::to_string(number) + ": ";
    json j;
    std::string overflow;
    std::string error = ParseRequestJson(text, &j, &overflow);
    if (!error.empty() || !j.is_object()) {
      error = "not a JSON object";
    } else if (j.contains("custom_id") && (!j["custom_id"].is_string() || j["custom_id"] == "")) {
      error = "\"custom_id\" must be a non-empty string";
    } else {
      if (j.contains("custom_id")) line.custom_id = j["custom_id"].get<std::string>();
      j["custom_id"] = line.custom_id;
      line.request_json = j.dump();
      error = overflow.empty() ? CheckLine(j) : overflow;
      auto [it, inserted] = first_line.emplace(line.custom_id, number);
      if (error.empty() && !inserted) {
        error = "duplicate custom_id \"" + line.custom_id + "\" (first on line " +
                std::to_string(it->second) + ")";
      }
    }
    if (!error.empty()) line.error = where + error;
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace df11
