// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/distributed_runner.h"

#include <algorithm>
#include <bit>
#include <limits>

#include "kernels/common/check.h"
#include "parallel/sharding.h"
#include "runtime/engine/speculation.h"

namespace df11 {
namespace {

// (max logit, global index) of one row, packed for the all-gather.
struct Best {
  float value;
  int32_t index;
};

}  // namespace

DistributedStepRunner::DistributedStepRunner(ForwardBackend* backend,
                                             const DistributedContext& context)
    : backend_(backend),
      ctx_(context),
      stage_(context.layout.Stage(context.rank)),
      tp_rank_(context.layout.TpRank(context.rank)) {}

KvCache DistributedStepRunner::NewCache(int64_t capacity) {
  KvCache handle;
  handle.capacity = capacity;
  handle.slot = next_slot_++;
  return handle;
}

void DistributedStepRunner::BroadcastPlan(Plan* plan) {
  std::vector<int64_t> wire;
  if (ctx_.rank == 0) {
    wire = {plan->stop ? 1 : 0, plan->greedy_only ? 1 : 0, plan->sampled ? 1 : 0,
            static_cast<int64_t>(plan->released.size())};
    wire.insert(wire.end(), plan->released.begin(), plan->released.end());
    wire.push_back(static_cast<int64_t>(plan->slots.size()));
    for (size_t i = 0; i < plan->slots.size(); ++i) {
      wire.push_back(plan->slots[i]);
      wire.push_back(plan->capacities[i]);
      wire.push_back(static_cast<int64_t>(plan->tokens[i].size()));
      wire.insert(wire.end(), plan->tokens[i].begin(), plan->tokens[i].end());
      wire.push_back(plan->drafts[i]);
      wire.push_back(plan->paged[i]);
      if (plan->paged[i]) {
        wire.push_back(plan->lengths[i]);
        for (const auto* list : {&plan->tables[i], &plan->copies[i], &plan->seen[i],
                                 &plan->sliding_tables[i], &plan->sliding_copies[i]}) {
          wire.push_back(static_cast<int64_t>(list->size()));
          wire.insert(wire.end(), list->begin(), list->end());
        }
      }
      if (plan->sampled) {
        const SamplingParams& p = plan->params[i];
        wire.push_back(std::bit_cast<int32_t>(p.temperature));
        wire.push_back(p.top_k);
        wire.push_back(std::bit_cast<int32_t>(p.top_p));
        wire.push_back(std::bit_cast<int32_t>(p.min_p));
        wire.push_back(std::bit_cast<int32_t>(p.repetition_penalty));
        wire.push_back(std::bit_cast<int64_t>(plan->rngs[i]));
      }
    }
  }
  int64_t size = static_cast<int64_t>(wire.size());
  ctx_.world->Broadcast(&size, sizeof(size), 0);
  wire.resize(static_cast<size_t>(size));
  ctx_.world->Broadcast(wire.data(), 8 * size, 0);
  if (ctx_.rank == 0) return;
  *plan = Plan();
  size_t at = 0;
  plan->stop = wire[at++] != 0;
  plan->greedy_only = wire[at++] != 0;
  plan->sampled = wire[at++] != 0;
  const int64_t n_released = wire[at++];
  plan->released.assign(wire.begin() + at, wire.begin() + at + n_released);
  at += static_cast<size_t>(n_released);
  const int64_t n = wire[at++];
  for (int64_t i = 0; i < n; ++i) {
    plan->slots.push_back(wire[at++]);
    plan->capacities.push_back(wire[at++]);
    const int64_t k = wire[at++];
    plan->tokens.emplace_back(wire.begin() + at, wire.begin() + at + k);
    at += static_cast<size_t>(k);
    plan->drafts.push_back(wire[at++]);
    plan->has_drafts = plan->has_drafts || plan->drafts.back() > 0;
    plan->paged.push_back(static_cast<uint8_t>(wire[at++]));
    plan->lengths.push_back(plan->paged.back() ? wire[at++] : 0);
    for (auto* lists : {&plan->tables, &plan->copies, &plan->seen, &plan->sliding_tables,
                        &plan->sliding_copies}) {
      lists->emplace_back();
      if (!plan->paged.back()) continue;
      const int64_t m = wire[at++];
      lists->back().assign(wire.begin() + at, wire.begin() + at + m);
      at += static_cast<size_t>(m);
    }
    if (plan->sampled) {
      SamplingParams p;
      p.temperature = std::bit_cast<float>(static_cast<int32_t>(wire[at++]));
      p.top_k = static_cast<int>(wire[at++]);
      p.top_p = std::bit_cast<float>(static_cast<int32_t>(wire[at++]));
      p.min_p = std::bit_cast<float>(static_cast<int32_t>(wire[at++]));
      p.repetition_penalty = std::bit_cast<float>(static_cast<int32_t>(wire[at++]));
      plan->params.push_back(p);
      plan->rngs.push_back(std::bit_cast<uint64_t>(wire[at++]));
    }
  }
}

Status DistributedStepRunner::Step(std::span<const SequenceStep> steps, bool greedy_only,
                                   StepOutput* out, std::span<const SampleSpec> sample) {
  DF11_CHECK(ctx_.rank == 0);
  Plan plan;
  plan.released.swap(released_);
  plan.greedy_only = greedy_only;
  plan.sampled = !greedy_only && !sample.empty();
  for (size_t i = 0; i < steps.size(); ++i) {
    const SequenceStep& s = steps[i];
    plan.slots.push_back(s.cache->slot);
    const bool paged = s.cache->block_tokens > 0;
    plan.capacities.push_back(!paged && s.cache->length == 0 ? s.cache->capacity : 0);
    plan.tokens.emplace_back(s.tokens.begin(), s.tokens.end());
    plan.drafts.push_back(s.drafts);
    plan.has_drafts = plan.has_drafts || s.drafts > 0;
    plan.paged.push_back(paged ? 1 : 0);
    plan.lengths.push_back(s.cache->length);
    plan.tables.push_back(s.cache->blocks);
    plan.sliding_tables.push_back(s.cache->sliding_blocks);
    plan.copies.emplace_back();
    plan.sliding_copies.emplace_back();
    for (const auto& [from, to] : s.cache->block_copies) {
      plan.copies.back().push_back(from);
      plan.copies.back().push_back(to);
    }
    for (const auto& [from, to] : s.cache->sliding_block_copies) {
      plan.sliding_copies.back().push_back(from);
      plan.sliding_copies.back().push_back(to);
    }
    s.cache->block_copies.clear();  // done by every rank with this step
    s.cache->sliding_block_copies.clear();
    plan.seen.emplace_back();
    if (paged && sent_.insert(s.cache->slot).second && !greedy_only && !sample.empty()) {
      // The positions found in the prefix cache never travel as tokens: the sampler's history
      // starts with them.
      const std::span<const int32_t> h = sample[i].history;
      plan.seen.back().assign(h.begin(), h.begin() + s.cache->length);
    }
    if (plan.sampled) {
      plan.params.push_back(sample[i].params);
      plan.rngs.push_back(sample[i].rng);
    }
  }
  BroadcastPlan(&plan);
  DF11_RETURN_IF_ERROR(Execute(plan, out));
  for (const SequenceStep& s : steps) s.cache->length += static_cast<int64_t>(s.tokens.size());
  return Status::Ok();
}

void DistributedStepRunner::Release(const KvCache& cache) {
  DF11_CHECK(ctx_.rank == 0);
  if (cache.slot >= 0) released_.push_back(cache.slot);
  sent_.erase(cache.slot);
}

void DistributedStepRunner::Shutdown() {
  Plan plan;
  plan.stop = true;
  BroadcastPlan(&plan);
}

Status DistributedStepRunner::Serve() {
  for (;;) {
    Plan plan;
    BroadcastPlan(&plan);
    if (plan.stop) return Status::Ok();
    StepOutput ignored;
    DF11_RETURN_IF_ERROR(Execute(plan, &ignored));
  }
}

std::vector<SequenceStep> DistributedStepRunner::PrepareSteps(const Plan& plan) {
  // Caches of finished sequences go first; new sequences get theirs at first use.
  for (int64_t slot : plan.released) {
    caches_.erase(slot);
    history_.erase(slot);
  }
  std::vector<SequenceStep> steps;
  for (size_t i = 0; i < plan.slots.size(); ++i) {
    if (plan.capacities[i] > 0) caches_[plan.slots[i]] = backend_->NewCache(plan.capacities[i]);
    if (plan.paged[i]) {  // the leader's table, the same block ids on every rank
      KvCache& c = caches_[plan.slots[i]];
      c.length = plan.lengths[i];
      c.block_tokens = backend_->KvBlockTokens();
      c.blocks = plan.tables[i];
      c.capacity = static_cast<int64_t>(c.blocks.size()) * c.block_tokens;
      c.sliding_blocks = plan.sliding_tables[i];
      c.block_copies.clear();
      c.sliding_block_copies.clear();
      for (size_t j = 0; j + 1 < plan.copies[i].size(); j += 2) {
        c.block_copies.emplace_back(plan.copies[i][j], plan.copies[i][j + 1]);
      }
      for (size_t j = 0; j + 1 < plan.sliding_copies[i].size(); j += 2) {
        c.sliding_block_copies.emplace_back(plan.sliding_copies[i][j],
                                            plan.sliding_copies[i][j + 1]);
      }
    }
    auto it = caches_.find(plan.slots[i]);
    DF11_CHECK_MSG(it != caches_.end(), "plan names a sequence slot this rank never allocated");
    steps.push_back({&it->second, plan.tokens[i], plan.drafts[i]});
  }
  if (ctx_.rank == SamplingRank()) {
    for (size_t i = 0; i < plan.slots.size(); ++i) {
      std::vector<int32_t>& seen = history_[plan.slots[i]];
      if (plan.capacities[i] > 0) seen.clear();
      // Holds a token per cached position: rejected drafts (cut from the cache) leave it too.
      if (plan.paged[i] && static_cast<int64_t>(seen.size()) > plan.lengths[i]) {
        seen.resize(static_cast<size_t>(plan.lengths[i]));
      }
      if (!plan.seen[i].empty()) seen = plan.seen[i];
      seen.insert(seen.end(), plan.tokens[i].begin(), plan.tokens[i].end());
    }
  }
  return steps;
}

int DistributedStepRunner::SamplingRank() const { return ctx_.layout.Rank(ctx_.layout.pp - 1, 0); }

Status DistributedStepRunner::RunStages(std::span<const SequenceStep> steps,
                                        std::vector<float>* last_hidden) {
  const ParallelLayout& L = ctx_.layout;
  const int64_t h = backend_->weights().config.hidden_size;
  const int64_t n = static_cast<int64_t>(steps.size());
  const bool first = stage_ == 0, last = stage_ == L.pp - 1;
  const int micro = static_cast<int>(std::min<int64_t>(L.pp, n));
  for (int mb = 0; mb < micro; ++mb) {
    const int64_t b = n * mb / micro, e = n * (mb + 1) / micro;
    std::span<const SequenceStep> part =
        steps.subspan(static_cast<size_t>(b), static_cast<size_t>(e - b));
    const int64_t T = TotalTokens(part);
    std::vector<float> hidden(static_cast<size_t>(T * h));
    if (first) {
      DF11_RETURN_IF_ERROR(backend_->Embed(part, hidden.data()));
      if (L.tp > 1) ctx_.tp->AllReduceSum(hidden.data(), T * h);
    } else {
      ctx_.world->Recv(hidden.data(), 4 * T * h, L.Rank(stage_ - 1, tp_rank_), Tag::kActivations);
    }
    DF11_RETURN_IF_ERROR(backend_->RunLayers(part, hidden.data()));
    if (!last) {
      ctx_.world->Send(hidden.data(), 4 * T * h, L.Rank(stage_ + 1, tp_rank_), Tag::kActivations);
      continue;
    }
    // The last stage keeps every micro-batch's hidden states: one LM-head pass for all of them.
    last_hidden->insert(last_hidden->end(), hidden.begin(), hidden.end());
  }
  return Status::Ok();
}

std::vector<int32_t> DistributedStepRunner::GreedyTokens(const std::vector<float>& local,
                                                         int64_t rows) {
  const int tp = ctx_.layout.tp;
  const int64_t vl = backend_->weights().dims.vocab_rows;
  const int64_t v0 = backend_->weights().dims.vocab_begin;
  // Vocab-parallel argmax: each rank's (max, index), then the best (lowest index on ties).
  std::vector<Best> mine(rows), all(rows * tp);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = local.data() + r * vl;
    int64_t best = 0;
    for (int64_t j = 1; j < vl; ++j) {
      if (row[j] > row[best]) best = j;
    }
    mine[r] = {row[best], static_cast<int32_t>(v0 + best)};
  }
  if (tp > 1) {
    ctx_.tp->AllGather(mine.data(), all.data(), static_cast<int64_t>(sizeof(Best)) * rows);
  } else {
    all = mine;
  }
  std::vector<int32_t> tokens;
  for (int64_t r = 0; r < rows; ++r) {
    Best best = all[r];
    for (int k = 1; k < tp; ++k) {
      const Best& c = all[k * rows + r];
      if (c.value > best.value || (c.value == best.value && c.index < best.index)) best = c;
    }
    tokens.push_back(best.index);
  }
  return tokens;
}

