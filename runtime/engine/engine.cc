// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/engine.h"

#include <algorithm>
#include <chrono>

namespace df11 {
namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// State of one sequence while its batch runs.
struct Active {
  size_t index;                   // into the batch
  KvCache cache;
  std::vector<int32_t> history;   // prompt + generated, for the repetition penalty
  std::vector<int32_t> pending;   // tokens to feed at the next step
  uint64_t rng;
  int64_t limit;                  // max new tokens (clamped to the context)
  std::optional<StreamDecoder> text;
  bool done = false;
};

bool Greedy(const SamplingParams& p) { return p.temperature == 0 && p.repetition_penalty == 1; }

}  // namespace

Status LocalStepRunner::Step(std::span<const SequenceStep> steps, bool greedy_only,
                             StepOutput* out, std::span<const SampleSpec> sample) {
  out->argmax.clear();
  out->rng.clear();
  if (greedy_only) {
    out->logits.clear();
    return t_->ForwardArgmax(steps, &out->argmax);
  }
  if (!sample.empty()) {
    out->logits.clear();
    return t_->ForwardSample(steps, sample, &out->argmax, &out->rng);
  }
  return t_->Forward(steps, false, &out->logits);
}

StatusOr<std::vector<GenerationResult>> Engine::Generate(
    std::span<const GenerationRequest> requests) {
  std::vector<GenerationResult> results(requests.size());
  const int64_t b = std::max<int64_t>(1, options_.batch_size);
  for (size_t i = 0; i < requests.size(); i += static_cast<size_t>(b)) {
    const size_t n = std::min(requests.size() - i, static_cast<size_t>(b));
    DF11_RETURN_IF_ERROR(GenerateBatch(requests.subspan(i, n),
                                       std::span<GenerationResult>(results).subspan(i, n)));
  }
  return results;
}

Status Engine::GenerateBatch(std::span<const GenerationRequest> requests,
                             std::span<GenerationResult> results) {
  const int64_t vocab = runner_->vocab_size(), context = runner_->context_length();
  std::vector<Active> active;
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerationRequest& r = requests[i];
    GenerationResult& out = results[i];
    out.id = r.id;
    out.prompt_tokens = static_cast<int64_t>(r.prompt.size());
    const int64_t prompt = static_cast<int64_t>(r.prompt.size());
    if (prompt == 0) {
      out.error = "empty prompt";
      continue;
    }
    auto bad = std::find_if(r.prompt.begin(), r.prompt.end(),
                            [&](int32_t t) { return t < 0 || t >= vocab; });
    if (bad != r.prompt.end()) {
      out.error = "token id " + std::to_string(*bad) + " is outside the vocabulary [0, " +
                  std::to_string(vocab) + ")";
      continue;
    }
    if (prompt >= context) {
      out.error = "prompt of " + std::to_string(prompt) + " tokens does not fit the context of " +
                  std::to_string(context) + " tokens (max_position_embeddings)";
      continue;
    }
    if (r.max_tokens < 1) {
      out.error = "max_tokens must be >= 1";
      continue;
    }
    Active a;
    a.index = i;
    a.limit = std::min(r.max_tokens, context - prompt);
    a.cache = runner_->NewCache(prompt + a.limit);
    a.history = r.prompt;
    a.pending = r.prompt;
    a.rng = r.seed;
    if (options_.tokenizer != nullptr) a.text.emplace(options_.tokenizer, true);
    active.push_back(std::move(a));
  }
  bool prefill = true;
  StepOutput output;
  while (true) {
    std::vector<SequenceStep> steps;
    std::vector<Active*> live;
    bool greedy_only = true;
    std::vector<SampleSpec> specs;
    for (Active& a : active) {
      if (a.done) continue;
      steps.push_back({&a.cache, a.pending});
      live.push_back(&a);
      greedy_only = greedy_only && Greedy(requests[a.index].sampling);
      specs.push_back({requests[a.index].sampling, a.rng, a.history});
    }
    if (steps.empty()) break;
    const auto t0 = std::chrono::steady_clock::now();
    DF11_RETURN_IF_ERROR(runner_->Step(steps, greedy_only, &output,
                                       greedy_only ? std::span<const SampleSpec>() : specs));
    const auto t1 = std::chrono::steady_clock::now();
    if (prefill) {
      stats_.prefill_seconds += Seconds(t0, t1);
      for (const SequenceStep& s : steps) stats_.prompt_tokens += static_cast<int64_t>(s.tokens.size());
    } else {
      stats_.decode_seconds += Seconds(t0, t1);
    }
    prefill = false;
    for (size_t s = 0; s < live.size(); ++s) {
      Active& a = *live[s];
      const GenerationRequest& req = requests[a.index];
      GenerationResult& out = results[a.index];
      const int32_t token = output.argmax[s];
      if (!greedy_only) a.rng = output.rng[s];
      ++stats_.generated_tokens;
      a.pending.assign(1, token);
      a.history.push_back(token);
      if (std::find(options_.eos_ids.begin(), options_.eos_ids.end(), token) !=
          options_.eos_ids.end()) {
        out.finish_reason = "stop";
        a.done = true;
        continue;
      }
      out.tokens.push_back(token);
      if (a.text) {
        auto piece = a.text->Feed(token);
        if (piece.ok()) out.text += *piece;
        // Stop strings: cut the text at the earliest one.
        size_t cut = std::string::npos;
        for (const std::string& stop : req.stop) {
          if (!stop.empty()) cut = std::min(cut, out.text.find(stop));
        }
        if (cut != std::string::npos) {
          out.text.resize(cut);
          out.finish_reason = "stop";
          a.done = true;
          continue;
        }
      }
      if (static_cast<int64_t>(out.tokens.size()) >= a.limit) {
        out.finish_reason = "length";
        a.done = true;
      }
    }
  }
  for (Active& a : active) {
    if (a.text && results[a.index].finish_reason == "length") results[a.index].text += a.text->Flush();
  }
  return Status::Ok();
}

}  // namespace df11
