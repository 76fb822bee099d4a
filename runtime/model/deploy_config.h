// SPDX-License-Identifier: Apache-2.0
// Deployment configs (configs/*.yaml): which model, how it is split, the GPU memory it may use
// and the engine's limits. Loading validates every field and names the file and key in errors.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/status.h"
#include "runtime/model/memory_plan.h"

namespace df11 {

struct DeployConfig {
  std::string model;         // sharded model directory
  std::string model_config;  // directory holding config.json (for planning)
  int tp = 1;
  int pp = 1;
  double gpu_memory_gb = 80;
  double gpu_memory_fraction = 0.9;
  int64_t batch_size = 8;
  int64_t context = 0;  // 0: the model's max_position_embeddings
  int64_t max_step_tokens = 2048;  // df11-run --max-step-tokens; sizes the step workspace
  double collective_timeout_s = 120;
};

// Relative paths in the file are taken relative to the file's directory.
StatusOr<DeployConfig> LoadDeployConfig(const std::string& path);

// The memory plan's options for deployment `d`: its layout, memory, context and step tokens over
// `flags` (the codec and what the deployment file does not set).
MemoryPlanOptions PlanOptionsOf(const DeployConfig& d, const MemoryPlanOptions& flags);

}  // namespace df11
