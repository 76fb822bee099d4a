// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

namespace df11 {
namespace {

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

std::string Nfc(std::string_view text) {
  if (IsAscii(text)) return std::string(text);  // ASCII is always in NFC
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &out,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  // The caller validated the UTF-8, so utf8proc cannot fail on it.
  if (n < 0) return std::string(text);
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(out, &std::free);
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

std::string ReplaceAll(std::string_view text, const std::string& from, const std::string& to) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace

Status Normalizer::AddSteps(const nlohmann::json& config, std::vector<Step>* steps) {
  if (config.is_null()) return Status::Ok();
  const std::string type = config.value("type", "");
  if (type == "Sequence") {
    for (const nlohmann::json& child : config.at("normalizers")) {
      DF11_RETURN_IF_ERROR(AddSteps(child, steps));
    }
  } else if (type == "NFC") {
    steps->push_back({Step::Kind::kNfc, "", ""});
  } else if (type == "Replace") {
    const nlohmann::json& pattern = config.at("pattern");
    if (!pattern.contains("String") || pattern.at("String").get<std::string>().empty()) {
      return Status::Unimplemented(
          "normalizer Replace: only a non-empty literal \"String\" pattern is supported");
    }
    steps->push_back({Step::Kind::kReplace, pattern.at("String").get<std::string>(),
                      config.at("content").get<std::string>()});
  } else {
    return Status::Unimplemented("normalizer type \"" + type +
                                 "\" is not supported (supported: NFC, Replace, Sequence)");
  }
  return Status::Ok();
}

StatusOr<Normalizer> Normalizer::FromJson(const nlohmann::json& config) {
  Normalizer normalizer;
  DF11_RETURN_IF_ERROR(AddSteps(config, &normalizer.steps_));
  return normalizer;
}

std::string Normalizer::Apply(std::string_view text) const {
  std::string current(text);
  for (const Step& step : steps_) {
    current =
        step.kind == Step::Kind::kNfc ? Nfc(current) : ReplaceAll(current, step.from, step.to);
  }
  return current;
}

}  // namespace df11
