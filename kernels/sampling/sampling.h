// SPDX-License-Identifier: Apache-2.0
// Next-token choice from one request's logits, in transformers' logits-processor order:
// repetition penalty, then (sampling only) temperature, top-k, top-p, min-p, then one draw.
// The random state belongs to the request (splitmix64, one step per sampled token; greedy draws
// nothing), so a request's tokens never depend on the other requests in its batch.
#pragma once

#include <cstdint>
#include <string>

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

struct SamplingParams {
  float temperature = 0;  // > 0: divide logits by it and sample; 0: greedy (argmax)
  int top_k = 0;          // keep the k largest logits (ties with the k-th kept, as HF); 0: off
  float top_p = 1;        // in (0, 1]: keep the smallest top set with probability >= top_p; 1: off
  float min_p = 0;        // in [0, 1]: drop tokens with prob < min_p * max prob; 0: off
  float repetition_penalty = 1;  // > 0: seen tokens' logits divided (if >= 0) or multiplied
                                 // (if < 0) by it, once per distinct token; 1: off
};

// The fields of SamplingParams, to name the one a check refuses.
enum class SamplingField { kNone, kTemperature, kTopK, kTopP, kMinP, kRepetitionPenalty };

// The "valid params" SampleRef and SampleCuda require: temperature finite and >= 0, top_k >= 0,
// top_p in (0, 1], min_p in [0, 1], repetition_penalty finite and > 0 (NaN fails every rule).
// Returns the first field outside its rule, kNone when all are valid; *rule (when non-null) gets
// the rule as text, e.g. "a number in (0, 1]". Requests and flags are checked with this.
SamplingField InvalidSamplingField(const SamplingParams& params, const char** rule);
// The same as a message naming the field as requests do, with its value and rule, e.g.
// "\"top_p\" = 0: expected a number in (0, 1] (1: off)"; "" when `params` are valid.
std::string SamplingParamsError(const SamplingParams& params);

// Index of the largest logit, the lowest index on ties; NaN entries are skipped (0 if all are).
// Requires n >= 1.
int32_t ArgmaxRef(const float* logits,  // (n)
                  int64_t n);

#if DF11_WITH_CUDA
// ArgmaxRef on `stream`: one block reduces logits (device) and writes the index to *index (a
// device int32), with the same tie, NaN and all-NaN rules, so the result is identical.
// Requires 1 <= n <= INT32_MAX.
void ArgmaxCuda(const float* logits,  // (n)
                int64_t n,
                int32_t* index,  // (1)
                cudaStream_t stream);
#endif

// The draw SampleRef makes: one splitmix64 step of *state, 53 random bits in [0, 1).
double SampleUniform(uint64_t* state);

// The token for one request. The penalty applies in greedy mode too (as HF); top-k/top-p/min-p
// only when sampling. Ties in top-p's sort order go to the lower token id; the draw walks the
// kept tokens in id order. Requires vocab >= 1, valid params, history ids in [0, vocab),
// rng_state non-null when temperature > 0 (advanced by one step per sampled token).
int32_t SampleRef(const float* logits,  // (vocab)
                  int64_t vocab, const SamplingParams& params,
                  const int32_t* history,  // (n_history) tokens seen so far, prompt included
                  int64_t n_history, uint64_t* rng_state);

#if DF11_WITH_CUDA
// One row of a SampleCuda call, in device memory.
struct SampleCudaRow {
  SamplingParams params;
  int64_t history_begin = 0;  // the row's history: ids history[history_begin, history_end)
  int64_t history_end = 0;
  double uniform = 0;         // the request's next SampleUniform value, used if the row draws
};

// Device workspace SampleCuda needs for `rows` rows of `vocab` logits (16 bytes per logit).
size_t SampleCudaWorkspaceBytes(int64_t rows, int64_t vocab);

// SampleRef for `rows` rows of logits on `stream`, one CUDA block per row: the repetition
// penalty (once per distinct history id), temperature, top-k, top-p (ties in the sort order to
// the lower id), min-p, then the draw at the row's `uniform`, walking the kept ids in id order.
// tokens[r] gets the token; drew[r] is 1 when the row drew (the caller then advances that
// request's RNG, as SampleRef does) and 0 when it did not (temperature 0, or no finite maximum).
// The filters and the draw sum probabilities (double) in another order than SampleRef, so a token
// whose cumulative probability lies within rounding of a threshold or of the draw can differ;
// the result does not depend on anything but the row's inputs. History ids outside [0, vocab)
// are ignored. No allocation; `workspace` holds SampleCudaWorkspaceBytes(rows, vocab) bytes
// (8-byte aligned). Requires 1 <= vocab <= INT32_MAX / 16, rows >= 0, valid params.
void SampleCuda(const float* logits,       // (rows, vocab) device
                int64_t rows, int64_t vocab,
                const SampleCudaRow* info,  // (rows) device
                const int32_t* history,     // device, indexed by the rows' history ranges
                void* workspace,
                int32_t* tokens,  // (rows) device
                int32_t* drew,    // (rows) device
                cudaStream_t stream);
#endif

}  // namespace df11
