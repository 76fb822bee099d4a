// SPDX-License-Identifier: Apache-2.0
// `df11-run plan`: the per-GPU memory plan of a deployment from config.json alone (or from a
// configs/*.yaml deployment file), and whether it fits.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "runtime/model/memory_plan.h"

namespace df11 {

struct PlanFlags {
  std::string model;   // directory with config.json
  std::string config;  // deployment YAML (replaces the plan options below)
  MemoryPlanOptions plan;  // --tp, --pp, --gpu-memory, ..., read straight into it
};

// Adds the subcommand to `app`; returns it (check `->parsed()` after parsing).
CLI::App* AddPlanCommand(CLI::App* app, PlanFlags* flags);
// Prints the plan; exit status 0 when it fits, 1 when it does not, 2 for bad input.
int RunPlan(const PlanFlags& flags);

}  // namespace df11
