// SPDX-License-Identifier: Apache-2.0
// The generation loop. Up to batch_size sequences run at once; each step decodes one token for
// every running sequence and takes the prompts of the requests just admitted (one forward pass
// over the weights for both: with DF11 every pass decodes every layer). With continuous
// batching (the default) a finished sequence's place goes to the next waiting request at once, so
// a batch does not shrink while short answers wait for long ones; the static mode admits a new
// batch only when the last one has finished. Sampling uses a per-request RNG seeded from the
// request, so a request's tokens do not depend on what else runs beside it. The loop's parts
// live in their own units: request checks (request.h), the KV budget (kv_budget.h), a running
// sequence and the rules that end it (sequence.h), what each step takes (step_plan.h), the
// statistics (engine_stats.h) and the forward step itself (step_runner.h), so the same loop
// drives one rank or a distributed group.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/engine/engine_stats.h"
#include "runtime/engine/request.h"
#include "runtime/engine/step_runner.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

// How the engine schedules: the user's choices (df11-run's flags), each with its default.
struct EngineOptions {
  int64_t batch_size = 8;  // most sequences running at once
  bool continuous = true;  // refill the batch as sequences finish (false: static batches)
  // KV budget in tokens over the running sequences, each counted as prompt + max new tokens;
  // 0: no limit. A request that alone needs more gets an error naming both figures.
  int64_t kv_tokens = 0;
  // Most tokens one forward step takes (decoding sequences' tokens and prompt chunks); a prompt
  // that does not fit is prefilled over several steps. 0: no limit.
  int64_t max_step_tokens = 0;
  // Most requests whose latencies EngineStats keeps (a uniform sample beyond that).
  size_t latency_samples = size_t{1} << 20;
};

// What the engine needs of the model's text: the ids that end a sequence, and the tokenizer
// that turns the others into text and finds stop strings (null: ids only, no text).
struct ModelText {
  std::vector<int32_t> eos_ids;
  const Tokenizer* tokenizer = nullptr;  // must outlive the engine
};

// Called once per request as soon as its result is final (errors at admission, the others when
// they stop), with its index in the requests given to Generate. A non-OK Status stops Generate,
// which returns it.
using ResultCallback = std::function<Status(size_t index, GenerationResult result)>;

class Engine {
 public:
  Engine(StepRunner* runner, const EngineOptions& options, ModelText text = {})
      : runner_(runner),
        options_(options),
        text_(std::move(text)),
        latencies_(options.latency_samples) {}

  // Serves every request, admitting them in order; a request that cannot be served gets `error`
  // set and the rest go on. Each result goes to `on_result` as soon as it is final, so results
  // come out in the order requests finish and only running ones are held in memory. A non-OK
  // Status means the model itself failed (corrupt weights) or `on_result` did; results already
  // passed to `on_result` stay delivered.
  Status Generate(std::span<const GenerationRequest> requests, const ResultCallback& on_result);
  // The same, returning the results in request order.
  StatusOr<std::vector<GenerationResult>> Generate(std::span<const GenerationRequest> requests);
  const EngineStats& stats() const { return stats_; }

 private:
  struct Call;  // the state of one Generate call (engine.cc)
  // Starts waiting requests, in order, while the batch and the KV budget have room (static
  // batching: only into an empty batch); refused requests go to `on_result` at once.
  Status Admit(Call* call, const ResultCallback& on_result);
  // Runs one step over the running sequences and takes the tokens it produced.
  Status RunStep(Call* call);
  // Finished sequences leave, their caches and KV reservations freed, their results delivered
  // in the order they finished.
  Status Retire(Call* call, const ResultCallback& on_result);

  StepRunner* runner_;
  EngineOptions options_;
  ModelText text_;
  EngineStats stats_;
  LatencySampler latencies_;
};

}  // namespace df11
