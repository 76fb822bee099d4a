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
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/engine/engine_stats.h"
#include "runtime/engine/kv_blocks.h"
#include "runtime/engine/request.h"
#include "runtime/engine/speculation.h"
#include "runtime/engine/step_runner.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

// How the engine schedules: the user's choices (df11-run's flags), each with its default.
struct EngineOptions {
  int64_t batch_size = 8;  // most sequences running at once
  bool continuous = true;  // refill the batch as sequences finish (false: static batches)
  // KV budget in tokens over the running sequences; 0: no limit. With a paged backend
  // (StepRunner::kv_block_tokens() > 0) it is the block pool, kv_tokens / block_tokens blocks
  // (0: batch_size sequences at the full context), and sequences take blocks as they grow: a
  // request waits until its prompt's blocks are free, and when a step finds the pool dry the most
  // recently admitted running sequence is preempted (its blocks freed, the request requeued and
  // computed again from its prompt, to the same tokens). Otherwise each running sequence
  // reserves prompt + max new tokens. Either way a request that alone needs more than the budget
  // gets an error naming the figures.
  int64_t kv_tokens = 0;
  // Paged backends: share the K/V of equal prompt prefixes (whole blocks) between requests, also
  // across Generate calls of one Engine.
  bool prefix_caching = true;
  // Most tokens one forward step takes (decoding sequences' tokens and prompt chunks); a prompt
  // that does not fit is prefilled over several steps, each chunk taking the blocks of the
  // sliding-window layers it needs (those before its window released). 0: no limit.
  int64_t max_step_tokens = 0;
  // Most requests whose latencies EngineStats keeps (a uniform sample beyond that).
  size_t latency_samples = size_t{1} << 20;
  // Speculative decoding: each step, every decoding sequence whose request allows it
  // (GenerationRequest::speculative) feeds up to num_tokens drafted tokens after its last token
  // (prompt lookup, or the drafter given to the Engine for kDraftModel),
  // and the step's target logits accept the longest prefix of them that the target itself would
  // have produced (greedy: exactly its greedy tokens; sampling: VerifyDrafts' rule, the same
  // text for a seed), plus the target's next token; rejected positions are cut from the cache.
  // Needs a backend that verifies drafts (ForwardBackend::VerifiesDrafts: both of ours).
  SpeculativeOptions speculative;
};

// What the engine needs of the model's text: the ids that end a sequence, and the tokenizer
// that turns the others into text and finds stop strings (null: ids only, no text).
class RunningSequence;
struct StepShare;

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
  // `drafter`: the draft model for SpeculativeOptions::kDraftModel (must outlive the engine).
  Engine(StepRunner* runner, const EngineOptions& options, ModelText text = {},
         Drafter* drafter = nullptr);

  // Serves every request, admitting them in order; a request that cannot be served gets `error`
  // set and the rest go on. Each result goes to `on_result` as soon as it is final, so results
  // come out in the order requests finish and only running ones are held in memory. A non-OK
  // Status means the model itself failed (corrupt weights) or `on_result` did; results already
  // passed to `on_result` stay delivered.
  Status Generate(std::span<const GenerationRequest> requests, const ResultCallback& on_result);
  // The same, returning the results in request order.
  StatusOr<std::vector<GenerationResult>> Generate(std::span<const GenerationRequest> requests);
  const EngineStats& stats() const { return stats_; }
  // Paged backends: the block pool (null before the first Generate or for other backends).
  const KvBlocks* kv_blocks() const { return blocks_ ? &*blocks_ : nullptr; }

 private:
  struct Call;  // the state of one Generate call (engine.cc)
  // Starts waiting requests, in order, while the batch and the KV budget have room (static
  // batching: only into an empty batch); refused requests go to `on_result` at once.
  Status Admit(Call* call, const ResultCallback& on_result);
  // Runs one step over the running sequences and takes the tokens it produced.
  Status RunStep(Call* call);
  // Speculative decoding: gives each decoding sequence that allows it its drafts for the step.
  // Errors: the draft model's.
  Status Draft(Call* call);
  // A sequence of `call` has ended: the drafter forgets it.
  void ReleaseDrafts(const Call& call, size_t index);
  // Takes sequence `s`'s `tokens` from a step that fed it `drafts` drafted tokens: the
  // rejected ones leave its cache, the tokens go to the sequence until it finishes.
  void TakeTokens(Call* call, RunningSequence* s, size_t drafts, std::span<const int32_t> tokens);
  // Finished sequences leave, their caches and KV reservations freed, their results delivered
  // in the order they finished.
  Status Retire(Call* call, const ResultCallback& on_result);

  // Paged backends: opens the sequence of `index` in the block pool (its cached prefix counted as
  // fed) and returns its cache handle.
  KvCache OpenPaged(Call* call, size_t index, RunningSequence* s);
  // Paged backends: gives every sequence of `plan` the blocks its share writes, preempting the
  // most recently admitted running sequences while the pool is dry. Returns false when it
  // preempted a sequence of the plan (plan again).
  bool PlaceShares(Call* call, std::span<const StepShare> plan);
  void Preempt(Call* call);
  // The pool is dry while placing `s`'s share of a plan of `shares` shares: preempts the most
  // recently admitted sequence. Returns whether the placing may go on (else plan again).
  bool PreemptFor(Call* call, const RunningSequence& s, size_t shares);
  int64_t KvId(const Call& call, size_t index) const;

  StepRunner* runner_;
  EngineOptions options_;
  std::optional<KvBlocks> blocks_;  // paged backends: the block pool, kept across calls
  int64_t calls_ = 0;               // Generate calls so far (block manager ids per call)
  ModelText text_;
  std::optional<PromptLookupDrafter> lookup_;
  Drafter* drafter_ = nullptr;  // null: no speculation
  EngineStats stats_;
  LatencySampler latencies_;
};

}  // namespace df11
