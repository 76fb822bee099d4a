// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include "kernels/common/check.h"
#include "runtime/engine/kv_budget.h"
#include "runtime/engine/sequence.h"
#include "runtime/engine/step_plan.h"

namespace df11 {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool Greedy(const SamplingParams& p) { return p.temperature == 0 && p.repetition_penalty == 1; }

// Block manager ids of one Generate call: call number * kIdsPerCall + request index.
constexpr int64_t kIdsPerCall = int64_t{1} << 40;

// Hands a write's block copies to the cache, each to its group's list.
void AddCopies(std::span<const KvBlockCopy> copies, KvCache* cache) {
  for (const KvBlockCopy& c : copies) {
    (c.group == kSlidingGroup ? cache->sliding_block_copies : cache->block_copies)
        .emplace_back(c.from, c.to);
  }
}

}  // namespace

struct Engine::Call {
  Call(std::span<const GenerationRequest> r, int64_t kv_tokens) : requests(r), budget(kv_tokens) {}

  std::span<const GenerationRequest> requests;
  std::vector<RunningSequence> running;  // admitted and not finished, in admission order
  KvBudget budget;                       // backends that do not page their cache
  std::deque<size_t> requeued;           // preempted requests, served before `next`
  size_t next = 0;   // first request not yet admitted
  int64_t step = 0;  // steps of this call so far
  int64_t step_tokens = 0;  // tokens the sequences took in the current step
  int64_t id = 0;    // this call's number (block manager ids)
  Clock::time_point start = Clock::now();
  StepOutput output;
};

Engine::Engine(StepRunner* runner, const EngineOptions& options, ModelText text,
               Drafter* drafter)
    : runner_(runner),
      options_(options),
      text_(std::move(text)),
      latencies_(options.latency_samples) {
  switch (options.speculative.method) {
    case SpeculativeOptions::Method::kNone:
      break;
    case SpeculativeOptions::Method::kPromptLookup:
      drafter_ = &lookup_.emplace(options.speculative.ngram);
      break;
    case SpeculativeOptions::Method::kDraftModel:
      DF11_CHECK_MSG(drafter != nullptr, "a draft model was asked for and none given");
      drafter_ = drafter;
      break;
  }
}

StatusOr<std::vector<GenerationResult>> Engine::Generate(
    std::span<const GenerationRequest> requests) {
  std::vector<GenerationResult> results(requests.size());
  DF11_RETURN_IF_ERROR(Generate(requests, [&](size_t i, GenerationResult r) {
    results[i] = std::move(r);
    return Status::Ok();
  }));
  return results;
}

Status Engine::Generate(std::span<const GenerationRequest> requests,
                        const ResultCallback& on_result) {
  if (options_.speculative.method != SpeculativeOptions::Method::kNone &&
      !runner_->verifies_drafts()) {
    return Status::InvalidArgument(
        "--speculative: this backend cannot verify drafted tokens yet (it returns one row of "
        "logits per sequence and step): use the CPU backend, or run without --speculative");
  }
  const int64_t block_tokens = runner_->kv_block_tokens();
  Call call(requests, options_.kv_tokens);
  call.id = calls_++;
  if (block_tokens > 0 && !blocks_) {
    const int64_t context = runner_->context_length();
    const int64_t pool = options_.kv_tokens > 0
                             ? std::max<int64_t>(1, options_.kv_tokens / block_tokens)
                             : std::max<int64_t>(1, options_.batch_size) *
                                   ((context + block_tokens - 1) / block_tokens);
    // Sliding-window layers in their own group: the budget's memory split between the groups as
    // the backend sizes its pool (KvGroupsOfBudget, for the sequences it plans; without a budget
    // both get the pool, host memory taken as used).
    const std::vector<int64_t> windows = runner_->kv_group_windows();
    KvGroupBlocks groups = {pool, pool};
    if (options_.kv_tokens > 0) {
      // Split for the step the backend plans its pool for, else for this engine's steps.
      const int64_t step =
          runner_->kv_plan_step() > 0 ? runner_->kv_plan_step() : options_.max_step_tokens;
      groups = KvGroupsOfBudget(windows, options_.kv_tokens, block_tokens,
                                runner_->kv_plan_context(), step);
    }
    const int64_t window = windows.empty() ? 0 : *std::max_element(windows.begin(), windows.end());
    blocks_.emplace(KvBlocksOptions{.blocks = std::max<int64_t>(1, groups.full),
                                    .block_tokens = block_tokens,
                                    .prefix_caching = options_.prefix_caching,
                                    .window = window,
                                    .sliding_blocks = window > 0 ? groups.sliding : 0,
                                    .step_tokens = options_.max_step_tokens});
  }
  Status status;
  while (status.ok() && (call.next < requests.size() || !call.requeued.empty() ||
                         !call.running.empty())) {
    status = Admit(&call, on_result);
    if (!status.ok() || call.running.empty()) break;  // every remaining request was refused
    status = RunStep(&call);
    if (status.ok()) status = Retire(&call, on_result);
  }
  if (blocks_) {  // a failed call leaves no block taken
    for (RunningSequence& s : call.running) {
      blocks_->Free(KvId(call, s.index()));
      runner_->Release(s.cache());
    }
  }
  for (const RunningSequence& s : call.running) ReleaseDrafts(call, s.index());
  return status;
}

