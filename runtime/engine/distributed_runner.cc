// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/distributed_runner.h"

#include <algorithm>
#include <limits>
#include <set>

#include "kernels/common/check.h"

namespace df11 {
namespace {

int64_t CountTokens(std::span<const SequenceStep> steps) {
  int64_t n = 0;
  for (const SequenceStep& s : steps) n += static_cast<int64_t>(s.tokens.size());
  return n;
}

// (max logit, global index) of one row, packed for the all-gather.
struct Best {
  float value;
  int32_t index;
};

}  // namespace

DistributedStepRunner::DistributedStepRunner(Transformer* transformer,
                                             const DistributedContext& context)
    : t_(transformer),
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
    wire = {plan->stop ? 1 : 0, plan->greedy_only ? 1 : 0,
            static_cast<int64_t>(plan->slots.size())};
    for (size_t i = 0; i < plan->slots.size(); ++i) {
      wire.push_back(plan->slots[i]);
      wire.push_back(plan->capacities[i]);
      wire.push_back(static_cast<int64_t>(plan->tokens[i].size()));
      wire.insert(wire.end(), plan->tokens[i].begin(), plan->tokens[i].end());
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
  const int64_t n = wire[at++];
  for (int64_t i = 0; i < n; ++i) {
    plan->slots.push_back(wire[at++]);
    plan->capacities.push_back(wire[at++]);
    const int64_t k = wire[at++];
    plan->tokens.emplace_back(wire.begin() + at, wire.begin() + at + k);
    at += static_cast<size_t>(k);
  }
}

Status DistributedStepRunner::Step(std::span<const SequenceStep> steps, bool greedy_only,
                                   StepOutput* out) {
  DF11_CHECK(ctx_.rank == 0);
  Plan plan;
  plan.greedy_only = greedy_only;
  for (const SequenceStep& s : steps) {
    plan.slots.push_back(s.cache->slot);
    plan.capacities.push_back(s.cache->length == 0 ? s.cache->capacity : 0);
    plan.tokens.emplace_back(s.tokens.begin(), s.tokens.end());
  }
  BroadcastPlan(&plan);
  DF11_RETURN_IF_ERROR(Execute(plan, out));
  for (const SequenceStep& s : steps) s.cache->length += static_cast<int64_t>(s.tokens.size());
  return Status::Ok();
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

Status DistributedStepRunner::Execute(const Plan& plan, StepOutput* out) {
  const ShardLayout& L = ctx_.layout;
  const int64_t h = t_->weights().config.hidden_size;
  const int64_t vocab = t_->weights().config.vocab_size;
  const int64_t n = static_cast<int64_t>(plan.slots.size());
  // Caches: a plan with new sequences starts a new batch; earlier caches are dropped.
  const bool new_batch =
      std::any_of(plan.capacities.begin(), plan.capacities.end(), [](int64_t c) { return c > 0; });
  if (new_batch) {
    std::set<int64_t> keep(plan.slots.begin(), plan.slots.end());
    std::erase_if(caches_, [&](const auto& kv) { return !keep.count(kv.first); });
  }
  std::vector<SequenceStep> steps;
  for (int64_t i = 0; i < n; ++i) {
    if (plan.capacities[i] > 0) caches_[plan.slots[i]] = t_->NewCache(plan.capacities[i]);
    auto it = caches_.find(plan.slots[i]);
    DF11_CHECK_MSG(it != caches_.end(), "plan names a sequence slot this rank never allocated");
    steps.push_back({&it->second, plan.tokens[i]});
  }
  const bool first = stage_ == 0, last = stage_ == L.pp - 1;
  const int micro = static_cast<int>(std::min<int64_t>(L.pp, n));
  std::vector<int32_t> tokens;     // last stage: argmax per sequence
  std::vector<float> logits;       // last stage: full logits per sequence
  std::vector<float> last_hidden;  // last stage: hidden states of all micro-batches
  for (int mb = 0; mb < micro; ++mb) {
    const int64_t b = n * mb / micro, e = n * (mb + 1) / micro;
    std::span<const SequenceStep> part(steps.data() + b, static_cast<size_t>(e - b));
    const int64_t T = CountTokens(part);
    std::vector<float> hidden(static_cast<size_t>(T * h));
    if (first) {
      DF11_RETURN_IF_ERROR(t_->Embed(part, hidden.data()));
      if (L.tp > 1) ctx_.tp->AllReduceSum(hidden.data(), T * h);
    } else {
      ctx_.world->Recv(hidden.data(), 4 * T * h, L.Rank(stage_ - 1, tp_rank_), Tag::kActivations);
    }
    DF11_RETURN_IF_ERROR(t_->RunLayers(part, hidden.data()));
    if (!last) {
      ctx_.world->Send(hidden.data(), 4 * T * h, L.Rank(stage_ + 1, tp_rank_), Tag::kActivations);
      continue;
    }
    // The last stage keeps every micro-batch's hidden states: one LM-head pass for all of them.
    last_hidden.insert(last_hidden.end(), hidden.begin(), hidden.end());
  }
  if (last && n > 0) {
    std::vector<float> local;
    DF11_RETURN_IF_ERROR(t_->Logits(steps, last_hidden.data(), false, &local));
    const int64_t rows = n, vl = t_->weights().dims.vocab_rows;
    const int64_t v0 = t_->weights().dims.vocab_begin;
    if (plan.greedy_only) {
      // Vocab-parallel argmax: each rank's (max, index), then the best (lowest index on ties).
      std::vector<Best> mine(rows), all(rows * L.tp);
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = local.data() + r * vl;
        int64_t best = 0;
        for (int64_t j = 1; j < vl; ++j) {
          if (row[j] > row[best]) best = j;
        }
        mine[r] = {row[best], static_cast<int32_t>(v0 + best)};
      }
      if (L.tp > 1) {
        ctx_.tp->AllGather(mine.data(), all.data(), static_cast<int64_t>(sizeof(Best)) * rows);
      } else {
        all = mine;
      }
      for (int64_t r = 0; r < rows; ++r) {
        Best best = all[r];
        for (int k = 1; k < L.tp; ++k) {
          const Best& c = all[k * rows + r];
          if (c.value > best.value || (c.value == best.value && c.index < best.index)) best = c;
        }
        tokens.push_back(best.index);
      }
    } else {
      // Gather every rank's vocabulary rows (equal-sized slices, the last padded).
      const int64_t slice = (vocab + L.tp - 1) / L.tp;
      std::vector<float> padded(rows * slice, -std::numeric_limits<float>::infinity());
      for (int64_t r = 0; r < rows; ++r) {
        std::copy(local.begin() + r * vl, local.begin() + (r + 1) * vl, padded.begin() + r * slice);
      }
      std::vector<float> all(padded.size() * L.tp);
      if (L.tp > 1) {
        ctx_.tp->AllGather(padded.data(), all.data(), 4 * static_cast<int64_t>(padded.size()));
      } else {
        all = padded;
      }
      for (int64_t r = 0; r < rows; ++r) {
        for (int k = 0; k < L.tp; ++k) {
          const int64_t lo = k * slice, hi = std::min(vocab, lo + slice);
          const float* src = all.data() + (k * rows + r) * slice;
          logits.insert(logits.end(), src, src + (hi - lo));
        }
      }
    }
  }
  // The last stage's first TP rank returns the results to the leader after all micro-batches
  // (so no rank blocks on a send while the leader still sends activations).
  const int source = L.Rank(L.pp - 1, 0);
  if (ctx_.rank == source && source != 0) {
    if (plan.greedy_only) {
      ctx_.world->Send(tokens.data(), 4 * n, 0, Tag::kResults);
    } else {
      ctx_.world->Send(logits.data(), 4 * n * vocab, 0, Tag::kResults);
    }
  }
  if (ctx_.rank == 0) {
    out->argmax.clear();
    out->logits.clear();
    if (plan.greedy_only) {
      out->argmax.resize(static_cast<size_t>(n));
      if (source == 0) {
        out->argmax = tokens;
      } else {
        ctx_.world->Recv(out->argmax.data(), 4 * n, source, Tag::kResults);
      }
    } else {
      out->logits.resize(static_cast<size_t>(n * vocab));
      if (source == 0) {
        out->logits = logits;
      } else {
        ctx_.world->Recv(out->logits.data(), 4 * n * vocab, source, Tag::kResults);
      }
    }
  }
  return Status::Ok();
}

}  // namespace df11
