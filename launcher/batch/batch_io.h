// SPDX-License-Identifier: Apache-2.0
// Batch generation files: JSON lines in, JSON lines out. Input lines are
//   {"custom_id", "prompt" | "messages", "max_tokens"?, "temperature"?, "top_p"?, "top_k"?,
//    "min_p"?, "repetition_penalty"?, "seed"?, "stop"?, "speculative"?}
// (the OpenAI batch form {"custom_id", "method", "url", "body": {...}} is accepted too), their
// fields read by request_fields.h; output lines are {"custom_id", "text", "token_ids",
// "finish_reason", "usage"} or {"custom_id", "error"} for a line that cannot be served.
// ResultFile appends result lines to an output file so that an interrupted batch resumes: lines
// already there are skipped on the next run, and a crash never leaves a torn line behind.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "launcher/batch/request_fields.h"
#include "runtime/core/status.h"
#include "runtime/engine/request.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

// Defaults for fields a line leaves out (the command-line flags).
struct BatchDefaults {
  RequestFields fields;  // max_tokens, sampling, seed (no stop strings)
  bool chat = false;     // apply the chat template to "prompt" lines as one user message
};

// The engine's request `id` over `prompt` with `fields`.
GenerationRequest MakeRequest(std::string id, std::vector<int32_t> prompt, RequestFields fields);

// One parsed input line: a request, or the error that line gets.
struct BatchItem {
  std::string custom_id;
  std::optional<GenerationRequest> request;
  std::string error;
};

// Parses line `line_number` (1-based, for messages) of a batch file.
BatchItem ParseBatchLine(const std::string& line, int64_t line_number, const BatchDefaults& defaults,
                         const Tokenizer& tokenizer, const ChatTemplate* chat);

// Parses one request of a submitted job (the JSON a coordinator item carries): like a batch line,
// but the result keeps `custom_id` whatever the JSON says, and errors carry no line number.
BatchItem ParseBatchRequest(const std::string& request_json, const std::string& custom_id,
                            const BatchDefaults& defaults, const Tokenizer& tokenizer,
                            const ChatTemplate* chat);

// Turns a prompt (plain or chat) into token ids.
StatusOr<std::vector<int32_t>> EncodePrompt(const std::string& prompt, bool chat,
                                            const Tokenizer& tokenizer, const ChatTemplate* chat_template);

nlohmann::json ResultToJson(const GenerationResult& result);
nlohmann::json ErrorToJson(const std::string& custom_id, const std::string& error);
// `j` as one output line: compact JSON (invalid UTF-8 replaced) and a trailing newline.
std::string ToJsonLine(const nlohmann::json& j);

// An output file of result lines, opened for appending. Open() refuses anything but a regular
// file (a device such as /dev/full, a directory, a pipe: InvalidArgument) and takes an exclusive
// flock on it for as long as the object lives, so a second run on the same file is refused
// (FailedPrecondition) instead of serving every item again. It then reads the lines already
// there: the custom_id of every complete line (valid JSON ending in a newline) goes to
// done_ids(); a torn last line (no trailing newline) is truncated away. A file holding anything
// else (a complete line that is not a result line, a last line that cannot be the start of one)
// is refused (InvalidArgument), never changed.
// Append() writes each line with one write(2) (O_APPEND) and then fsyncs, so after a crash the
// file holds whole lines; after a write error (a full disk, EIO) a partly written line is cut off
// again, so the lines already written stay and the file stays whole.
class ResultFile {
 public:
  static StatusOr<std::unique_ptr<ResultFile>> Open(const std::string& path);
  ~ResultFile();
  ResultFile(const ResultFile&) = delete;
  ResultFile& operator=(const ResultFile&) = delete;

  const std::set<std::string>& done_ids() const { return done_; }
  int64_t truncated_bytes() const { return truncated_; }
  // `lines`: each one whole line ending in '\n' (see ToJsonLine).
  Status Append(const std::vector<std::string>& lines);

 private:
  ResultFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
  int64_t size_ = 0;  // bytes of whole lines in the file
  std::set<std::string> done_;
  int64_t truncated_ = 0;
};

// The two files of `generate --input IN --output OUT`, opened and checked before the model loads.
// IN must be a regular file or a pipe (a directory or a device is refused), "-" for standard
// input; OUT is a ResultFile ("-" is refused: standard output cannot be resumed) and must not be
// IN itself, by whatever path (device and inode are compared, so symbolic and
// hard links count). InvalidArgument names the flag, the path and what was expected.
struct BatchFiles {
  struct Closer {
    void operator()(FILE* f) const { std::fclose(f); }
  };
  std::string input_path, output_path;
  std::unique_ptr<FILE, Closer> input;  // read with getline(3)
  std::unique_ptr<ResultFile> output;
};
StatusOr<BatchFiles> OpenBatchFiles(const std::string& input, const std::string& output);

}  // namespace df11
