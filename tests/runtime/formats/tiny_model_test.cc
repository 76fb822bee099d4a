// SPDX-License-Identifier: Apache-2.0
// MakeTinyModel: every architecture writes a directory that Checkpoint and LoadModelConfig read
// back with exactly the expected tensors; tokenizer import; determinism by seed (not threads);
// sharding; option errors that name the flag.
#include "runtime/formats/tiny_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "runtime/core/file_util.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/model_config.h"
#include "runtime/formats/model_tensors.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

using ::testing::HasSubstr;

const std::string kLlamaTokenizer = std::string(DF11_TOKENIZER_DIR) + "/llama-3.1";
const std::string kQwenTokenizer = std::string(DF11_TOKENIZER_DIR) + "/qwen3";

class TinyModelTest : public ::testing::Test {
 protected:
  std::string Out(const std::string& name) { return JoinPath(dir_, name); }

  static std::string Read(const std::string& path) {
    StatusOr<std::string> s = ReadFileToString(path);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : "";
  }

  // Every tensor of the checkpoint, name -> raw bytes.
  static std::map<std::string, std::string> TensorBytes(const Checkpoint& ckpt) {
    std::map<std::string, std::string> out;
    for (const std::string& name : ckpt.tensor_names()) {
      const TensorInfo* t = ckpt.Find(name);
      out[name] = std::string(reinterpret_cast<const char*>(t->bytes.data()), t->bytes.size());
    }
    return out;
  }

  // Checks that `dir` holds exactly the tensors ExpectedTensors lists for its config.json, and that
  // the config has the option's dims. Returns the parsed config.
  static ModelConfig ExpectModelMatches(const std::string& dir, const TinyModelOptions& o) {
    StatusOr<ModelConfig> config = LoadModelConfig(dir);
    EXPECT_TRUE(config.ok()) << config.status().ToString();
    if (!config.ok()) return {};
    EXPECT_EQ(config->model_type, o.arch);
    EXPECT_EQ(config->num_hidden_layers, o.layers);
    EXPECT_EQ(config->hidden_size, o.hidden);
    EXPECT_EQ(config->num_attention_heads, o.heads);
    EXPECT_EQ(config->num_key_value_heads, o.kv_heads);
    EXPECT_EQ(config->intermediate_size, o.intermediate);
    EXPECT_EQ(config->head_dim, o.head_dim != 0 ? o.head_dim : o.hidden / o.heads);
    EXPECT_EQ(config->max_position_embeddings, o.max_position_embeddings);
    EXPECT_EQ(config->tie_word_embeddings, o.tie_embeddings);
    EXPECT_EQ(config->raw["torch_dtype"], "bfloat16");

    StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir);
    EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    if (!ckpt.ok()) return *config;
    std::vector<std::string> want_names;
    for (const auto& [name, shape] : ExpectedTensors(*config)) {
      want_names.push_back(name);
      const TensorInfo* t = ckpt->Find(name);
      EXPECT_NE(t, nullptr) << name;
      if (t == nullptr) continue;
      EXPECT_EQ(t->dtype, DType::kBF16) << name;
      EXPECT_EQ(t->shape, shape) << name;
    }
    std::vector<std::string> got_names = ckpt->tensor_names();
    std::sort(want_names.begin(), want_names.end());
    std::sort(got_names.begin(), got_names.end());
    EXPECT_EQ(got_names, want_names);
    return *config;
  }

  test_support::TempDir tmp_{"df11_tiny_model_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(TinyModelTest, EveryArchitectureReadsBack) {
  for (const char* arch : {"llama", "qwen2", "qwen3", "mistral"}) {
    SCOPED_TRACE(arch);
    TinyModelOptions o;
    o.arch = arch;
    o.seed = 7;
    const std::string out = Out(arch);
    Status s = MakeTinyModel(o, out);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ModelConfig c = ExpectModelMatches(out, o);
    EXPECT_EQ(c.vocab_size, 512);
    EXPECT_EQ(c.bos_token_id, 1);
    EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
    EXPECT_EQ(c.attention_bias, std::string(arch) == "qwen2");
    EXPECT_EQ(c.qk_norm, std::string(arch) == "qwen3");
    EXPECT_EQ(c.rope_scaling.type, std::string(arch) == "llama" ? "llama3" : "");
    EXPECT_TRUE(FileExists(JoinPath(out, "generation_config.json")));
    EXPECT_TRUE(FileExists(JoinPath(out, "model.safetensors")));
    EXPECT_FALSE(FileExists(JoinPath(out, kCheckpointIndexName)));
  }
}