std::vector<float> DistributedStepRunner::GatherLogits(const std::vector<float>& local,
                                                       int64_t rows) {
  const int tp = ctx_.layout.tp;
  const int64_t vocab = backend_->weights().config.vocab_size;
  const int64_t vl = backend_->weights().dims.vocab_rows;
  // Every rank's vocabulary rows (equal-sized slices, the last padded).
  const int64_t slice = VocabRowsPerRank(vocab, tp);
  std::vector<float> padded(rows * slice, -std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(local.begin() + r * vl, local.begin() + (r + 1) * vl, padded.begin() + r * slice);
  }
  std::vector<float> all(padded.size() * tp);
  if (tp > 1) {
    ctx_.tp->AllGather(padded.data(), all.data(), 4 * static_cast<int64_t>(padded.size()));
  } else {
    all = padded;
  }
  std::vector<float> logits;
  for (int64_t r = 0; r < rows; ++r) {
    for (int k = 0; k < tp; ++k) {
      const int64_t lo = k * slice, hi = std::min(vocab, lo + slice);
      const float* src = all.data() + (k * rows + r) * slice;
      logits.insert(logits.end(), src, src + (hi - lo));
    }
  }
  return logits;
}

void DistributedStepRunner::Sample(const Plan& plan, const std::vector<float>& logits,
                                   StepOutput* result) {
  const int64_t vocab = backend_->weights().config.vocab_size;
  const float* row = logits.data();
  for (size_t r = 0; r < plan.slots.size(); ++r) {
    uint64_t rng = plan.rngs[r];
    const std::vector<int32_t>& seen = history_[plan.slots[r]];
    const size_t drafts = static_cast<size_t>(plan.drafts[r]);
    if (plan.has_drafts) {
      const size_t before = result->tokens.size();
      const std::span<const int32_t> all(seen);
      VerifyDrafts(row, vocab, plan.params[r], all.first(all.size() - drafts),
                   all.last(drafts), &rng, &result->tokens);
      result->counts.push_back(static_cast<int32_t>(result->tokens.size() - before));
    } else {
      result->tokens.push_back(SampleRef(row, vocab, plan.params[r], seen.data(),
                                         static_cast<int64_t>(seen.size()), &rng));
    }
    result->rng.push_back(rng);
    row += static_cast<int64_t>(drafts + 1) * vocab;
  }
}