int64_t Engine::KvId(const Call& call, size_t index) const {
  return call.id * kIdsPerCall + static_cast<int64_t>(index);
}

KvCache Engine::OpenPaged(Call* call, size_t index, RunningSequence* s) {
  const std::vector<int32_t>& prompt = call->requests[index].prompt;
  const int64_t id = KvId(*call, index);
  const int64_t cached = blocks_->Open(id, prompt);
  stats_.prefix_cached_tokens += cached;
  if (cached > 0) s->Fed(static_cast<size_t>(cached));
  KvCache cache;
  cache.length = cached;
  cache.block_tokens = blocks_->block_tokens();
  cache.slot = id;  // a distributed group keeps the sequence's table under it
  // The whole prompt's full-attention blocks now (PromptCost said they are free), so that its
  // full blocks enter the prefix cache and later requests wait for them instead of computing
  // them again; its sliding-window blocks come chunk by chunk (PlaceShares).
  std::vector<KvBlockCopy> copies;
  DF11_CHECK(blocks_->Append(id, std::span(prompt).subspan(static_cast<size_t>(cached)), &copies));
  AddCopies(copies, &cache);
  return cache;
}

Status Engine::Admit(Call* call, const ResultCallback& on_result) {
  if (!options_.continuous && !call->running.empty()) return Status::Ok();
  const int64_t vocab = runner_->vocab_size(), context = runner_->context_length();
  const size_t batch = static_cast<size_t>(std::max<int64_t>(1, options_.batch_size));
  while ((!call->requeued.empty() || call->next < call->requests.size()) &&
         call->running.size() < batch) {
    const bool again = !call->requeued.empty();
    const size_t index = again ? call->requeued.front() : call->next;
    const GenerationRequest& r = call->requests[index];
    const int64_t prompt = static_cast<int64_t>(r.prompt.size());
    const int64_t max_new = MaxNewTokens(r, context);
    // Reservations: the budget tokens of the cache (sliding-window layers keeping their window).
    const int64_t need = runner_->KvTokens(prompt + max_new);
    std::string error = again ? "" : RequestError(r, vocab, context);
    if (error.empty() && !blocks_) error = call->budget.Refusal(prompt, max_new, need);
    if (error.empty() && blocks_ && !blocks_->EverFits(prompt, prompt + max_new)) {
      const int64_t bt = blocks_->block_tokens(), total = blocks_->total_blocks();
      error = "needs " + std::to_string(prompt + max_new) + " KV cache tokens (prompt " +
              std::to_string(prompt) + " + max_tokens " + std::to_string(max_new) +
              "), more than the KV budget of " + std::to_string(total * bt) + " tokens (" +
              std::to_string(total) + (total == 1 ? " block of " : " blocks of ") +
              std::to_string(bt) + ")";
    }
    if (!error.empty()) {  // (a requeued request was admitted before: never refused)
      GenerationResult refused;
      refused.id = r.id;
      refused.prompt_tokens = prompt;
      refused.error = std::move(error);
      ++call->next;
      DF11_RETURN_IF_ERROR(on_result(index, std::move(refused)));
      continue;
    }
    if (blocks_) {
      if (!blocks_->PromptFits(r.prompt)) break;  // waits, in order
      // A prefix a running sequence is computing: wait for it rather than compute it again.
      if (blocks_->PrefixPending(r.prompt)) break;
      call->running.emplace_back(index, r, max_new, KvCache(), text_.tokenizer);
      call->running.back().cache() = OpenPaged(call, index, &call->running.back());
    } else {
      if (!call->budget.HasRoom(need)) break;  // waits for room, in order
      call->budget.Reserve(need);
      call->running.emplace_back(index, r, max_new, runner_->NewCache(prompt + max_new),
                                 text_.tokenizer);
    }
    if (again) {
      call->requeued.pop_front();
    } else {
      ++call->next;
    }
  }
  stats_.peak_kv_tokens = std::max(stats_.peak_kv_tokens, call->budget.peak());
  return Status::Ok();
}

