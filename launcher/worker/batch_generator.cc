// SPDX-License-Identifier: Apache-2.0
#include "launcher/worker/batch_generator.h"

#include <glog/logging.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

namespace df11 {
namespace {

std::string Clock(double s) {
  if (s < 0 || s > 1e7) return "--:--";
  const int t = static_cast<int>(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%02d:%02d", t / 60, t % 60);
  }
  return buf;
}

// "batch: 12/40 items, 345.6 tokens/s, ETA 00:31" on stderr: redrawn on a terminal, else a line
// every 10 s and a final one.
class BatchProgress {
 public:
  BatchProgress(int64_t total, int64_t already) : total_(total), done_(already), already_(already) {}

  void Update(int64_t items, int64_t tokens) {
    done_ += items;
    tokens_ += tokens;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < (tty_ ? std::chrono::milliseconds(200) : std::chrono::seconds(10))) return;
    last_ = now;
    Print(false);
  }
  void Finish() { Print(true); }

 private:
  void Print(bool final) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const int64_t served = done_ - already_;
    const double items_per_s = t > 0 ? served / t : 0;
    const double eta = items_per_s > 0 ? (total_ - done_) / items_per_s : (done_ >= total_ ? 0 : -1);
    std::fprintf(stderr, "%sbatch: %lld/%lld items, %.1f tokens/s, %s %s%s", tty_ ? "\r" : "",
                 static_cast<long long>(done_), static_cast<long long>(total_),
                 t > 0 ? tokens_ / t : 0.0, final ? "elapsed" : "ETA",
                 Clock(final ? t : eta).c_str(), tty_ && !final ? "   " : "\n");
    std::fflush(stderr);
  }

  const int64_t total_;
  int64_t done_, already_, tokens_ = 0;
  const bool tty_ = ::isatty(STDERR_FILENO) != 0;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
};

}  // namespace

StatusOr<std::unique_ptr<BatchGenerator>> BatchGenerator::Create(const std::string& model,
                                                                 const GeneratorOptions& options,
                                                                 const ModelConfig& config,
                                                                 StepRunner* runner,
                                                                 Drafter* drafter) {
  auto tokenizer = Tokenizer::FromDirectory(model);
  if (!tokenizer.ok()) return tokenizer.status().WithContext("tokenizer of " + model);
  DF11_RETURN_IF_ERROR(tokenizer->CheckFitsVocabulary(config.vocab_size, model + "/config.json"));
  std::unique_ptr<BatchGenerator> g(new BatchGenerator(options, std::move(tokenizer).value()));
  if (auto c = ChatTemplate::FromDirectory(model); c.ok()) g->chat_ = std::move(c).value();
  ModelText text;
  text.tokenizer = &g->tokenizer_;
  for (int64_t id : config.eos_token_ids) text.eos_ids.push_back(static_cast<int32_t>(id));
  if (g->tokenizer_.eos_id()) text.eos_ids.push_back(*g->tokenizer_.eos_id());
  if (g->chat_) {
    for (int32_t id : g->chat_->StopTokenIds(g->tokenizer_)) text.eos_ids.push_back(id);
  }
  g->engine_ = std::make_unique<Engine>(runner, options.engine, std::move(text), drafter);
  return g;
}

BatchItem BatchGenerator::ParseLine(const std::string& line, int64_t line_number) const {
  return ParseBatchLine(line, line_number, options_.defaults, tokenizer_, chat());
}

BatchItem BatchGenerator::ParseRequest(const std::string& request_json,
                                       const std::string& custom_id) const {
  return ParseBatchRequest(request_json, custom_id, options_.defaults, tokenizer_, chat());
}

StatusOr<std::vector<int32_t>> BatchGenerator::EncodePrompt(const std::string& prompt) const {
  return df11::EncodePrompt(prompt, options_.defaults.chat, tokenizer_, chat());
}

StatusOr<std::vector<GenerationResult>> BatchGenerator::Generate(
    const std::vector<BatchItem>& items) {
  std::vector<GenerationResult> results(items.size());
  DF11_RETURN_IF_ERROR(Generate(items, [&](size_t i, GenerationResult r) {
    results[i] = std::move(r);
    return Status::Ok();
  }));
  return results;
}

Status BatchGenerator::Generate(const std::vector<BatchItem>& items,
                                const ResultCallback& on_result) {
  std::vector<GenerationRequest> requests;
  std::vector<size_t> item_of;  // requests[k] comes from items[item_of[k]]
  for (size_t i = 0; i < items.size(); ++i) {
    const BatchItem& it = items[i];
    if (it.request) {
      requests.push_back(*it.request);
      item_of.push_back(i);
      continue;
    }
    GenerationResult r;
    r.id = it.custom_id;
    r.error = it.error;
    DF11_RETURN_IF_ERROR(on_result(i, std::move(r)));
  }
  return engine_->Generate(requests, [&](size_t k, GenerationResult r) {
    return on_result(item_of[k], std::move(r));
  });
}

