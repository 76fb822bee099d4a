// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace df11 {
namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// State of one sequence while it runs.
struct Active {
  size_t index;                   // into the requests
  GenerationResult result;
  KvCache cache;
  std::vector<int32_t> history;   // prompt + generated, for the repetition penalty
  std::vector<int32_t> pending;   // the prompt, then the last token
  size_t fed = 0;                 // tokens of `pending` already in the cache (a chunked prompt)
  uint64_t rng;
  int64_t limit;                  // max new tokens (clamped to the context)
  std::optional<StreamDecoder> text;
  bool decoding = false;          // its prompt is in the cache; one token per step from now
  bool done = false;
};

bool Greedy(const SamplingParams& p) { return p.temperature == 0 && p.repetition_penalty == 1; }

// Takes the token a step produced for `a`: end of sequence, stop string, length limit, or on.
// Sets a->done when the sequence has finished and completes its result.
void Advance(const GenerationRequest& req, int32_t token, const std::vector<int32_t>& eos_ids,
             Active* a) {
  GenerationResult* out = &a->result;
  a->pending.assign(1, token);
  a->fed = 0;
  a->decoding = true;
  a->history.push_back(token);
  if (std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end()) {
    out->finish_reason = "stop";
    a->done = true;
    return;
  }
  out->tokens.push_back(token);
  if (a->text) {
    auto piece = a->text->Feed(token);
    if (piece.ok()) out->text += *piece;
    // Stop strings: cut the text at the earliest one.
    size_t cut = std::string::npos;
    for (const std::string& stop : req.stop) {
      if (!stop.empty()) cut = std::min(cut, out->text.find(stop));
    }
    if (cut != std::string::npos) {
      out->text.resize(cut);
      out->finish_reason = "stop";
      a->done = true;
      return;
    }
  }
  if (static_cast<int64_t>(out->tokens.size()) >= a->limit) {
    out->finish_reason = "length";
    a->done = true;
    if (a->text) out->text += a->text->Flush();
  }
}

}  // namespace

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  // Nearest rank: the ceil(q * n)-th smallest (1-based), the smallest for q <= 0.
  const double rank = std::ceil(q * static_cast<double>(values.size()));
  const size_t k = rank < 1 ? 0 : std::min(values.size(), static_cast<size_t>(rank)) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  return values[k];
}

void Engine::RecordLatency(const GenerationResult& r) {
  EngineStats& s = stats_;
  const int64_t n = ++s.served_requests;
  const size_t cap = std::max<size_t>(1, options_.latency_samples);
  if (s.first_token_seconds.size() < cap) {
    s.first_token_seconds.push_back(r.first_token_seconds);
    s.finish_seconds.push_back(r.finish_seconds);
    return;
  }
  const uint64_t j = latency_rng_() % static_cast<uint64_t>(n);
  if (j < cap) {
    s.first_token_seconds[j] = r.first_token_seconds;
    s.finish_seconds[j] = r.finish_seconds;
  }
}

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
  DF11_RETURN_IF_ERROR(Generate(requests, [&](size_t i, GenerationResult r) {
    results[i] = std::move(r);
    return Status::Ok();
  }));
  return results;
}