void Engine::Preempt(Call* call) {
  RunningSequence& victim = call->running.back();
  // Its tokens are generated again from the prompt: counted once, the discarded ones apart.
  const int64_t generated =
      static_cast<int64_t>(victim.history().size()) - victim.result().prompt_tokens;
  stats_.generated_tokens -= generated;
  stats_.recomputed_tokens += generated;
  blocks_->Free(KvId(*call, victim.index()));
  runner_->Release(victim.cache());
  call->requeued.push_front(victim.index());
  ReleaseDrafts(*call, victim.index());
  call->running.pop_back();
  ++stats_.preemptions;
}

bool Engine::PreemptFor(Call* call, const RunningSequence& s, size_t shares) {
  // Admission made sure a sequence alone fits the pool: with one left, blocks leaked.
  DF11_CHECK_MSG(call->running.size() > 1, "the only running sequence does not fit the KV pool");
  const bool self = &call->running.back() == &s;
  Preempt(call);
  return !self && shares == 1;  // else the plan holds a preempted sequence
}

bool Engine::PlaceShares(Call* call, std::span<const StepShare> plan) {
  std::vector<KvBlockCopy> copies;
  for (const StepShare& share : plan) {
    RunningSequence& s = *share.sequence;
    const int64_t id = KvId(*call, s.index());
    const SequenceStep step = s.Feed(share.tokens);
    const int64_t begin = step.cache->length;
    const int64_t end = begin + static_cast<int64_t>(step.tokens.size());
    if (blocks_->length(id) < end) {  // decoding tokens not placed by an earlier try of this step
      copies.clear();
      while (!blocks_->Write(id, step.tokens, &copies)) {
        if (!PreemptFor(call, s, plan.size())) return false;
      }
      AddCopies(copies, step.cache);
    }
    // A prompt chunk's sliding-window blocks (its full-attention ones came at admission): older
    // ones go, its window's are taken.
    copies.clear();
    while (!blocks_->Place(id, begin, end, &copies)) {
      if (!PreemptFor(call, s, plan.size())) return false;
    }
    AddCopies(copies, step.cache);
    const std::span<const KvBlockId> table = blocks_->table(id);
    step.cache->blocks.assign(table.begin(), table.end());
    step.cache->capacity = static_cast<int64_t>(table.size()) * blocks_->block_tokens();
    if (blocks_->groups() == 2) {
      const std::span<const KvBlockId> sliding = blocks_->sliding_table(id);
      step.cache->sliding_blocks.assign(sliding.begin(), sliding.end());
      // As long as the full table: a prompt's later chunks have no sliding blocks yet.
      step.cache->sliding_blocks.resize(table.size(), kReleasedBlock);
    }
  }
  stats_.peak_kv_blocks = std::max(stats_.peak_kv_blocks, blocks_->peak_used_blocks());
  if (blocks_->groups() == 2) {
    stats_.peak_kv_sliding_blocks =
        std::max(stats_.peak_kv_sliding_blocks, blocks_->peak_used_blocks(kSlidingGroup));
  }
  return true;
}

void Engine::ReleaseDrafts(const Call& call, size_t index) {
  if (drafter_ != nullptr) drafter_->Release(KvId(call, index));
}

Status Engine::Draft(Call* call) {
  if (drafter_ == nullptr) return Status::Ok();
  std::vector<DraftRequest> requests;
  std::vector<RunningSequence*> drafting;
  for (RunningSequence& s : call->running) {
    if (!s.decoding() || s.done() || !s.speculative()) continue;
    // Drafts past the length limit could never be taken (and would overrun the reservation).
    const int64_t room = std::min(options_.speculative.num_tokens, s.tokens_left() - 1);
    if (room < 1) continue;
    requests.push_back({KvId(*call, s.index()), s.history(), room, s.kv_reservation()});
    drafting.push_back(&s);
  }
  if (requests.empty()) return Status::Ok();
  std::vector<std::vector<int32_t>> drafts;
  DF11_RETURN_IF_ERROR(drafter_->Draft(requests, &drafts));
  for (size_t i = 0; i < drafting.size(); ++i) drafting[i]->SetDrafts(drafts[i]);
  return Status::Ok();
}

