// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "runtime/text/byte_level.h"
#include "runtime/text/utf8.h"

namespace df11 {

// A compiled PCRE2 pattern over UTF-8 with Unicode properties (\s, \p{L}, case folding).
class Regex {
 public:
  static StatusOr<std::shared_ptr<const Regex>> Compile(const std::string& pattern, bool literal) {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    // PCRE2_LITERAL does not combine with PCRE2_UCP (which only matters for classes anyway).
    const uint32_t options = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     options, &error, &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return Status::InvalidArgument("pre_tokenizer regex \"" + pattern +
                                     "\" does not compile at " + std::to_string(error_offset) +
                                     ": " + reinterpret_cast<const char*>(message));
    }
    // JIT is an optimisation; the interpreter is used where JIT is unavailable.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    return std::shared_ptr<const Regex>(new Regex(code));
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of all non-overlapping matches in `text` to `out`.
  void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_, nullptr);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t offset = 0;
    while (offset <= text.size()) {
      const int rc =
          pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, data, nullptr);
      if (rc < 0) break;  // PCRE2_ERROR_NOMATCH, or a resource limit on absurd input
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
      const size_t begin = ovector[0], end = ovector[1];
      if (end > begin) {
        out->emplace_back(begin, end);
        offset = end;
      } else {
        // Empty match: step over one character.
        if (begin >= text.size()) break;
        offset = begin + ScanUtf8(text, begin).length;
      }
    }
    pcre2_match_data_free(data);
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
};

namespace {

// GPT-2's pattern, used by ByteLevel with use_regex = true.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace

Status PreTokenizer::AddSteps(const nlohmann::json& config, std::vector<Step>* steps) {
  if (config.is_null()) return Status::Ok();
  const std::string type = config.value("type", "");
  if (type == "Sequence") {
    for (const nlohmann::json& child : config.at("pretokenizers")) {
      DF11_RETURN_IF_ERROR(AddSteps(child, steps));
    }
    return Status::Ok();
  }
  Step step;
  if (type == "Split") {
    step.kind = Step::Kind::kSplit;
    const nlohmann::json& pattern = config.at("pattern");
    const bool literal = pattern.contains("String");
    const std::string text = pattern.at(literal ? "String" : "Regex").get<std::string>();
    DF11_ASSIGN_OR_RETURN(step.regex, Regex::Compile(text, literal));
    const std::string behavior = config.at("behavior").get<std::string>();
    if (behavior == "Isolated") {
      step.behavior = Behavior::kIsolated;
    } else if (behavior == "Removed") {
      step.behavior = Behavior::kRemoved;
    } else if (behavior == "MergedWithPrevious") {
      step.behavior = Behavior::kMergedWithPrevious;
    } else if (behavior == "MergedWithNext") {
      step.behavior = Behavior::kMergedWithNext;
    } else {
      return Status::Unimplemented("pre_tokenizer Split behavior \"" + behavior +
                                   "\" is not supported");
    }
    step.invert = config.value("invert", false);
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
    step.add_prefix_space = config.value("add_prefix_space", false);
    if (config.value("use_regex", true)) {
      DF11_ASSIGN_OR_RETURN(step.regex, Regex::Compile(kGpt2Pattern, /*literal=*/false));
    }
  } else {
    return Status::Unimplemented("pre_tokenizer type \"" + type +
                                 "\" is not supported (supported: Split, ByteLevel, Sequence)");
  }
  steps->push_back(std::move(step));
  return Status::Ok();
}

StatusOr<PreTokenizer> PreTokenizer::FromJson(const nlohmann::json& config) {
  PreTokenizer pre_tokenizer;
  DF11_RETURN_IF_ERROR(AddSteps(config, &pre_tokenizer.steps_));
  return pre_tokenizer;
}

void PreTokenizer::ApplyStep(const Step& step, std::string_view piece,
                             std::vector<std::string>* out) {
  std::vector<std::pair<size_t, size_t>> matches;
  if (step.kind == Step::Kind::kByteLevel) {
    std::string prefixed;
    if (step.add_prefix_space && !piece.empty() && piece[0] != ' ') {
      prefixed = " " + std::string(piece);
      piece = prefixed;
    }
    // The GPT-2 pattern covers every character, so its matches are the words.
    if (step.regex) {
      step.regex->FindAll(piece, &matches);
    } else {
      matches.assign(1, {0, piece.size()});
    }
    for (const auto& [begin, end] : matches) {
      std::string word;
      AppendByteLevel(piece.substr(begin, end - begin), &word);
      out->push_back(std::move(word));
    }
    return;
  }
  step.regex->FindAll(piece, &matches);

  // kSplit: cut `piece` into alternating (gap, match) segments; with invert the roles swap.
  struct Segment {
    size_t begin, end;
    bool is_delimiter;
  };
  std::vector<Segment> segments;
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > last) segments.push_back({last, begin, step.invert});
    segments.push_back({begin, end, !step.invert});
    last = end;
  }
  if (last < piece.size()) segments.push_back({last, piece.size(), step.invert});

  std::string pending;  // kMergedWithNext: a delimiter waiting for the segment after it
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& s = segments[i];
    std::string_view text = piece.substr(s.begin, s.end - s.begin);
    if (!s.is_delimiter) {
      out->push_back(pending + std::string(text));
      pending.clear();
      continue;
    }
    switch (step.behavior) {
      case Behavior::kIsolated:
        out->emplace_back(text);
        break;
      case Behavior::kRemoved:
        break;
      case Behavior::kMergedWithPrevious:
        if (i > 0 && !segments[i - 1].is_delimiter) {
          out->back().append(text);
        } else {
          out->emplace_back(text);
        }
        break;
      case Behavior::kMergedWithNext:
        if (i + 1 < segments.size() && !segments[i + 1].is_delimiter) {
          pending = std::string(text);
        } else {
          out->emplace_back(text);
        }
        break;
    }
  }
}

std::vector<std::string> PreTokenizer::Split(std::string_view text) const {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.emplace_back(text);
  for (const Step& step : steps_) {
    std::vector<std::string> next;
    for (const std::string& piece : pieces) ApplyStep(step, piece, &next);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace df11