Status Engine::Generate(std::span<const GenerationRequest> requests,
                        const ResultCallback& on_result) {
  const int64_t vocab = runner_->vocab_size(), context = runner_->context_length();
  const size_t batch = static_cast<size_t>(std::max<int64_t>(1, options_.batch_size));
  // Why request r cannot be served at all, or "".
  auto refuse = [&](const GenerationRequest& r) -> std::string {
    const int64_t prompt = static_cast<int64_t>(r.prompt.size());
    if (prompt == 0) return "empty prompt";
    auto bad = std::find_if(r.prompt.begin(), r.prompt.end(),
                            [&](int32_t t) { return t < 0 || t >= vocab; });
    if (bad != r.prompt.end()) {
      return "token id " + std::to_string(*bad) + " is outside the vocabulary [0, " +
             std::to_string(vocab) + ")";
    }
    if (prompt >= context) {
      return "prompt of " + std::to_string(prompt) + " tokens does not fit the context of " +
             std::to_string(context) + " tokens (max_position_embeddings)";
    }
    if (r.max_tokens < 1) {
      return "\"max_tokens\" = " + std::to_string(r.max_tokens) + ": expected an integer >= 1";
    }
    if (std::string why = SamplingParamsError(r.sampling); !why.empty()) return why;
    const int64_t need = prompt + std::min(r.max_tokens, context - prompt);
    if (options_.kv_tokens > 0 && need > options_.kv_tokens) {
      return "needs " + std::to_string(need) + " KV cache tokens (prompt " +
             std::to_string(prompt) + " + max_tokens " + std::to_string(need - prompt) +
             "), more than the KV budget of " + std::to_string(options_.kv_tokens) + " tokens";
    }
    return "";
  };

  std::vector<Active> running;  // admitted and not finished, in admission order
  int64_t reserved = 0;         // KV tokens the running sequences may fill
  size_t next = 0;              // first request not yet admitted
  int64_t step = 0;             // steps of this call so far
  const auto start = std::chrono::steady_clock::now();
  StepOutput output;
  while (next < requests.size() || !running.empty()) {
    // Admit waiting requests, in order, while the batch and the KV budget have room (static
    // batching: only into an empty batch).
    if (options_.continuous || running.empty()) {
      while (next < requests.size() && running.size() < batch) {
        const GenerationRequest& r = requests[next];
        GenerationResult out;
        out.id = r.id;
        out.prompt_tokens = static_cast<int64_t>(r.prompt.size());
        if (std::string why = refuse(r); !why.empty()) {
          out.error = std::move(why);
          DF11_RETURN_IF_ERROR(on_result(next++, std::move(out)));
          continue;
        }
        const int64_t prompt = static_cast<int64_t>(r.prompt.size());
        const int64_t limit = std::min(r.max_tokens, context - prompt);
        if (options_.kv_tokens > 0 && reserved + prompt + limit > options_.kv_tokens) break;
        Active a;
        a.index = next++;
        a.result = std::move(out);
        a.limit = limit;
        a.cache = runner_->NewCache(prompt + limit);
        a.history = r.prompt;
        a.pending = r.prompt;
        a.rng = r.seed;
        if (options_.tokenizer != nullptr) a.text.emplace(options_.tokenizer, true);
        reserved += prompt + limit;
        running.push_back(std::move(a));
      }
      stats_.peak_kv_tokens = std::max(stats_.peak_kv_tokens, reserved);
    }
    if (running.empty()) break;  // every remaining request was refused
    // One step (one pass over the weights; with DF11 every pass decodes every layer): a token
    // for every decoding sequence, then prompts in admission order, cut into chunks where they
    // would take the step past max_step_tokens.
    int64_t room = options_.max_step_tokens > 0 ? options_.max_step_tokens
                                                : std::numeric_limits<int64_t>::max();
    std::vector<Active*> live;
    std::vector<size_t> feed;  // tokens each live sequence feeds
    for (Active& a : running) {
      if (a.decoding) {
        live.push_back(&a);
        feed.push_back(1);
        --room;
      }
    }
    const size_t decoding = live.size();
    int64_t prompt_tokens = 0;
    for (Active& a : running) {
      if (a.decoding) continue;
      if (room <= 0 && !live.empty()) break;
      const int64_t left = static_cast<int64_t>(a.pending.size() - a.fed);
      const int64_t chunk = std::min(left, std::max<int64_t>(room, 1));
      live.push_back(&a);
      feed.push_back(static_cast<size_t>(chunk));
      room -= chunk;
      prompt_tokens += chunk;
    }
    const bool prefill = live.size() > decoding;
    std::vector<SequenceStep> steps;
    std::vector<SampleSpec> specs;
    bool greedy_only = true;
    for (size_t s = 0; s < live.size(); ++s) {
      Active* a = live[s];
      steps.push_back({&a->cache, std::span<const int32_t>(a->pending).subspan(a->fed, feed[s])});
      greedy_only = greedy_only && Greedy(requests[a->index].sampling);
      specs.push_back({requests[a->index].sampling, a->rng, a->history});
    }
    const auto t0 = std::chrono::steady_clock::now();
    DF11_RETURN_IF_ERROR(runner_->Step(steps, greedy_only, &output,
                                       greedy_only ? std::span<const SampleSpec>() : specs));
    const auto t1 = std::chrono::steady_clock::now();
    if (prefill) {
      stats_.prefill_seconds += Seconds(t0, t1);
      ++stats_.prefill_steps;
      stats_.prompt_tokens += prompt_tokens;
    } else {
      stats_.decode_seconds += Seconds(t0, t1);
      ++stats_.decode_steps;
      stats_.decode_tokens += static_cast<int64_t>(live.size());
    }
    for (size_t s = 0; s < live.size(); ++s) {
      Active& a = *live[s];
      if (a.fed + feed[s] < a.pending.size()) {  // a prompt chunk: its token is not the next one
        a.fed += feed[s];
        continue;
      }
      const int32_t token = output.argmax[s];
      if (!greedy_only) a.rng = output.rng[s];
      ++stats_.generated_tokens;
      if (a.result.first_token_step < 0) {
        a.result.first_token_step = step;
        a.result.first_token_seconds = Seconds(start, t1);
      }
      Advance(requests[a.index], token, options_.eos_ids, &a);
      if (a.done) a.result.finish_seconds = Seconds(start, t1);
    }
    ++step;
    // Finished sequences leave; their results go out in the order they finished.
    for (auto it = running.begin(); it != running.end();) {
      if (!it->done) {
        ++it;
        continue;
      }
      runner_->Release(it->cache);
      reserved -= static_cast<int64_t>(requests[it->index].prompt.size()) + it->limit;
      const size_t index = it->index;
      GenerationResult result = std::move(it->result);
      RecordLatency(result);
      it = running.erase(it);
      DF11_RETURN_IF_ERROR(on_result(index, std::move(result)));
    }
  }
  return Status::Ok();
}

}  // namespace df11