void DistributedStepRunner::ReturnResults(const Plan& plan, StepOutput* result, StepOutput* out) {
  const int source = SamplingRank();
  const int64_t n = static_cast<int64_t>(plan.slots.size());
  const int64_t vocab = backend_->weights().config.vocab_size;
  const bool tokens_back = plan.greedy_only || plan.sampled;
  if (ctx_.rank == source && source != 0) {
    if (tokens_back) {
      // With drafts each sequence took 1..drafts + 1 tokens: their counts go first.
      if (plan.has_drafts) ctx_.world->Send(result->counts.data(), 4 * n, 0, Tag::kResults);
      const int64_t total = static_cast<int64_t>(result->tokens.size());
      ctx_.world->Send(result->tokens.data(), 4 * total, 0, Tag::kResults);
      if (plan.sampled) ctx_.world->Send(result->rng.data(), 8 * n, 0, Tag::kResults);
    } else {
      ctx_.world->Send(result->logits.data(), 4 * n * vocab, 0, Tag::kResults);
    }
  }
  if (ctx_.rank != 0) return;
  if (source == 0) {
    *out = std::move(*result);
    return;
  }
  out->tokens.clear();
  out->logits.clear();
  out->rng.clear();
  out->counts.clear();
  if (tokens_back) {
    int64_t total = n;
    if (plan.has_drafts) {
      out->counts.resize(static_cast<size_t>(n));
      ctx_.world->Recv(out->counts.data(), 4 * n, source, Tag::kResults);
      total = 0;
      for (int32_t c : out->counts) total += c;
    }
    out->tokens.resize(static_cast<size_t>(total));
    ctx_.world->Recv(out->tokens.data(), 4 * total, source, Tag::kResults);
    if (plan.sampled) {
      out->rng.resize(static_cast<size_t>(n));
      ctx_.world->Recv(out->rng.data(), 8 * n, source, Tag::kResults);
    }
  } else {
    out->logits.resize(static_cast<size_t>(n * vocab));
    ctx_.world->Recv(out->logits.data(), 4 * n * vocab, source, Tag::kResults);
  }
}

