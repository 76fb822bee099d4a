// SPDX-License-Identifier: Apache-2.0
// ForwardBackend: the forward pass of one rank's slice of a decoder-only transformer, whatever
// runs it (CpuBackend on the CPU, CudaBackend on a GPU). Hidden states and logits cross this
// interface in host memory, so the engine and the distributed runner (pipeline sends over MPI,
// vocab-parallel embedding sums) drive every backend the same way. Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/rope/rope.h"
#include "kernels/sampling/sampling.h"
#include "runtime/core/status.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model_weights.h"

namespace df11 {

// One sequence's share of a forward step: new tokens appended at positions cache->length...
// The last `drafts` of them are drafted tokens to verify (speculative decoding): logits come
// back for the last drafts + 1 tokens instead of the last one.
struct SequenceStep {
  KvCache* cache = nullptr;
  std::span<const int32_t> tokens;
  int64_t drafts = 0;  // < tokens.size(); backends that VerifiesDrafts only
};

// Logits rows a step returns: drafts + 1 per sequence (1 without drafts), or every token.
int64_t LogitsRows(std::span<const SequenceStep> steps, bool all_tokens);

// Tokens in all steps.
int64_t TotalTokens(std::span<const SequenceStep> steps);

// The rotary embedding config.json asks for (rope_theta, rope_scaling, head_dim); `local`: the
// sliding-window layers' of Gemma 3 (rope_local_base_freq), the same as the global one for
// models without one.
RopeParams RopeParamsOf(const ModelConfig& c, bool local = false);

// How to sample one sequence of a step.
struct SampleSpec {
  SamplingParams params;
  uint64_t rng = 0;                 // the request's RNG state before this draw
  std::span<const int32_t> history; // tokens seen so far (for the repetition penalty)
};

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;

  // A cache sized for `capacity` positions of this rank's layers and kv heads.
  virtual KvCache NewCache(int64_t capacity) const = 0;
  // Positions per block where the backend pages its KV cache and takes block tables planned by
  // its caller (KvCache::blocks of up to KvBlocks' pool size; a backend serves either those or
  // NewCache's caches, not both at once); 0 where it does not.
  virtual int64_t KvBlockTokens() const { return 0; }
  // Whether Logits returns the rows of drafted tokens (speculative decoding).
  virtual bool VerifiesDrafts() const { return false; }
  // Whether the paged backend reads its sliding-window layers through KvCache::sliding_blocks
  // (their own pool: the block manager's second group).
  virtual bool KvSlidingGroup() const { return false; }
  // The positions a sequence may reach as this backend plans its KV cache (the CUDA backend:
  // ForwardOptions::context): the engine splits its budget between the block groups
  // (KvGroupsOfBudget) for sequences of this many, as the backend sizes its pool.
  virtual int64_t KvPlanContext() const { return weights().config.max_position_embeddings; }
  // The most positions of one sequence a step writes as this backend plans its KV cache (the
  // CUDA backend: ForwardOptions::max_step_tokens; a prompt chunk holds the sliding blocks of
  // its window and its own positions): the engine splits for it too. 0: not planned (the
  // engine splits for its own max_step_tokens).
  virtual int64_t KvPlanStep() const { return 0; }

  // hidden (total_tokens, hidden), host memory = embedding of every step's tokens (local vocab
  // rows; the caller all-reduces across a vocab-parallel group). Rows follow the steps in order.
  virtual Status Embed(std::span<const SequenceStep> steps, float* hidden) = 0;
  // Runs this rank's layers on hidden (host) in place and appends to the caches (lengths advance).
  virtual Status RunLayers(std::span<const SequenceStep> steps, float* hidden) = 0;
  // Logits of this rank's vocab rows, (rows, vocab_rows), for the last drafts + 1 tokens of each
  // step (SequenceStep::drafts; backends that VerifiesDrafts, else the last token), or every
  // token when all_tokens. `hidden` (host) is the output of the last layer.
  virtual Status Logits(std::span<const SequenceStep> steps, const float* hidden, bool all_tokens,
                        std::vector<float>* logits) = 0;
  // Embed + RunLayers + Logits on one rank. Errors: a DF11 stream found corrupt while decoding.
  virtual Status Forward(std::span<const SequenceStep> steps, bool all_tokens,
                         std::vector<float>* logits) = 0;
  // Greedy fast path on one rank: the argmax (lowest index on ties, as ArgmaxRef) of each step's
  // last-token logits, in local vocab row indices. The default runs Forward and ArgmaxRef; a GPU
  // backend finds them on the device and copies back only the ids.
  virtual Status ForwardArgmax(std::span<const SequenceStep> steps, std::vector<int32_t>* ids);
  // Sampling on one rank holding the whole vocabulary: each step's next token drawn from its
  // last-token logits with its spec (SampleRef's rules and RNG), and each spec's RNG state after
  // the draw. The default runs Forward and SampleRef; a GPU backend samples on the device
  // (SampleCuda) and copies back only the tokens.
  virtual Status ForwardSample(std::span<const SequenceStep> steps,
                               std::span<const SampleSpec> specs, std::vector<int32_t>* tokens,
                               std::vector<uint64_t>* rngs);

  virtual const ModelWeights& weights() const = 0;
  // Bytes of decode scratch (two layer buffers and the LM-head chunk).
  virtual int64_t ScratchBytes() const = 0;
  // KV cache tokens this rank's memory leaves room for, summed over sequences (a paged backend:
  // its pool's blocks times KvBlockTokens; GPU: the memory plan's pool), or 0 where no plan
  // limits them.
  virtual int64_t KvTokenBudget() const { return 0; }
  // Blocks until queued device work is done (timing); a no-op on the CPU.
  virtual void Synchronize() {}
};

}  // namespace df11
