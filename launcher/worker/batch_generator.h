// SPDX-License-Identifier: Apache-2.0
// The model side of df11-run, shared by its two ways of getting work: the tokenizer, the chat
// template and an Engine over a StepRunner (one process, or a distributed group's leader).
//   RunBatchFile: `generate --input IN --output OUT`, resumable: custom_ids OUT already holds are
//     skipped; the whole file runs through one continuously refilled batch, and results are
//     appended as they finish, batch_size lines at a time (whole lines, fsynced), with progress.
//   GeneratorItemProcessor: `serve`, items leased from df11-coordinator (see worker_agent.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "launcher/batch/batch_io.h"
#include "launcher/worker/worker_agent.h"
#include "runtime/core/status.h"
#include "runtime/engine/engine.h"
#include "runtime/formats/model_config.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

// What df11-run's flags choose for generation, handed down whole: request defaults to the
// parser, scheduling to the Engine.
struct GeneratorOptions {
  BatchDefaults defaults;  // for fields a request leaves out
  EngineOptions engine;    // batch size, batching mode, KV budget, tokens per step
};

class BatchGenerator {
 public:
  // The tokenizer and chat template come from the model directory `model`; the end-of-sequence
  // ids from its config, tokenizer and chat template.
  // `drafter`: the draft model when options.engine.speculative asks for one (outlives the
  // generator), else null.
  static StatusOr<std::unique_ptr<BatchGenerator>> Create(const std::string& model,
                                                          const GeneratorOptions& options,
                                                          const ModelConfig& config,
                                                          StepRunner* runner,
                                                          Drafter* drafter = nullptr);

  BatchItem ParseLine(const std::string& line, int64_t line_number) const;
  BatchItem ParseRequest(const std::string& request_json, const std::string& custom_id) const;
  // --prompt: plain, or in the chat template when defaults.chat.
  StatusOr<std::vector<int32_t>> EncodePrompt(const std::string& prompt) const;

  // One result per item, in order: generated for items with a request, the item's error for the
  // others. A non-OK Status means the model itself failed.
  StatusOr<std::vector<GenerationResult>> Generate(const std::vector<BatchItem>& items);
  // The same, each result passed to `on_result` (with the item's index) as soon as it is final:
  // the items' own errors first, then generated results in the order they finish.
  Status Generate(const std::vector<BatchItem>& items, const ResultCallback& on_result);

  const EngineStats& stats() const { return engine_->stats(); }
  const GeneratorOptions& options() const { return options_; }

 private:
  BatchGenerator(GeneratorOptions options, Tokenizer tokenizer)
      : options_(std::move(options)), tokenizer_(std::move(tokenizer)) {}
  const ChatTemplate* chat() const { return chat_ ? &*chat_ : nullptr; }

  GeneratorOptions options_;
  Tokenizer tokenizer_;
  std::optional<ChatTemplate> chat_;
  std::unique_ptr<Engine> engine_;
};

struct BatchFileSummary {
  int64_t lines = 0;    // requests in the input (blank lines not counted)
  int64_t skipped = 0;  // already in the output from an earlier run
  int64_t written = 0;  // result lines appended by this run (errors included)
  int64_t errors = 0;   // of those, lines with an error
  int64_t truncated_bytes = 0;  // a torn last line removed from the output
};

// Serves the opened --input into the opened --output (OpenBatchFiles) as described above;
// progress (items, tokens/s, ETA) on stderr. An error writing the output ends the run.
StatusOr<BatchFileSummary> RunBatchFile(BatchGenerator* generator, BatchFiles* files);

// Items leased from the coordinator through `generator`. `keep_alive`: a distributed leader's
// runner, stepped with no sequences while the agent waits so followers' plan broadcasts do not
// time out; null on one process.
class GeneratorItemProcessor : public ItemProcessor {
 public:
  GeneratorItemProcessor(BatchGenerator* generator, StepRunner* keep_alive)
      : generator_(generator), keep_alive_(keep_alive) {}
  Status Process(const std::vector<rpc::Item>& items, const OutcomeSink& done) override;
  void KeepAlive() override;

 private:
  BatchGenerator* generator_;
  StepRunner* keep_alive_;
};

}  // namespace df11
