// SPDX-License-Identifier: Apache-2.0
// Every config field that changes the math is honoured or refused, and the weights must match the
// config, as a user meets it on the command line:
//  - the reproductions: a Llama config with hidden_act gelu_pytorch_tanh, a Mistral with a
//    sliding window and a Qwen3 with YaRN (models transformers wrote, tests/data/hf_models) give
//    transformers' logits through `df11-run logits` (within 5e-4), where they used to run SiLU,
//    ignore the window, or abort in the RoPE code;
//  - each config value this runtime does not compute is refused by df11-run generate / serve /
//    logits / bench / plan and by df11 shard with exit 2, naming config.json, the key, the value
//    and what is supported, before any weight is read (df11 compress / verify / decompress /
//    inspect, lossless, accept them);
//  - weights that do not match the config (3 layers in the config, 4 stored; a Llama config over
//    Qwen3 weights) are refused with exit 2 naming the tensor, for BF16 and DF11 directories, by
//    df11-run and by df11 compress / verify / decompress / inspect / shard.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/formats/safetensors.h"
#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using df11::test_support::RunCommand;
using df11::test_support::TempDir;
using df11::test_support::WriteOwnerOnlyFile;

const std::string kBin = std::string(DF11_BINARY_DIR) + "/launcher/";
const std::string kHf = std::string(DF11_TEST_DATA_DIR) + "/hf_models";

void EditConfig(const std::string& model, const json& patch) {
  json j = json::parse(std::ifstream(model + "/config.json"));
  j.merge_patch(patch);
  std::ofstream(model + "/config.json") << j.dump(2);
}

class ModelCheckCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_.emplace("df11_model_check_cli");
    dir_ = tmp_->path();
    for (const char* arch : {"llama", "qwen3"}) {
      auto r = RunCommand(kBin + "df11 -q make-tiny --arch " + arch +
                          " --layers 4 --hidden 64 --heads 4 "
                          "--kv-heads 2 --head-dim 16 --intermediate 128 --vocab 512 " +
                          dir_ + "/" + arch);
      ASSERT_EQ(r.status, 0) << r.output;
      r = RunCommand(kBin + "df11 -q compress " + dir_ + "/" + arch + " " + dir_ + "/" + arch +
                     ".df11");
      ASSERT_EQ(r.status, 0) << r.output;
    }
  }
  static void TearDownTestSuite() { tmp_.reset(); }
  // A copy of dir_/`model` as dir_/`name` with config.json patched.
  static std::string Variant(const std::string& model, const std::string& name, const json& patch) {
    const std::string out = dir_ + "/" + name;
    fs::remove_all(out);
    fs::copy(dir_ + "/" + model, out, fs::copy_options::recursive);
    EditConfig(out, patch);
    return out;
  }
  static std::optional<TempDir> tmp_;
  static std::string dir_;
};
std::optional<TempDir> ModelCheckCli::tmp_;
std::string ModelCheckCli::dir_;

TEST_F(ModelCheckCli, ConfigsThatChangeTheMathAreHonoured) {
  for (const char* name : {"llama_gelu_tanh", "mistral_sliding_window", "qwen3_yarn"}) {
    SCOPED_TRACE(name);
    auto file = df11::SafetensorsFile::Open(kHf + "/" + name + ".safetensors");
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    const df11::TensorInfo* ids = file->Find("prompt2.ids");
    // The CPU keeps its KV cache in BF16: the reference whose keys and values were rounded so.
    const df11::TensorInfo* want = file->Find("prompt2.logits_f32_bf16kv");
    ASSERT_TRUE(ids != nullptr && want != nullptr);
    std::string list;
    for (int64_t i = 0; i < ids->numel; ++i) {
      int32_t id;
      std::memcpy(&id, ids->bytes.data() + 4 * i, 4);
      list += (i ? "," : "") + std::to_string(id);
    }
    const std::string out = dir_ + "/" + name + ".f32";
    auto r = RunCommand(kBin + "df11-run logits --model " + kHf + "/models/" + name + " --ids " +
                        list + " --out " + out + " --threads 2");
    ASSERT_EQ(r.status, 0) << r.output;
    std::ifstream in(out, std::ios::binary);
    std::vector<float> got(static_cast<size_t>(want->numel));
    in.read(reinterpret_cast<char*>(got.data()), static_cast<std::streamsize>(4 * got.size()));
    ASSERT_TRUE(in) << "short logits file";
    float worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      float w;
      std::memcpy(&w, want->bytes.data() + 4 * i, 4);
      worst = std::max(worst, std::fabs(got[i] - w));
    }
    EXPECT_LE(worst, 5e-4f) << "transformers' logits";  // as hf_models_test (BF16 KV)
  }
  // The same weights as SiLU give other logits: hidden_act is not ignored.
  const std::string silu = dir_ + "/llama_as_silu";
  fs::remove_all(silu);
  fs::copy(kHf + "/models/llama_gelu_tanh", silu, fs::copy_options::recursive);
  EditConfig(silu, {{"hidden_act", "silu"}});
  ASSERT_EQ(RunCommand(kBin + "df11-run logits --model " + silu + " --ids 1,2,3 --out " + dir_ +
                       "/silu.f32")
                .status,
            0);
  ASSERT_EQ(RunCommand(kBin + "df11-run logits --model " + kHf +
                       "/models/llama_gelu_tanh --ids 1,2,3 "
                       "--out " +
                       dir_ + "/gelu.f32")
                .status,
            0);
  EXPECT_NE(RunCommand("cmp -s " + dir_ + "/silu.f32 " + dir_ + "/gelu.f32").status, 0);
}

