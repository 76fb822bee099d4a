// SPDX-License-Identifier: Apache-2.0
#include "launcher/batch/batch_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "runtime/core/file_util.h"

namespace df11 {

using nlohmann::json;

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

GenerationRequest MakeRequest(std::string id, std::vector<int32_t> prompt,
                              RequestFields fields) {
  GenerationRequest r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.max_tokens = fields.max_tokens;
  r.sampling = fields.sampling;
  r.seed = fields.seed;
  r.stop = std::move(fields.stop);
  r.speculative = fields.speculative;
  return r;
}

namespace {

// Parses one request; `fixed_id`: the custom_id is given, not read from the JSON.
BatchItem ParseRequest(const std::string& line, const std::string& where,
                       const std::string& default_id, bool fixed_id,
                       const BatchDefaults& defaults, const Tokenizer& tokenizer,
                       const ChatTemplate* chat) {
  BatchItem item;
  item.custom_id = default_id;
  json j;
  std::string overflow;
  if (std::string e = ParseRequestJson(line, &j, &overflow); !e.empty()) {
    item.error = where + e;
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
  if (!overflow.empty()) {
    item.error = where + overflow;
    return item;
  }
  // OpenAI batch form: the request is under "body".
  if (j.contains("body") && !j["body"].is_object()) {
    item.error = where + "\"body\" must be an object (the request)";
    return item;
  }
  const json& body = j.contains("body") ? j["body"] : j;
  RequestFields fields = defaults.fields;
  if (std::string e = ReadRequestFields(body, &fields); !e.empty()) {
    item.error = where + e;
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
  item.request = MakeRequest(item.custom_id, std::move(ids).value(), std::move(fields));
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
  if (r.speculative) {  // ran with --speculative (and did not turn it off)
    const int64_t completion = static_cast<int64_t>(r.tokens.size());
    j["usage"]["draft_tokens"] = r.draft_tokens;
    j["usage"]["accepted_draft_tokens"] = r.accepted_tokens;
    j["usage"]["acceptance_rate"] =
        r.draft_tokens > 0 ? static_cast<double>(r.accepted_tokens) / r.draft_tokens : 0.0;
    j["usage"]["tokens_per_step"] =
        r.token_steps > 0 ? static_cast<double>(completion) / r.token_steps : 0.0;
  }
  return j;
}

nlohmann::json ErrorToJson(const std::string& custom_id, const std::string& error) {
  return {{"custom_id", custom_id}, {"error", error}};
}

std::string ToJsonLine(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

namespace {

// The length of `text`'s complete result lines (blank ones too), their custom_ids into *done.
// Every complete line must be a result line; what follows the last newline is a line cut short
// by a crash: a result line's start ('{'), or the zeros a file system may leave there. Anything
// else is not ours to append to or to cut: InvalidArgument.
StatusOr<size_t> WholeResultLines(const std::string& text, const std::string& path,
                                  std::set<std::string>* done) {
  size_t keep = 0;
  for (int64_t n = 1; keep < text.size(); ++n) {
    const size_t nl = text.find('\n', keep);
    if (nl == std::string::npos) break;
    const std::string_view line(text.data() + keep, nl - keep);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("custom_id") || !j["custom_id"].is_string()) {
        return Status::InvalidArgument(
            "--output " + path + ": line " + std::to_string(n) + " is not a result line (a JSON "
            "object with a \"custom_id\"): results are appended to a new or empty file or to "
            "the results of an earlier run; write them to another file");
      }
      done->insert(j["custom_id"].get<std::string>());
    }
    keep = nl + 1;
  }
  const std::string_view tail(text.data() + keep, text.size() - keep);
  if (!tail.empty() && tail.front() != '{' &&
      tail.find_first_not_of('\0') != std::string_view::npos) {
    return Status::InvalidArgument("--output " + path + ": its last line (no newline) is not a "
                                   "result line: write the results to another file");
  }
  return keep;
}

}  // namespace

StatusOr<std::unique_ptr<ResultFile>> ResultFile::Open(const std::string& path) {
  // O_NONBLOCK: opening a pipe must not wait for a reader (it is refused below).
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644);
  if (fd < 0) {
    return Status::InvalidArgument("--output " + path + ": cannot open for appending: " +
                                   std::strerror(errno));
  }
  std::unique_ptr<ResultFile> file(new ResultFile(path, fd));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return Status::IoError("--output " + path + ": stat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("--output " + path + " is " + FileKindOf(st.st_mode) +
                                   ": expected a regular file (results are appended to it)");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::FailedPrecondition(
          "--output " + path + ": another df11-run holds it (an exclusive lock): wait for that "
          "run to finish, or write to another file");
    }
    return Status::IoError("--output " + path + ": flock: " + std::strerror(errno));
  }
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof(buf), static_cast<off_t>(text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IoError("--output " + path + ": read: " + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  DF11_ASSIGN_OR_RETURN(const size_t keep, WholeResultLines(text, path, &file->done_));
  if (keep < text.size()) {
    file->truncated_ = static_cast<int64_t>(text.size() - keep);
    if (::ftruncate(fd, static_cast<off_t>(keep)) != 0 || ::fsync(fd) != 0) {
      return Status::IoError("--output " + path + ": cannot truncate its torn last line: " +
                             std::strerror(errno));
    }
  }
  file->size_ = static_cast<int64_t>(keep);
  return file;
}

ResultFile::~ResultFile() { ::close(fd_); }  // also releases the lock

Status ResultFile::Append(const std::vector<std::string>& lines) {
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    // One write(2) per line; a regular file takes it whole unless the disk fills up, and then
    // the loop finishes it or fails (a crash in between leaves a torn last line, truncated on
    // resume).
    size_t done = 0;
    while (done < line.size()) {
      const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        // Cut off the part of this line that was written, so the file holds whole lines.
        const std::string error = std::strerror(errno);
        const bool cut = ::ftruncate(fd_, static_cast<off_t>(size_)) == 0 && ::fsync(fd_) == 0;
        return Status::IoError(
            "--output " + path_ + ": write: " + error + " (" + std::to_string(lines.size() - i) +
            " result lines not written; " +
            (cut ? "the lines before them are kept whole, and a new run serves the rest)"
                 : "cutting off the partly written line failed as well)"));
      }
      done += static_cast<size_t>(n);
    }
    size_ += static_cast<int64_t>(line.size());
  }
  if (::fsync(fd_) != 0) {
    return Status::IoError("--output " + path_ + ": fsync: " + std::strerror(errno) +
                           " (the last " + std::to_string(lines.size()) +
                           " result lines may not be on disk)");
  }
  return Status::Ok();
}

