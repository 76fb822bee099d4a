// SPDX-License-Identifier: Apache-2.0
// `df11-run plan`: the per-GPU memory plan of a deployment from config.json alone (or from a
// configs/*.yaml deployment file), and whether it fits.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace df11 {

struct PlanFlags {
  std::string model;   // directory with config.json
  std::string config;  // deployment YAML (overrides the flags below)
  int tp = 1;
  int pp = 1;
  double gpu_memory_gb = 80;
  double gpu_memory_fraction = 0.9;
  int64_t context = 0;
  int64_t max_step_tokens = 2048;  // tokens of activations one step holds (df11-run's flag)
  bool bf16 = false;
};

// Adds the subcommand to `app`; returns it (check `->parsed()` after parsing).
CLI::App* AddPlanCommand(CLI::App* app, PlanFlags* flags);
// Prints the plan; exit status 0 when it fits, 1 when it does not, 2 for bad input.
int RunPlan(const PlanFlags& flags);

}  // namespace df11