Status DistributedStepRunner::Execute(const Plan& plan, StepOutput* out) {
  const std::vector<SequenceStep> steps = PrepareSteps(plan);
  const int64_t n = static_cast<int64_t>(steps.size());
  std::vector<float> last_hidden;  // last stage: hidden states of all micro-batches
  DF11_RETURN_IF_ERROR(RunStages(steps, &last_hidden));
  StepOutput result;  // on the last stage: this step's tokens or full logits
  // Drafted tokens are verified from their rows' logits: greedy here, sampled in Sample.
  DF11_CHECK_MSG(!plan.has_drafts || plan.greedy_only || plan.sampled,
                 "a step with drafts returns tokens, not logits");
  if (stage_ == ctx_.layout.pp - 1 && n > 0) {
    std::vector<float> local;
    DF11_RETURN_IF_ERROR(backend_->Logits(steps, last_hidden.data(), false, &local));
    const int64_t rows = LogitsRows(steps, false);
    if (!plan.greedy_only) {
      result.logits = GatherLogits(local, rows);
    } else if (!plan.has_drafts) {
      result.tokens = GreedyTokens(local, n);
    } else {
      const std::vector<int32_t> targets = GreedyTokens(local, rows);
      std::span<const int32_t> rest = targets;
      for (size_t i = 0; i < steps.size(); ++i) {
        const size_t d = static_cast<size_t>(steps[i].drafts);
        const size_t before = result.tokens.size();
        AcceptGreedyDrafts(rest.first(d + 1), steps[i].tokens.last(d), &result.tokens);
        result.counts.push_back(static_cast<int32_t>(result.tokens.size() - before));
        rest = rest.subspan(d + 1);
      }
    }
  }
  // Sampling happens here, on the rank that holds the full logits.
  if (ctx_.rank == SamplingRank() && plan.sampled) {
    Sample(plan, result.logits, &result);
    result.logits.clear();
  }
  // The last stage's first TP rank returns the results to the leader after all micro-batches
  // (so no rank blocks on a send while the leader still sends activations).
  ReturnResults(plan, &result, out);
  return Status::Ok();
}

}  // namespace df11
