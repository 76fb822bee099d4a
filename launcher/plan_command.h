// SPDX-License-Identifier: Apache-2.0
// `df11-run plan`: the per-GPU memory plan of a deployment from config.json alone (or from a
// configs/*.yaml deployment file) for each weight codec, which one `auto` picks, and whether the
// chosen (or --weight-codec) plan fits.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "runtime/model/memory_plan.h"

namespace df11 {

struct PlanFlags {
  std::string model;   // directory with config.json
  std::string config;  // deployment YAML (replaces the plan options below)
  MemoryPlanOptions plan;  // --tp, --pp, --gpu-memory, ..., read straight into it
  std::string codec = "auto";  // --weight-codec auto|ew4|bf16|df11 (--bf16: bf16)
};

// Adds the subcommand to `app`; returns it (check `->parsed()` after parsing).
CLI::App* AddPlanCommand(CLI::App* app, PlanFlags* flags);
// Prints the plan; exit status 0 when it fits, 1 when it does not, 2 for bad input.
int RunPlan(const PlanFlags& flags);

}  // namespace df11