// Gemma 3, both classes: the text model's tensors (under language_model. for the multimodal one,
// beside a small vision tower that nothing loads), local layers with the asked window and a
// global one, (1 + w) norms stored around 0.
TEST_F(TinyModelTest, Gemma3BothClassesReadBack) {
  for (const char* arch : {"gemma3_text", "gemma3"}) {
    SCOPED_TRACE(arch);
    const bool multimodal = std::string(arch) == "gemma3";
    TinyModelOptions o;
    o.arch = arch;
    o.layers = 3;
    o.sliding_window = 4;
    o.seed = 5;
    const std::string out = Out(arch);
    Status s = MakeTinyModel(o, out);
    ASSERT_TRUE(s.ok()) << s.ToString();
    StatusOr<ModelConfig> c = LoadModelConfig(out);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_THAT(c->unused_keys, ::testing::IsEmpty());
    EXPECT_EQ(c->arch, multimodal ? Architecture::kGemma3Multimodal : Architecture::kGemma3);
    EXPECT_EQ(c->layer_window, (std::vector<int64_t>{4, 4, 0}));
    EXPECT_EQ(c->norm_weight_offset, 1.0f);
    StatusOr<Checkpoint> ckpt = Checkpoint::Open(out);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    std::set<std::string> expected;
    for (const auto& [name, shape] : ExpectedTensors(*c)) {
      expected.insert(name);
      const TensorInfo* t = ckpt->Find(name);
      ASSERT_NE(t, nullptr) << name;
      EXPECT_EQ(t->shape, shape) << name;
    }
    EXPECT_EQ(expected.count("language_model.model.layers.2.post_feedforward_layernorm.weight"),
              multimodal ? 1u : 0u);
    int vision = 0;
    for (const std::string& name : ckpt->tensor_names()) {
      if (expected.count(name)) continue;
      EXPECT_TRUE(multimodal && (name.starts_with("vision_tower.") ||
                                 name.starts_with("multi_modal_projector.")))
          << name;
      ++vision;
    }
    EXPECT_EQ(vision > 0, multimodal);
    const std::string norm = std::string(multimodal ? "language_model." : "") +
                             "model.layers.0.pre_feedforward_layernorm.weight";
    const TensorInfo* t = ckpt->Find(norm);
    ASSERT_NE(t, nullptr) << norm;
    double sum = 0;
    for (int64_t i = 0; i < t->numel; ++i) {
      uint16_t v;
      std::memcpy(&v, t->bytes.data() + 2 * i, 2);
      sum += Bf16ToFloat(v);
    }
    EXPECT_LT(std::fabs(sum / static_cast<double>(t->numel)), 0.1) << norm;
  }
}

