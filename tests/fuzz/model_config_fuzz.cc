// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for a model's config.json (a file from wherever the model came from):
// ParseModelConfig, then the memory plan `df11-run plan` prints for it on one and on several
// GPUs. Any input must give a Status or a config whose plan is a Status or finite sizes with a
// non-negative KV cache (UBSan catches the products that overflow).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/common/check.h"
#include "runtime/formats/model_config.h"
#include "runtime/model/memory_plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j =
      nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  for (df11::ConfigUse use : {df11::ConfigUse::kServe, df11::ConfigUse::kConvert}) {
    df11::StatusOr<df11::ModelConfig> c = df11::ParseModelConfig(j, "config.json", use);
    if (!c.ok()) continue;
    for (int tp : {1, 8}) {
      df11::MemoryPlanOptions o;
      o.tp = tp;
      o.pp = 2;
      df11::StatusOr<df11::MemoryPlan> p = df11::PlanMemory(*c, o);
      if (!p.ok()) continue;
      DF11_CHECK(std::isfinite(p->weight_bytes) && p->weight_bytes >= 0);
      DF11_CHECK(p->kv_tokens >= 0 && p->max_sequences >= 0);
      DF11_CHECK(!p->Format(o).empty());
    }
  }
  return 0;
}
