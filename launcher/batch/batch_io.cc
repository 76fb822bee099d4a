// SPDX-License-Identifier: Apache-2.0
#include "launcher/batch/batch_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace df11 {
namespace {

// Reads an optional numeric field into *out; an error message when it has the wrong type/range.
template <typename T>
std::string ReadNumber(const nlohmann::json& j, const char* key, double lo, double hi, T* out) {
  if (!j.contains(key) || j[key].is_null()) return "";
  if (!j[key].is_number()) return std::string("\"") + key + "\" must be a number";
  const double v = j[key].get<double>();
  if (v < lo || v > hi) {
    return std::string("\"") + key + "\" = " + j[key].dump() + " is outside [" +
           nlohmann::json(lo).dump() + ", " + nlohmann::json(hi).dump() + "]";
  }
  *out = static_cast<T>(v);
  return "";
}

}  // namespace

StatusOr<std::vector<int32_t>> EncodePrompt(const std::string& prompt, bool chat,
                                            const Tokenizer& tokenizer,
                                            const ChatTemplate* chat_template) {
  if (!chat) return tokenizer.Encode(prompt, /*add_special_tokens=*/true);
  if (chat_template == nullptr) {
    return Status::InvalidArgument("the model has no chat template (tokenizer_config.json)");
  }
  std::vector<ChatMessage> messages = {{"user", prompt}};
  DF11_ASSIGN_OR_RETURN(std::string text, chat_template->Apply(messages));
  return tokenizer.Encode(text, !chat_template->adds_bos());
}

namespace {

// Parses one request; `fixed_id`: the custom_id is given, not read from the JSON.
BatchItem ParseRequest(const std::string& line, const std::string& where,
                       const std::string& default_id, bool fixed_id,
                       const BatchDefaults& defaults, const Tokenizer& tokenizer,
                       const ChatTemplate* chat) {
  BatchItem item;
  item.custom_id = default_id;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    // e.g. "... syntax error while parsing value - invalid string: ill-formed UTF-8 byte"
    item.error = where + "not valid JSON: " + e.what();
    return item;
  }
  if (!j.is_object()) {
    item.error = where + "expected a JSON object";
    return item;
  }
  if (!fixed_id && j.contains("custom_id")) {
    if (!j["custom_id"].is_string()) {
      item.error = where + "\"custom_id\" must be a string";
      return item;
    }
    item.custom_id = j["custom_id"].get<std::string>();
  }
  // OpenAI batch form: the request is under "body".
  const nlohmann::json& body = j.contains("body") && j["body"].is_object() ? j["body"] : j;
  GenerationRequest r;
  r.id = item.custom_id;
  r.max_tokens = defaults.max_tokens;
  r.sampling = defaults.sampling;
  r.seed = defaults.seed;
  std::string err;
  for (const std::string& e :
       {ReadNumber(body, "max_tokens", 1, 1e9, &r.max_tokens),
        ReadNumber(body, "temperature", 0, 100, &r.sampling.temperature),
        ReadNumber(body, "top_p", 0, 1, &r.sampling.top_p),
        ReadNumber(body, "top_k", 0, 1e9, &r.sampling.top_k),
        ReadNumber(body, "min_p", 0, 1, &r.sampling.min_p),
        ReadNumber(body, "repetition_penalty", 1e-6, 100, &r.sampling.repetition_penalty),
        ReadNumber(body, "seed", 0, 1.8e19, &r.seed)}) {
    if (err.empty()) err = e;
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const auto& s = body["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && std::all_of(s.begin(), s.end(), [](const auto& x) { return x.is_string(); })) {
      for (const auto& x : s) r.stop.push_back(x.get<std::string>());
    } else if (err.empty()) {
      err = "\"stop\" must be a string or a list of strings";
    }
  }
  if (!err.empty()) {
    item.error = where + err;
    return item;
  }
  StatusOr<std::vector<int32_t>> ids = Status::InvalidArgument("needs \"prompt\" or \"messages\"");
  if (body.contains("messages")) {
    auto messages = ParseMessages(body);
    if (!messages.ok()) {
      item.error = where + messages.status().message();
      return item;
    }
    if (chat == nullptr) {
      item.error = where + "\"messages\" needs a chat template, and the model has none";
      return item;
    }
    auto text = chat->Apply(*messages);
    if (!text.ok()) {
      item.error = where + text.status().message();
      return item;
    }
    ids = tokenizer.Encode(*text, !chat->adds_bos());
  } else if (body.contains("prompt")) {
    if (!body["prompt"].is_string()) {
      item.error = where + "\"prompt\" must be a string";
      return item;
    }
    ids = EncodePrompt(body["prompt"].get<std::string>(), defaults.chat, tokenizer, chat);
  }
  if (!ids.ok()) {
    item.error = where + ids.status().message();
    return item;
  }
  r.prompt = std::move(ids).value();
  item.request = std::move(r);
  return item;
}

}  // namespace

