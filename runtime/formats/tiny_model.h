// SPDX-License-Identifier: Apache-2.0
// MakeTinyModel (`df11 make-tiny`): writes a random BF16 model in the Hugging Face layout
// (config.json, generation_config.json, safetensors weights, tokenizer files) for tests and demos.
// Any size works: each tensor is generated (on several threads) piece by piece as it is streamed to
// disk, and models above max_shard_bytes are split into model-0000i-of-0000N.safetensors + index.
// Output bytes depend only on the options (seed included), never on the thread count.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/status.h"

namespace df11 {

struct TinyModelOptions {
  // --arch: a model_type: llama | qwen2 | qwen3 | mistral | gemma3_text (Gemma3ForCausalLM) |
  // gemma3 (Gemma3ForConditionalGeneration, with a small vision tower beside the language model)
  std::string arch = "llama";
  int64_t layers = 2;          // --layers
  int64_t hidden = 64;         // --hidden
  int64_t heads = 4;           // --heads
  int64_t kv_heads = 2;        // --kv-heads; must divide heads
  int64_t intermediate = 128;  // --intermediate
  int64_t head_dim = 0;        // --head-dim; 0: hidden / heads
  // --vocab; 0: the tokenizer's size (max token id + 1) when vocab_from is set, else 512. When set
  // together with vocab_from it must cover every tokenizer id (larger pads, as Qwen does).
  int64_t vocab = 0;
  // --vocab-from: a directory with tokenizer.json (+ optional tokenizer_config.json,
  // generation_config.json, ...) copied into the model; BOS/EOS ids come from its tokenizer_config.
  std::string vocab_from;
  uint64_t seed = 0;                      // --seed
  bool tie_embeddings = false;            // --tie-embeddings: no lm_head.weight
  bool llama3_rope_scaling = true;        // llama only: Llama 3.1's rope_scaling (factor 8)
  int64_t max_position_embeddings = 2048; // --max-position-embeddings
  double init_std = 0.02;                 // --init-std: weights ~ N(0, init_std), norms 1 + N(0, init_std)
  int64_t max_shard_bytes = 2'000'000'000;  // --max-shard-bytes: larger models are sharded
  int threads = 0;                          // --threads; 0: all hardware threads
  // --sliding-window: Gemma 3's window (its layers slide but every min(6, layers)-th); 0: 16
  int64_t sliding_window = 0;
};

// Writes the model into `out_dir` (created if missing; must not hold files already), all or
// nothing (StagedDir: a failure leaves no out_dir). InvalidArgument naming the flag (--hidden,
// --kv-heads, ...) for bad options; FailedPrecondition for a non-empty out_dir;
// NotFound/InvalidArgument for a vocab_from without a usable tokenizer.json; IoError from writes.
Status MakeTinyModel(const TinyModelOptions& o, const std::string& out_dir);

}  // namespace df11
