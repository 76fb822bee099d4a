// SPDX-License-Identifier: Apache-2.0
// StepRunner over a tensor- and pipeline-parallel group. The leader (world rank 0, stage 0)
// runs the Engine; each Step broadcasts a plan (sequence slots and their new tokens) to every
// rank, and all ranks execute it: stage 0 embeds (vocab-parallel, summed over its TP group),
// every stage runs its layers (all-reduce after o_proj and down_proj inside), hidden states move
// stage to stage point to point, split into as many micro-batches as stages so stages overlap;
// the last stage returns tokens to the leader: greedy ones found with a vocab-parallel
// all-gather of (max, index) pairs, sampled ones drawn there from the gathered logits with each
// request's parameters and RNG state carried in the plan (or full logits when no sampling is
// given). Drafted tokens (speculative decoding) are verified there too, from the logits rows of
// the drafted positions, and each sequence's accepted tokens go back with their counts; the
// leader's plans carry the rolled-back cache lengths. Followers call Serve() until Shutdown().
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/world.h"
#include "runtime/engine/step_runner.h"
#include "runtime/model/forward_backend.h"

namespace df11 {

struct DistributedContext {
  int rank = 0;  // world rank
  ParallelLayout layout;
  Communicator* world = nullptr;  // all ranks: plans, activations, results
  Communicator* tp = nullptr;     // this stage's tensor-parallel group
};

class DistributedStepRunner : public StepRunner {
 public:
  DistributedStepRunner(ForwardBackend* backend, const DistributedContext& context);

  int64_t vocab_size() const override { return backend_->weights().config.vocab_size; }
  int64_t context_length() const override {
    return backend_->weights().config.max_position_embeddings;
  }
  // Leader only: a handle whose slot names the cache every rank allocates at first use.
  KvCache NewCache(int64_t capacity) override;
  // Paged backends: every rank takes the block tables the leader's engine plans (the same block
  // ids on every rank; each stage's pool holds only its layers, and only the groups they are in).
  int64_t kv_block_tokens() const override { return backend_->KvBlockTokens(); }
  bool verifies_drafts() const override { return backend_->VerifiesDrafts(); }
  std::vector<int64_t> kv_group_windows() const override {
    if (!backend_->KvSlidingGroup()) return {};
    return backend_->weights().config.layer_window;
  }
  int64_t kv_plan_context() const override { return backend_->KvPlanContext(); }
  int64_t kv_plan_step() const override { return backend_->KvPlanStep(); }
  int64_t KvTokens(int64_t capacity) const override {
    return KvCacheTokens(backend_->weights().config.layer_window, capacity);
  }
  Status Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
              std::span<const SampleSpec> sample = {}) override;
  // Leader only: the slot is freed on every rank with the next plan.
  void Release(const KvCache& cache) override;

  // Leader: tells every follower to return from Serve().
  void Shutdown();
  // Followers: executes plans until the leader shuts down.
  Status Serve();

 private:
  struct Plan {
    bool stop = false;
    bool greedy_only = true;
    bool sampled = false;  // the last stage samples with `params`/`rngs` (greedy_only false)
    std::vector<int64_t> slots, capacities;  // capacity > 0: a new sequence
    std::vector<int64_t> released;           // slots to free before the step
    std::vector<std::vector<int32_t>> tokens;  // each sequence's new tokens (SequenceStep)
    std::vector<int64_t> drafts;               // of those, drafted (SequenceStep::drafts)
    bool has_drafts = false;                   // some sequence has drafts
    // Paged caches (block_tokens > 0 on the leader's handle): per sequence, whether it is paged,
    // its positions before the step, its block table and the block copies to do first, and
    // (sampled plans, a slot's first step) the tokens before the step for the sampler's history;
    // where the sliding-window layers keep their own blocks, their table and copies too.
    std::vector<uint8_t> paged;
    std::vector<int64_t> lengths;
    std::vector<std::vector<int32_t>> tables, copies, seen, sliding_tables, sliding_copies;
    std::vector<SamplingParams> params;
    std::vector<uint64_t> rngs;
  };
  void BroadcastPlan(Plan* plan);  // from the leader to all
  // Every rank's part of a step; `out` is filled on the leader.
  Status Execute(const Plan& plan, StepOutput* out);
  // Frees released caches, allocates new ones, and (on the sampling rank) extends each
  // sequence's history; returns the plan's steps over this rank's caches.
  std::vector<SequenceStep> PrepareSteps(const Plan& plan);
  // The rank that holds full logits and samples: the last stage's first tensor-parallel rank.
  int SamplingRank() const;
  // This stage's layers over the step in micro-batches (embedding on the first stage, hidden
  // states from and to the neighbouring stages); the last stage collects every micro-batch's
  // output in *last_hidden.
  Status RunStages(std::span<const SequenceStep> steps, std::vector<float>* last_hidden);
  // Last stage: the argmax of each row over the whole vocabulary from this rank's logits
  // (rows, vocab_rows), by a (max, index) all-gather over the tensor-parallel group.
  std::vector<int32_t> GreedyTokens(const std::vector<float>& local, int64_t rows);
  // Last stage: the full logits (rows, vocab) gathered from every tensor-parallel rank.
  std::vector<float> GatherLogits(const std::vector<float>& local, int64_t rows);
  // Sampling rank: draws each sequence's token from `logits` (its drafts + 1 rows) with the
  // plan's parameters and RNG states into result->tokens and result->rng, verifying drafts
  // (result->counts, when the plan has drafts).
  void Sample(const Plan& plan, const std::vector<float>& logits, StepOutput* result);
  // Moves the sampling rank's `result` to the leader's `out`.
  void ReturnResults(const Plan& plan, StepOutput* result, StepOutput* out);

  ForwardBackend* backend_;
  DistributedContext ctx_;
  int stage_, tp_rank_;
  int64_t next_slot_ = 0;
  std::vector<int64_t> released_;  // leader: slots released since the last plan
  std::set<int64_t> sent_;         // leader: paged slots already in a plan
  std::map<int64_t, KvCache> caches_;  // this rank's caches by slot
  // On the sampling rank (last stage, tp rank 0): every token each slot has seen, for the
  // repetition penalty (the plans carry all of them).
  std::map<int64_t, std::vector<int32_t>> history_;
};

}  // namespace df11
