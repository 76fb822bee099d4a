// SPDX-License-Identifier: Apache-2.0
#include "launcher/plan_command.h"

#include <cstdio>

#include "launcher/cli_flags.h"

#include "runtime/model/deploy_config.h"
#include "runtime/model/memory_plan.h"

namespace df11 {

CLI::App* AddPlanCommand(CLI::App* app, PlanFlags* f) {
  auto* plan = app->add_subcommand("plan", "per-GPU memory plan from config.json; does it fit?");
  plan->add_option("--model", f->model, "model directory (config.json is enough)");
  plan->add_option("--config", f->config, "deployment YAML (configs/*.yaml)");
  MemoryPlanOptions& o = f->plan;
  plan->add_option("--tp", o.tp, "tensor-parallel GPUs per stage")
      ->check(IntegerIn(1, 1 << 20))->capture_default_str();
  plan->add_option("--pp", o.pp, "pipeline stages")->check(IntegerIn(1, 1 << 20))
      ->capture_default_str();
  plan->add_option_function<double>(
         "--gpu-memory", [&o](double gib) { o.gpu_memory_bytes = gib * (1 << 30); },
         "GiB of memory per GPU (80 for an H100 80GB)")
      ->check(NumberIn(0, 1e6, /*lo_open=*/true))->default_str("80");
  plan->add_option("--gpu-memory-fraction", o.memory_fraction,
                   "share of each GPU the runtime may use")->check(NumberIn(0.01, 1.0))
      ->capture_default_str();
  plan->add_option("--context", o.context,
                   "tokens per sequence, at most the model's max_position_embeddings (0: that "
                   "maximum)")
      ->check(IntegerIn(0));
  plan->add_option("--max-step-tokens", o.workspace_tokens,
                   "tokens one forward step takes (df11-run's --max-step-tokens): the step "
                   "workspace is sized for them, and a prompt chunk of them holds its sliding-"
                   "window layers' blocks")
      ->check(IntegerIn(1, int64_t{1} << 24))->capture_default_str();
  plan->add_option("--kv-block-tokens", o.kv_block_tokens,
                   "positions per KV cache block (df11-run's --kv-block-tokens): the cache is "
                   "whole blocks")
      ->check(IntegerIn(1, 4096))->capture_default_str();
  plan->add_option("--weight-codec", f->codec,
                   "the weights' codec: auto (the fastest that leaves --min-kv-tokens of KV "
                   "cache; every codec's figures are printed), ew4, bf16 or df11")
      ->check(CLI::IsMember({"auto", "ew4", "bf16", "df11"}))->capture_default_str();
  plan->add_flag_callback("--bf16", [f] { f->codec = "bf16"; },
                          "plan for uncompressed BF16 weights (--weight-codec bf16)");
  plan->add_option("--min-kv-tokens", o.min_kv_tokens,
                   "auto: the KV cache tokens a codec must leave (0: one sequence of --context)")
      ->check(IntegerIn(0));
  return plan;
}

int RunPlan(const PlanFlags& f) {
  MemoryPlanOptions o = f.plan;
  std::string model_dir = f.model;
  if (!f.config.empty()) {
    auto d = LoadDeployConfig(f.config);
    if (!d.ok()) {
      std::fprintf(stderr, "df11-run plan: %s\n", d.status().ToString().c_str());
      return 2;
    }
    model_dir = d->model_config;
    o = PlanOptionsOf(*d, o);
  }
  if (model_dir.empty()) {
    std::fprintf(stderr, "df11-run plan: give --model DIR or --config FILE\n");
    return 2;
  }
  auto config = LoadModelConfig(model_dir);
  if (!config.ok()) {
    std::fprintf(stderr, "df11-run plan: %s\n", config.status().ToString().c_str());
    return 2;
  }
  auto codecs = PlanCodecs(*config, o);
  if (!codecs.ok()) {
    std::fprintf(stderr, "df11-run plan: %s\n", codecs.status().ToString().c_str());
    return 2;
  }
  o.codec = f.codec == "auto"   ? codecs->chosen
            : f.codec == "ew4"  ? WeightCodec::kEw4
            : f.codec == "bf16" ? WeightCodec::kBf16
                                : WeightCodec::kDf11;
  const MemoryPlan& plan = codecs->Of(o.codec);
  std::printf("%s%s", codecs->Format().c_str(), plan.Format(o).c_str());
  return plan.fits ? 0 : 1;
}

}  // namespace df11