BatchItem ParseBatchLine(const std::string& line, int64_t line_number,
                         const BatchDefaults& defaults, const Tokenizer& tokenizer,
                         const ChatTemplate* chat) {
  return ParseRequest(line, "line " + std::to_string(line_number) + ": ",
                      "line-" + std::to_string(line_number), false, defaults, tokenizer, chat);
}

BatchItem ParseBatchRequest(const std::string& request_json, const std::string& custom_id,
                            const BatchDefaults& defaults, const Tokenizer& tokenizer,
                            const ChatTemplate* chat) {
  return ParseRequest(request_json, "", custom_id, true, defaults, tokenizer, chat);
}

nlohmann::json ResultToJson(const GenerationResult& r) {
  if (!r.error.empty()) return ErrorToJson(r.id, r.error);
  nlohmann::json j;
  j["custom_id"] = r.id;
  j["text"] = r.text;
  j["token_ids"] = r.tokens;
  j["finish_reason"] = r.finish_reason;
  j["usage"] = {{"prompt_tokens", r.prompt_tokens},
                {"completion_tokens", static_cast<int64_t>(r.tokens.size())}};
  return j;
}

nlohmann::json ErrorToJson(const std::string& custom_id, const std::string& error) {
  return {{"custom_id", custom_id}, {"error", error}};
}

std::string ToJsonLine(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

StatusOr<std::unique_ptr<ResultFile>> ResultFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::IoError("--output " + path + ": cannot open: " + std::strerror(errno));
  }
  std::unique_ptr<ResultFile> file(new ResultFile(path, fd));
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof(buf), static_cast<off_t>(text.size()));
    if (n < 0) return Status::IoError("--output " + path + ": read: " + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  // Complete lines; `keep` is where the last good line ends.
  size_t at = 0, keep = 0;
  while (at < text.size()) {
    const size_t nl = text.find('\n', at);
    if (nl == std::string::npos) break;  // no newline: torn
    nlohmann::json j = nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(at),
                                             text.begin() + static_cast<std::ptrdiff_t>(nl),
                                             nullptr, /*allow_exceptions=*/false);
    const bool last = nl + 1 == text.size();
    if (j.is_discarded()) {
      if (last) break;  // a torn last line
      at = nl + 1;      // damage in the middle is left alone (and not counted as done)
      keep = at;
      continue;
    }
    if (j.is_object() && j.contains("custom_id") && j["custom_id"].is_string()) {
      file->done_.insert(j["custom_id"].get<std::string>());
    }
    at = nl + 1;
    keep = at;
  }
  if (keep < text.size()) {
    file->truncated_ = static_cast<int64_t>(text.size() - keep);
    if (::ftruncate(fd, static_cast<off_t>(keep)) != 0 || ::fsync(fd) != 0) {
      return Status::IoError("--output " + path + ": cannot truncate its torn last line: " +
                             std::strerror(errno));
    }
  }
  return file;
}

ResultFile::~ResultFile() { ::close(fd_); }

Status ResultFile::Append(const std::vector<std::string>& lines) {
  for (const std::string& line : lines) {
    // One write(2) per line; a regular file takes it whole unless the disk fills up, and then
    // the loop finishes it (a crash in between leaves a torn last line, truncated on resume).
    size_t done = 0;
    while (done < line.size()) {
      const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::IoError("--output " + path_ + ": write: " + std::strerror(errno));
      done += static_cast<size_t>(n);
    }
  }
  if (::fsync(fd_) != 0) {
    return Status::IoError("--output " + path_ + ": fsync: " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace df11
