// SPDX-License-Identifier: Apache-2.0
// Next-token choice from one request's logits, in transformers' logits-processor order:
// repetition penalty, then (sampling only) temperature, top-k, top-p, min-p, then one draw.
// The random state belongs to the request (splitmix64, one step per sampled token; greedy draws
// nothing), so a request's tokens never depend on the other requests in its batch.
#pragma once

#include <cstdint>

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

// The token for one request. The penalty applies in greedy mode too (as HF); top-k/top-p/min-p
// only when sampling. Ties in top-p's sort order go to the lower token id; the draw walks the
// kept tokens in id order. Requires vocab >= 1, valid params, history ids in [0, vocab),
// rng_state non-null when temperature > 0 (advanced by one step per sampled token).
int32_t SampleRef(const float* logits,  // (vocab)
                  int64_t vocab, const SamplingParams& params,
                  const int32_t* history,  // (n_history) tokens seen so far, prompt included
                  int64_t n_history, uint64_t* rng_state);

}  // namespace df11