TEST_F(ModelCheckCli, UnsupportedConfigValuesExit2NamingTheKey) {
  struct Case {
    const char* name;
    json patch;
    std::vector<std::string> expect;  // in the message
  };
  const Case cases[] = {
      {"relu", {{"hidden_act", "relu"}}, {"\"hidden_act\" is \"relu\"", "gelu_pytorch_tanh"}},
      {"dynamic",
       {{"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}}}},
       {"\"rope_scaling.rope_type\" is \"dynamic\"", "default, linear, llama3, yarn"}},
      {"longrope",
       {{"rope_scaling", {{"rope_type", "longrope"}, {"factor", 2.0}}}},
       {"\"longrope\""}},
      {"mlp_bias", {{"mlp_bias", true}}, {"\"mlp_bias\" is true", "biases on the MLP"}},
      {"quantized",
       {{"quantization_config", {{"quant_method", "awq"}}}},
       {"\"quantization_config\"", "quantized weights"}},
      {"partial", {{"partial_rotary_factor", 0.5}}, {"\"partial_rotary_factor\" is 0.5"}},
      {"llama_window", {{"sliding_window", 16}}, {"\"sliding_window\" is 16"}},
      {"gpt2", {{"architectures", {"GPT2LMHeadModel"}}}, {"\"GPT2LMHeadModel\" is not supported"}},
  };
  // A valid token file (owner-only, 32 bytes): serve must get past it to the config check.
  WriteOwnerOnlyFile(dir_ + "/token", "0123456789abcdef0123456789abcdef");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string model = Variant("llama", c.name, c.patch);
    const std::vector<std::string> commands = {
        "df11-run generate --model " + model + " --prompt hi",
        "df11-run serve --model " + model + " --coordinator 127.0.0.1:1 --token-file " + dir_ +
            "/token",
        "df11-run logits --model " + model + " --ids 1,2 --out " + dir_ + "/x.f32",
        "df11-run bench --model " + model,
        "df11-run plan --model " + model,
        "df11 -q shard " + model + " " + dir_ + "/" + c.name + ".sharded --tp 2",
    };
    for (const std::string& cmd : commands) {
      auto r = RunCommand(kBin + cmd);
      EXPECT_EQ(r.status, 2) << cmd << "\n" << r.output;
      EXPECT_NE(r.output.find(model + "/config.json"), std::string::npos) << cmd << r.output;
      for (const std::string& e : c.expect) {
        EXPECT_NE(r.output.find(e), std::string::npos) << cmd << "\n" << r.output;
      }
    }
    EXPECT_FALSE(fs::exists(dir_ + "/" + c.name + ".sharded/manifest.json"));
  }
  // Lossless conversion does not compute the math: a config this runtime cannot serve still
  // compresses, verifies and decompresses.
  const std::string relu = dir_ + "/relu";
  for (const std::string& cmd : {"df11 -q compress " + relu + " " + relu + ".df11",
                                 "df11 -q verify " + relu + ".df11 " + relu,
                                 "df11 -q decompress " + relu + ".df11 " + relu + ".back",
                                 "df11 inspect " + relu + ".df11"}) {
    auto r = RunCommand(kBin + cmd);
    EXPECT_EQ(r.status, 0) << cmd << "\n" << r.output;
  }
}

TEST_F(ModelCheckCli, WeightsThatDoNotMatchTheConfigExit2) {
  struct Case {
    const char* model;
    json patch;
    std::string expect;
  };
  const Case cases[] = {
      {"llama", {{"num_hidden_layers", 3}}, "unexpected tensor model.layers.3."},
      {"llama", {{"num_hidden_layers", 5}}, "tensor model.layers.4."},
      {"qwen3",
       {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}},
       "unexpected tensor model.layers.0.self_attn.k_norm.weight"},
  };
  int i = 0;
  for (const Case& c : cases) {
    for (const char* format : {"", ".df11"}) {
      const std::string name = "mismatch" + std::to_string(i++);
      SCOPED_TRACE(name + " " + c.model + format + " " + c.patch.dump());
      const std::string model = Variant(std::string(c.model) + format, name, c.patch);
      std::vector<std::string> commands = {
          "df11-run generate --model " + model + " --prompt hi",
          "df11-run logits --model " + model + " --ids 1,2 --out " + dir_ + "/x.f32",
          "df11 -q shard " + model + " " + model + ".sharded --tp 2",
      };
      if (std::string(format).empty()) {
        commands.push_back("df11 -q compress " + model + " " + model + ".out");
        commands.push_back("df11 -q verify " + dir_ + "/" + c.model + ".df11 " + model);
      } else {
        commands.push_back("df11 -q verify " + model + " " + dir_ + "/" + c.model);
        commands.push_back("df11 -q decompress " + model + " " + model + ".out");
        commands.push_back("df11 inspect " + model);
      }
      for (const std::string& cmd : commands) {
        auto r = RunCommand(kBin + cmd);
        EXPECT_EQ(r.status, 2) << cmd << "\n" << r.output;
        EXPECT_NE(r.output.find("the weights do not match config.json"), std::string::npos)
            << cmd << "\n"
            << r.output;
        EXPECT_NE(r.output.find(c.expect), std::string::npos) << cmd << "\n" << r.output;
      }
      EXPECT_FALSE(fs::exists(model + ".out/config.json"));
    }
  }
}

}  // namespace