StatusOr<BatchFileSummary> RunBatchFile(BatchGenerator* generator, BatchFiles* files) {
  ResultFile* out = files->output.get();
  const std::string& output = files->output_path;
  BatchFileSummary summary;
  summary.truncated_bytes = out->truncated_bytes();
  if (summary.truncated_bytes > 0) {
    std::fprintf(stderr, "df11-run: %s: dropped a torn last line (%lld bytes) from an earlier run\n",
                 output.c_str(), static_cast<long long>(summary.truncated_bytes));
  }
  // Every request line; a custom_id seen before gets an error (its first line is the one served).
  std::vector<BatchItem> pending;
  std::unordered_map<std::string, int64_t> first_line;
  std::unique_ptr<char, decltype(&std::free)> buffer(nullptr, &std::free);
  size_t capacity = 0;
  for (int64_t n = 1;; ++n) {
    char* raw = buffer.release();
    const ssize_t length = ::getline(&raw, &capacity, files->input.get());
    buffer.reset(raw);
    if (length < 0) break;
    std::string line(raw, static_cast<size_t>(length));
    if (!line.empty() && line.back() == '\n') line.pop_back();
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++summary.lines;
    BatchItem item = generator->ParseLine(line, n);
    auto [it, inserted] = first_line.emplace(item.custom_id, n);
    if (out->done_ids().count(item.custom_id)) {
      ++summary.skipped;
      continue;
    }
    if (!inserted) {
      item.request.reset();
      item.error = "line " + std::to_string(n) + ": duplicate custom_id \"" + item.custom_id +
                   "\" (first on line " + std::to_string(it->second) + ")";
    }
    pending.push_back(std::move(item));
  }
  if (std::ferror(files->input.get())) {
    return Status::IoError("--input " + files->input_path + ": read: " + std::strerror(errno));
  }
  if (summary.skipped > 0) {
    std::fprintf(stderr, "df11-run: %s already holds %lld of %lld results; serving the other %lld\n",
                 output.c_str(), static_cast<long long>(summary.skipped),
                 static_cast<long long>(summary.lines), static_cast<long long>(pending.size()));
  }
  // One continuously refilled batch over the whole file; finished results are appended (and
  // fsynced) batch_size lines at a time, and whatever finished is written before an error returns.
  BatchProgress progress(summary.lines, summary.skipped);
  const size_t flush_lines =
      static_cast<size_t>(std::max<int64_t>(1, generator->options().engine.batch_size));
  std::vector<std::string> ready;
  int64_t tokens_written = generator->stats().generated_tokens;
  auto flush = [&]() -> Status {
    if (ready.empty()) return Status::Ok();
    DF11_RETURN_IF_ERROR(out->Append(ready));
    summary.written += static_cast<int64_t>(ready.size());
    const int64_t tokens = generator->stats().generated_tokens;
    progress.Update(static_cast<int64_t>(ready.size()), tokens - tokens_written);
    tokens_written = tokens;
    ready.clear();
    return Status::Ok();
  };
  Status generated = generator->Generate(pending, [&](size_t, GenerationResult r) {
    ready.push_back(ToJsonLine(ResultToJson(r)));
    if (!r.error.empty()) ++summary.errors;
    return ready.size() >= flush_lines ? flush() : Status::Ok();
  });
  Status flushed = flush();
  DF11_RETURN_IF_ERROR(generated);
  DF11_RETURN_IF_ERROR(flushed);
  progress.Finish();
  return summary;
}

Status GeneratorItemProcessor::Process(const std::vector<rpc::Item>& items,
                                       const OutcomeSink& done) {
  std::vector<BatchItem> batch;
  for (const rpc::Item& item : items) {
    batch.push_back(generator_->ParseRequest(item.request_json, item.custom_id));
  }
  return generator_->Generate(batch, [&](size_t i, GenerationResult r) {
    rpc::ItemOutcome o;
    if (!r.error.empty()) {
      o.error = r.error;
    } else {
      o.response_json = ToJsonLine(ResultToJson(r));
      o.response_json.pop_back();  // the newline
      o.completion_tokens = static_cast<int64_t>(r.tokens.size());
    }
    return done(items[i].item_id, std::move(o));
  });
}

void GeneratorItemProcessor::KeepAlive() {
  if (keep_alive_ == nullptr) return;
  StepOutput ignored;
  // No sequences: followers receive the plan, run nothing and wait for the next one.
  Status s = keep_alive_->Step({}, /*greedy_only=*/true, &ignored);
  if (!s.ok()) LOG(WARNING) << "keep-alive step: " << s.ToString();
}

}  // namespace df11