void Engine::TakeTokens(Call* call, RunningSequence* s, size_t drafts,
                        std::span<const int32_t> tokens) {
  const GenerationRequest& r = call->requests[s->index()];
  GenerationResult& result = s->result();
  const bool speculating = drafter_ != nullptr && s->speculative() && s->decoding();
  if (speculating) {
    const int64_t accepted = static_cast<int64_t>(tokens.size()) - 1;
    result.speculative = true;
    result.draft_tokens += static_cast<int64_t>(drafts);
    result.accepted_tokens += accepted;
    stats_.draft_tokens += static_cast<int64_t>(drafts);
    stats_.accepted_tokens += accepted;
    ++stats_.speculative_steps;
    // Rejected drafts leave the cache (their blocks go back to the pool).
    s->cache().length -= static_cast<int64_t>(drafts) - accepted;
    if (blocks_) blocks_->Truncate(KvId(*call, s->index()), s->cache().length);
  }
  ++result.token_steps;
  for (int32_t token : tokens) {
    if (s->done()) break;
    s->TakeToken(token, text_.eos_ids, r.stop);
    ++stats_.generated_tokens;
    ++call->step_tokens;
    if (speculating) ++stats_.speculative_tokens;
  }
}

Status Engine::RunStep(Call* call) {
  const auto t0 = Clock::now();  // the step's time includes drafting
  DF11_RETURN_IF_ERROR(Draft(call));
  std::vector<StepShare> plan = PlanStep(call->running, options_.max_step_tokens);
  while (blocks_ && !PlaceShares(call, plan)) {
    if (call->running.empty()) return Status::Ok();  // all requeued: admitted again next
    plan = PlanStep(call->running, options_.max_step_tokens);
  }
  std::vector<SequenceStep> steps;
  std::vector<SampleSpec> specs;
  bool greedy_only = true;
  for (const StepShare& share : plan) {
    RunningSequence& s = *share.sequence;
    const GenerationRequest& r = call->requests[s.index()];
    steps.push_back(s.Feed(share.tokens));
    greedy_only = greedy_only && Greedy(r.sampling);
    specs.push_back({r.sampling, s.rng(), s.history()});
  }
  const int64_t prompt_tokens = PromptTokens(plan);
  DF11_RETURN_IF_ERROR(runner_->Step(steps, greedy_only, &call->output,
                                     greedy_only ? std::span<const SampleSpec>() : specs));
  const auto t1 = Clock::now();
  const std::vector<int32_t>& counts = call->output.counts;
  std::span<const int32_t> tokens = call->output.tokens;
  call->step_tokens = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    RunningSequence& s = *plan[i].sequence;
    const size_t count = counts.empty() ? 1 : static_cast<size_t>(counts[i]);
    const std::span<const int32_t> mine = tokens.first(count);
    tokens = tokens.subspan(count);
    if (!s.CompletesWith(plan[i].tokens)) {  // a prompt chunk: its token is not the next one
      // Only the chunks computed so far: later requests may share their blocks.
      if (blocks_) blocks_->Commit(KvId(*call, s.index()), s.cache().length);
      s.Fed(plan[i].tokens);
      continue;
    }
    if (!greedy_only) s.set_rng(call->output.rng[i]);
    GenerationResult& result = s.result();
    if (result.first_token_step < 0) {
      result.first_token_step = call->step;
      result.first_token_seconds = Seconds(call->start, t1);
    }
    TakeTokens(call, &s, plan[i].drafts, mine);
    if (blocks_) blocks_->Commit(KvId(*call, s.index()), s.cache().length);
    if (s.done()) result.finish_seconds = Seconds(call->start, t1);
  }
  RecordStep(prompt_tokens, call->step_tokens, Seconds(t0, t1), &stats_);
  ++call->step;
  return Status::Ok();
}

Status Engine::Retire(Call* call, const ResultCallback& on_result) {
  for (auto it = call->running.begin(); it != call->running.end();) {
    if (!it->done()) {
      ++it;
      continue;
    }
    runner_->Release(it->cache());
    if (blocks_) {
      blocks_->Free(KvId(*call, it->index()));
    } else {
      call->budget.Release(runner_->KvTokens(it->kv_reservation()));
    }
    const size_t index = it->index();
    ReleaseDrafts(*call, index);
    GenerationResult result = std::move(it->result());
    latencies_.Record(result, &stats_);
    it = call->running.erase(it);
    DF11_RETURN_IF_ERROR(on_result(index, std::move(result)));
  }
  return Status::Ok();
}

}  // namespace df11
