// SPDX-License-Identifier: Apache-2.0
// Deployment YAMLs (configs/*.yaml): the shipped ones load; every field outside what the
// matching command-line flag takes (a word, a fraction, an exponent, NaN, an infinity, a number
// past 64 bits, a list) is refused naming the file, the key and the bounds, as the flag would; so
// are unknown and repeated keys, a missing model and a file that is no mapping.
#include "runtime/model/deploy_config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/common/temp_files.h"

namespace df11 {
namespace {

const std::string kConfigs = std::string(DF11_TEST_DATA_DIR) + "/../../configs";

TEST(DeployConfig, ShippedConfigsLoad) {
  for (const char* name : {"llama-3.1-405b-8xh100-tp8.yaml", "llama-3.1-405b-2x8xh100-tp8-pp2.yaml",
                           "tiny-cpu-tp2-pp2.yaml"}) {
    auto d = LoadDeployConfig(kConfigs + "/" + name);
    ASSERT_TRUE(d.ok()) << name << ": " << d.status().ToString();
  }
  auto two = LoadDeployConfig(kConfigs + "/llama-3.1-405b-2x8xh100-tp8-pp2.yaml");
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->tp, 8);
  EXPECT_EQ(two->pp, 2);
  EXPECT_EQ(two->max_step_tokens, 2048);
}

TEST(DeployConfig, RelativeModelPathsAreTheFilesOwn) {
  const test_support::TempDir tmp("df11_deploy_config");
  const std::string file = tmp.path() + "/d.yaml";
  std::ofstream(file) << "model: shards\nmodel_config: /abs/cfg\nparallel: {tp: 2, pp: 3}\n"
                         "gpu: {memory_gb: 24, memory_fraction: 0.5}\n"
                         "engine: {batch_size: 4, context: 4096, max_step_tokens: 512, "
                         "collective_timeout_s: 30.5}\n";
  auto d = LoadDeployConfig(file);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->model, tmp.path() + "/shards");
  EXPECT_EQ(d->model_config, "/abs/cfg");
  EXPECT_EQ(d->tp, 2);
  EXPECT_EQ(d->pp, 3);
  EXPECT_EQ(d->gpu_memory_gb, 24);
  EXPECT_EQ(d->gpu_memory_fraction, 0.5);
  EXPECT_EQ(d->batch_size, 4);
  EXPECT_EQ(d->context, 4096);
  EXPECT_EQ(d->max_step_tokens, 512);
  EXPECT_EQ(d->collective_timeout_s, 30.5);
}

TEST(DeployConfig, EveryBadFieldIsNamedWithItsBounds) {
  const test_support::TempDir tmp("df11_deploy_config");
  const std::string file = tmp.path() + "/bad.yaml";
  struct Case {
    const char* yaml;
    const char* message;  // after "<file>: "
  };
  const Case cases[] = {
      {"model: x\nparallel: {tp: eight}\n",
       "parallel.tp: 'eight' is not an integer in [1, 1048576]"},
      {"model: x\nparallel: {tp: 1e3}\n", "parallel.tp: '1e3' is not an integer in [1, 1048576]"},
      {"model: x\nparallel: {pp: 0}\n", "parallel.pp: '0' is not an integer in [1, 1048576]"},
      {"model: x\nparallel: {tp: 99999999999999999999}\n",
       "parallel.tp: '99999999999999999999' is not an integer in [1, 1048576]"},
      {"model: x\nparallel: {tp: [2]}\n", "parallel.tp: expected a single value"},
      {"model: x\nparallel:\n  tp: 2\n  tp: 4\n", "parallel.tp: given twice"},
      {"model: x\ngpu: {memory_gb: .inf}\n",
       "gpu.memory_gb: '.inf' is not a number in (0, 1000000]"},
      {"model: x\ngpu: {memory_gb: nan}\n", "gpu.memory_gb: 'nan' is not a number in (0, 1000000]"},
      {"model: x\ngpu: {memory_fraction: 0}\n",
       "gpu.memory_fraction: '0' is not a number in [0.01, 1]"},
      {"model: x\nengine: {batch_size: -1}\n",
       "engine.batch_size: '-1' is not an integer in [1, 2147483647]"},
      {"model: x\nengine: {context: 0.5}\n", "engine.context: '0.5' is not an integer >= 0"},
      {"model: x\nengine: {max_step_tokens: 0}\n",
       "engine.max_step_tokens: '0' is not an integer in [1, 16777216]"},
      {"model: x\nengine: {collective_timeout_s: -5}\n",
       "engine.collective_timeout_s: '-5' is not a number in (0, 1000000]"},
      {"model: x\nengine: {batch_size: 64, max_step_tokens: 32}\n",
       "engine.batch_size 64 is larger than engine.max_step_tokens 32"},
      {"model: x\ngpus: 8\n", "unknown key \"gpus\""},
      {"model: x\nengine: {batch: 8}\n", "engine: unknown key \"batch\""},
      {"model: x\nparallel: [1, 2]\n", "parallel: expected a mapping"},
      {"parallel: {tp: 2}\n", "missing \"model\""},
      {"model: [a, b]\n", "model: expected a single value"},
      {"model: ''\n", "model: expected a path"},
      {"- a\n- b\n", "expected a mapping"},
      {"model: [unclosed\n", "not valid YAML"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    std::ofstream(file, std::ios::trunc) << c.yaml;
    auto d = LoadDeployConfig(file);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(d.status().message().rfind(file + ": " + c.message, 0), 0u) << d.status().ToString();
  }
  EXPECT_EQ(LoadDeployConfig(tmp.path() + "/none.yaml").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace df11