StatusOr<BatchFiles> OpenBatchFiles(const std::string& input, const std::string& output) {
  BatchFiles files;
  files.input_path = input;
  files.output_path = output;
  if (output == "-") {
    return Status::InvalidArgument(
        "--output -: results go to a regular file (appended to, so that an interrupted batch "
        "resumes), not to standard output; give a path");
  }
  // "-": standard input (a pipe or a redirected file).
  const int fd = input == "-" ? ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0)
                              : ::open(input.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::InvalidArgument("--input " + input + ": cannot open: " + std::strerror(errno));
  }
  files.input.reset(::fdopen(fd, "r"));
  if (files.input == nullptr) {
    ::close(fd);
    return Status::IoError("--input " + input + ": fdopen: " + std::strerror(errno));
  }
  struct stat in;
  if (::fstat(fd, &in) != 0) {
    return Status::IoError("--input " + input + ": stat: " + std::strerror(errno));
  }
  if (!S_ISREG(in.st_mode) && !S_ISFIFO(in.st_mode)) {
    return Status::InvalidArgument("--input " + input + " is " + FileKindOf(in.st_mode) +
                                   ": expected a JSONL file (or a pipe)");
  }
  // A new output file cannot be the input; an existing one is compared by device and inode.
  struct stat out;
  if (::stat(output.c_str(), &out) == 0 && out.st_dev == in.st_dev && out.st_ino == in.st_ino) {
    return Status::InvalidArgument("--output " + output + " is the same file as --input " + input +
                                   ": results would be appended to the requests; write them to "
                                   "another file");
  }
  DF11_ASSIGN_OR_RETURN(files.output, ResultFile::Open(output));
  return files;
}

}  // namespace df11
