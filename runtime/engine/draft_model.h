// SPDX-License-Identifier: Apache-2.0
// Drafting with a second, smaller model that shares the target's tokenizer (BF16 or DF11, any
// supported architecture), run whole on the CPU backend of the process that runs the engine: a
// distributed group's leader, which owns the token stream (it plans every step and receives the
// tokens), so drafts never cross ranks and the target's shards need nothing new. Each sequence
// keeps a draft cache; a Draft call first brings it up to the sequence's tokens (dropping what
// its last drafts left that the target rejected), then decodes greedily, one draft model step per
// drafted token over all sequences at once. Greedy drafts are deterministic, so the engine's
// acceptance rule (VerifyDrafts) applies unchanged. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine/speculation.h"
#include "runtime/model/cpu_backend.h"
#include "runtime/model/forward_backend.h"
#include "runtime/model/model_weights.h"

namespace df11 {

class DraftModelDrafter : public Drafter {
 public:
  // Loads the model in `dir` (BF16 or DF11; not a sharded directory) on the CPU backend with
  // `options`, as a drafter for a target of `target_vocab` ids. InvalidArgument, naming `dir`,
  // for a sharded directory or a vocabulary size other than the target's.
  static StatusOr<std::unique_ptr<DraftModelDrafter>> Load(const std::string& dir,
                                                           int64_t target_vocab,
                                                           const CpuBackendOptions& options);

  Status Draft(std::span<const DraftRequest> requests,
               std::vector<std::vector<int32_t>>* drafts) override;
  void Release(int64_t id) override { states_.erase(id); }

 private:
  DraftModelDrafter(std::unique_ptr<ModelWeights> weights, const CpuBackendOptions& options);

  // A sequence's draft cache and the token at each of its positions.
  struct State {
    KvCache cache;
    std::vector<int32_t> tokens;
  };

  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<CpuBackend> backend_;
  std::map<int64_t, State> states_;
};

}  // namespace df11