TEST_F(TinyModelTest, WeightsAreGaussianAndNormsNearOne) {
  TinyModelOptions o;
  o.arch = "qwen3";
  o.hidden = 128;
  o.seed = 3;
  ASSERT_TRUE(MakeTinyModel(o, Out("m")).ok());
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(Out("m"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  auto moments = [&](const std::string& name, double* mean, double* stddev) {
    const TensorInfo* t = ckpt->Find(name);
    ASSERT_NE(t, nullptr) << name;
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < t->numel; ++i) {
      uint16_t bits;
      std::memcpy(&bits, t->bytes.data() + 2 * i, 2);
      double x = Bf16ToFloat(bits);
      ASSERT_TRUE(std::isfinite(x)) << name << "[" << i << "]";
      sum += x;
      sum2 += x * x;
    }
    *mean = sum / t->numel;
    *stddev = std::sqrt(sum2 / t->numel - *mean * *mean);
  };
  double mean = 0, stddev = 0;
  moments("model.embed_tokens.weight", &mean, &stddev);  // 65536 samples
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(stddev, 0.02, 0.001);
  moments("model.layers.1.mlp.down_proj.weight", &mean, &stddev);
  EXPECT_NEAR(stddev, 0.02, 0.001);
  moments("model.norm.weight", &mean, &stddev);
  EXPECT_NEAR(mean, 1.0, 0.01);
  EXPECT_GT(stddev, 0.0);  // not all ones: a norm that is skipped would go unnoticed
  moments("model.layers.0.self_attn.k_norm.weight", &mean, &stddev);
  EXPECT_NEAR(mean, 1.0, 0.02);
}

TEST_F(TinyModelTest, ExplicitHeadDimTiedEmbeddingsAndNoRopeScaling) {
  TinyModelOptions o;
  o.arch = "llama";
  o.head_dim = 32;  // hidden / heads would be 16
  o.tie_embeddings = true;
  o.llama3_rope_scaling = false;
  o.vocab = 300;
  ASSERT_TRUE(MakeTinyModel(o, Out("m")).ok());
  ModelConfig c = ExpectModelMatches(Out("m"), o);
  EXPECT_EQ(c.vocab_size, 300);
  EXPECT_TRUE(c.rope_scaling.type.empty());
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(Out("m"));
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ(ckpt->Find("lm_head.weight"), nullptr);
  EXPECT_EQ(ckpt->Find("model.layers.0.self_attn.q_proj.weight")->shape,
            (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(ckpt->Find("model.layers.0.self_attn.o_proj.weight")->shape,
            (std::vector<int64_t>{64, 128}));
}

TEST_F(TinyModelTest, VocabFromLlamaTokenizer) {
  TinyModelOptions o;
  o.vocab_from = kLlamaTokenizer;
  ASSERT_TRUE(MakeTinyModel(o, Out("m")).ok());
  ModelConfig c = ExpectModelMatches(Out("m"), o);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.bos_token_id, 128000);                       // <|begin_of_text|>
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{128009});  // <|eot_id|>
  EXPECT_EQ(Read(JoinPath(Out("m"), "tokenizer.json")),
            Read(JoinPath(kLlamaTokenizer, "tokenizer.json")));
  EXPECT_EQ(Read(JoinPath(Out("m"), "tokenizer_config.json")),
            Read(JoinPath(kLlamaTokenizer, "tokenizer_config.json")));
  // The embedding (8.2 M elements) is generated in two 4 M-element pieces; each has its own values.
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(Out("m"));
  ASSERT_TRUE(ckpt.ok());
  const TensorInfo* embed = ckpt->Find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  const size_t piece = size_t{4} << 20 << 1;  // bytes
  ASSERT_GT(embed->bytes.size(), piece + 4096);
  EXPECT_NE(std::memcmp(embed->bytes.data(), embed->bytes.data() + piece, 4096), 0);
  nlohmann::json generation =
      nlohmann::json::parse(Read(JoinPath(Out("m"), "generation_config.json")));
  EXPECT_EQ(generation["bos_token_id"], 128000);
  EXPECT_EQ(generation["eos_token_id"], 128009);
}

TEST_F(TinyModelTest, VocabFromQwenTokenizerWithPadding) {
  TinyModelOptions o;
  o.arch = "qwen2";
  o.vocab_from = kQwenTokenizer;
  o.vocab = 151936;  // the published Qwen vocab_size pads the tokenizer's 151669 ids
  ASSERT_TRUE(MakeTinyModel(o, Out("m")).ok());
  ModelConfig c = ExpectModelMatches(Out("m"), o);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_FALSE(c.bos_token_id.has_value());                  // Qwen's bos_token is null
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151645});  // <|im_end|>

  o.vocab = 1000;
  Status s = MakeTinyModel(o, Out("small"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--vocab (1000)"));
  EXPECT_THAT(s.message(), HasSubstr("151669"));
}

TEST_F(TinyModelTest, SameSeedSameBytesRegardlessOfThreads) {
  TinyModelOptions o;
  o.arch = "mistral";
  o.hidden = 256;
  o.intermediate = 512;
  o.seed = 42;
  o.threads = 1;
  ASSERT_TRUE(MakeTinyModel(o, Out("a")).ok());
  o.threads = 4;
  ASSERT_TRUE(MakeTinyModel(o, Out("b")).ok());
  o.seed = 43;
  ASSERT_TRUE(MakeTinyModel(o, Out("c")).ok());
  const std::string a = Read(JoinPath(Out("a"), "model.safetensors"));
  EXPECT_EQ(a, Read(JoinPath(Out("b"), "model.safetensors")));
  EXPECT_EQ(Read(JoinPath(Out("a"), "config.json")), Read(JoinPath(Out("b"), "config.json")));
  const std::string c = Read(JoinPath(Out("c"), "model.safetensors"));
  ASSERT_EQ(a.size(), c.size());
  EXPECT_NE(a, c);
  // Every weight tensor differs between seeds (not just one).
  StatusOr<Checkpoint> ca = Checkpoint::Open(Out("a"));
  StatusOr<Checkpoint> cc = Checkpoint::Open(Out("c"));
  ASSERT_TRUE(ca.ok() && cc.ok());
  auto ba = TensorBytes(*ca), bc = TensorBytes(*cc);
  for (const auto& [name, bytes] : ba) EXPECT_NE(bytes, bc.at(name)) << name;
  // Two tensors of the same shape in one model are not copies of each other.
  EXPECT_NE(ba.at("model.layers.0.mlp.gate_proj.weight"), ba.at("model.layers.0.mlp.up_proj.weight"));
  EXPECT_NE(ba.at("model.layers.0.mlp.gate_proj.weight"),
            ba.at("model.layers.1.mlp.gate_proj.weight"));
}

TEST_F(TinyModelTest, LargeModelsAreShardedWithAnIndex) {
  TinyModelOptions o;
  o.arch = "qwen2";
  o.seed = 5;
  ASSERT_TRUE(MakeTinyModel(o, Out("single")).ok());
  o.max_shard_bytes = 100'000;  // the model is ~200 kB, its embedding 64 kB
  ASSERT_TRUE(MakeTinyModel(o, Out("sharded")).ok());
  ExpectModelMatches(Out("sharded"), o);

  StatusOr<Checkpoint> sharded = Checkpoint::Open(Out("sharded"));
  ASSERT_TRUE(sharded.ok()) << sharded.status().ToString();
  EXPECT_EQ(sharded->layout(), Checkpoint::Layout::kIndexed);
  const size_t n = sharded->files().size();
  ASSERT_GE(n, 2u);
  for (size_t i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, n);
    EXPECT_TRUE(FileExists(JoinPath(Out("sharded"), name))) << name;
    EXPECT_LE(sharded->files()[i].file_size(), 100'000u + 4096u) << name;
  }
  EXPECT_FALSE(FileExists(JoinPath(Out("sharded"), "model.safetensors")));
  nlohmann::json index =
      nlohmann::json::parse(Read(JoinPath(Out("sharded"), kCheckpointIndexName)));
  uint64_t total = 0;
  for (const std::string& name : sharded->tensor_names()) total += sharded->Find(name)->bytes.size();
  EXPECT_EQ(index["metadata"]["total_size"], total);

  // Sharding changes the files, not the weights.
  StatusOr<Checkpoint> single = Checkpoint::Open(Out("single"));
  ASSERT_TRUE(single.ok());
  EXPECT_TRUE(TensorBytes(*single) == TensorBytes(*sharded));
}

TEST_F(TinyModelTest, BadOptionsNameTheFlag) {
  struct Case {
    std::function<void(TinyModelOptions&)> set;
    const char* flag;
  };
  const std::vector<Case> cases = {
      {[](TinyModelOptions& o) { o.arch = "gemma2"; }, "--arch \"gemma2\""},
      {[](TinyModelOptions& o) { o.sliding_window = 8; }, "--sliding-window applies to --arch"},
      {[](TinyModelOptions& o) { o.layers = 0; }, "--layers"},
      {[](TinyModelOptions& o) { o.hidden = -64; }, "--hidden"},
      {[](TinyModelOptions& o) { o.heads = 0; }, "--heads"},
      {[](TinyModelOptions& o) { o.kv_heads = 0; }, "--kv-heads"},
      {[](TinyModelOptions& o) { o.kv_heads = 3; }, "--heads (4) must be a multiple of --kv-heads (3)"},
      {[](TinyModelOptions& o) { o.hidden = 66; }, "--hidden (66) must be a multiple of --heads (4)"},
      {[](TinyModelOptions& o) { o.intermediate = 0; }, "--intermediate"},
      {[](TinyModelOptions& o) { o.head_dim = -1; }, "--head-dim"},
      {[](TinyModelOptions& o) { o.vocab = -5; }, "--vocab"},
      {[](TinyModelOptions& o) { o.max_position_embeddings = 0; }, "--max-position-embeddings"},
      {[](TinyModelOptions& o) { o.init_std = -1; }, "--init-std"},
      {[](TinyModelOptions& o) { o.init_std = NAN; }, "--init-std"},
      {[](TinyModelOptions& o) { o.max_shard_bytes = 0; }, "--max-shard-bytes"},
      {[](TinyModelOptions& o) { o.vocab_from = "/nonexistent/tokenizer/dir"; }, "--vocab-from"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    TinyModelOptions o;
    cases[i].set(o);
    Status s = MakeTinyModel(o, Out("bad" + std::to_string(i)));
    EXPECT_FALSE(s.ok()) << cases[i].flag;
    if (cases[i].flag != std::string("--vocab-from")) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    }
    EXPECT_THAT(s.message(), HasSubstr(cases[i].flag));
    EXPECT_FALSE(FileExists(Out("bad" + std::to_string(i)))) << "nothing written on bad options";
  }
  // hidden need not divide by heads when head_dim is explicit.
  TinyModelOptions o;
  o.hidden = 66;
  o.head_dim = 16;
  EXPECT_TRUE(MakeTinyModel(o, Out("explicit_head_dim")).ok());
}

TEST_F(TinyModelTest, RefusesANonEmptyOutputDirectory) {
  TinyModelOptions o;
  ASSERT_TRUE(MakeTinyModel(o, Out("m")).ok());
  Status s = MakeTinyModel(o, Out("m"));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("not empty"));
}

}  // namespace
}  // namespace df11
