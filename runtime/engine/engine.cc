// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/engine.h"

#include <algorithm>
#include <chrono>

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

}  // namespace

struct Engine::Call {
  Call(std::span<const GenerationRequest> r, int64_t kv_tokens) : requests(r), budget(kv_tokens) {}

  std::span<const GenerationRequest> requests;
  std::vector<RunningSequence> running;  // admitted and not finished, in admission order
  KvBudget budget;
  size_t next = 0;   // first request not yet admitted
  int64_t step = 0;  // steps of this call so far
  Clock::time_point start = Clock::now();
  StepOutput output;
};

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
  Call call(requests, options_.kv_tokens);
  while (call.next < requests.size() || !call.running.empty()) {
    DF11_RETURN_IF_ERROR(Admit(&call, on_result));
    if (call.running.empty()) break;  // every remaining request was refused
    DF11_RETURN_IF_ERROR(RunStep(&call));
    DF11_RETURN_IF_ERROR(Retire(&call, on_result));
  }
  return Status::Ok();
}

Status Engine::Admit(Call* call, const ResultCallback& on_result) {
  if (!options_.continuous && !call->running.empty()) return Status::Ok();
  const int64_t vocab = runner_->vocab_size(), context = runner_->context_length();
  const size_t batch = static_cast<size_t>(std::max<int64_t>(1, options_.batch_size));
  while (call->next < call->requests.size() && call->running.size() < batch) {
    const GenerationRequest& r = call->requests[call->next];
    const int64_t prompt = static_cast<int64_t>(r.prompt.size());
    std::string error = RequestError(r, vocab, context);
    const int64_t max_new = MaxNewTokens(r, context);
    const int64_t need = runner_->KvTokens(prompt + max_new);
    if (error.empty()) error = call->budget.Refusal(prompt, max_new, need);
    if (!error.empty()) {
      GenerationResult refused;
      refused.id = r.id;
      refused.prompt_tokens = prompt;
      refused.error = std::move(error);
      DF11_RETURN_IF_ERROR(on_result(call->next++, std::move(refused)));
      continue;
    }
    if (!call->budget.HasRoom(need)) break;  // waits for room, in order
    call->budget.Reserve(need);
    call->running.emplace_back(call->next++, r, max_new, runner_->NewCache(prompt + max_new),
                               text_.tokenizer);
  }
  stats_.peak_kv_tokens = std::max(stats_.peak_kv_tokens, call->budget.peak());
  return Status::Ok();
}

Status Engine::RunStep(Call* call) {
  const std::vector<StepShare> plan = PlanStep(call->running, options_.max_step_tokens);
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
  const auto t0 = Clock::now();
  DF11_RETURN_IF_ERROR(runner_->Step(steps, greedy_only, &call->output,
                                     greedy_only ? std::span<const SampleSpec>() : specs));
  const auto t1 = Clock::now();
  RecordStep(prompt_tokens, static_cast<int64_t>(plan.size()), Seconds(t0, t1), &stats_);
  for (size_t i = 0; i < plan.size(); ++i) {
    RunningSequence& s = *plan[i].sequence;
    if (!s.CompletesWith(plan[i].tokens)) {  // a prompt chunk: its token is not the next one
      s.Fed(plan[i].tokens);
      continue;
    }
    if (!greedy_only) s.set_rng(call->output.rng[i]);
    ++stats_.generated_tokens;
    GenerationResult& result = s.result();
    if (result.first_token_step < 0) {
      result.first_token_step = call->step;
      result.first_token_seconds = Seconds(call->start, t1);
    }
    const GenerationRequest& r = call->requests[s.index()];
    s.TakeToken(call->output.tokens[i], text_.eos_ids, r.stop);
    if (s.done()) result.finish_seconds = Seconds(call->start, t1);
  }
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
    call->budget.Release(runner_->KvTokens(it->kv_reservation()));
    const size_t index = it->index();
    GenerationResult result = std::move(it->result());
    latencies_.Record(result, &stats_);
    it = call->running.erase(it);
    DF11_RETURN_IF_ERROR(on_result(index, std::move(result)));
  }
  return Status::Ok();
}

}  // namespace df11
