// SPDX-License-Identifier: Apache-2.0
// The tensor table: the DF11 unit patterns it gives are the published ones (Gemma 3's multimodal
// releases: the layers only), every LayerWeights field is bound by exactly one row of a table, a
// rank's local shapes (what the loaders and the weight-set check expect) are the slices the
// sharder cuts, the layer prefix is one property, tied heads are named from it, a vision tower's
// tensors are recognised as unserved, and the runtime's slice overloads turn layout errors into
// InvalidArgument.
#include "runtime/formats/model_tensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/formats/df11_model_dir.h"

namespace df11 {
namespace {

using ::testing::HasSubstr;

constexpr Architecture kAll[] = {Architecture::kLlama,  Architecture::kQwen2,
                                 Architecture::kQwen3,  Architecture::kMistral,
                                 Architecture::kGemma3, Architecture::kGemma3Multimodal};

// A small config of `arch`: 8 heads, 2 kv heads, head_dim 4, 2 layers.
ModelConfig Config(Architecture arch, bool tied = false) {
  nlohmann::json j = {{"architectures", {std::string(ArchitectureClassName(arch))}},
                      {"vocab_size", 1001},
                      {"hidden_size", 32},
                      {"intermediate_size", 48},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", 8},
                      {"num_key_value_heads", 2},
                      {"head_dim", 4},
                      {"tie_word_embeddings", tied}};
  if (arch == Architecture::kLlama) j["attention_bias"] = true;  // q/k/v and o biases
  if (arch == Architecture::kGemma3Multimodal) {
    j = {{"architectures", j["architectures"]}, {"tie_word_embeddings", tied}, {"text_config", j}};
    j["text_config"].erase("architectures");
  }
  StatusOr<ModelConfig> c = ParseModelConfig(j, "config.json");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : ModelConfig();
}

TEST(ModelTensorsTest, DefaultPatternsAreThePublishedOnes) {
  // The reference's pattern_dict (docs: df11-format.md), keys and order as written.
  const std::string published =
      R"({"lm_head":[],"model.embed_tokens":[],"model.layers.\\d+":["self_attn.q_proj",)"
      R"("self_attn.k_proj","self_attn.v_proj","self_attn.o_proj","mlp.gate_proj","mlp.up_proj",)"
      R"("mlp.down_proj"]})";
  // Gemma 3's multimodal releases (gemma-3-12b-it-DF11, gemma-3-27b-it-DF11) code the language
  // model's layers only.
  const std::string gemma_multimodal =
      R"({"language_model.model.layers.\\d+":["self_attn.q_proj","self_attn.k_proj",)"
      R"("self_attn.v_proj","self_attn.o_proj","mlp.gate_proj","mlp.up_proj","mlp.down_proj"]})";
  for (Architecture arch : kAll) {
    SCOPED_TRACE(std::string(ArchitectureClassName(arch)));
    const std::string& expected =
        arch == Architecture::kGemma3Multimodal ? gemma_multimodal : published;
    EXPECT_EQ(DefaultPatternDict(TensorsOf(arch)).dump(), expected);
    StatusOr<std::vector<Df11Pattern>> by_name =
        DefaultPatterns(std::string(ArchitectureClassName(arch)));
    ASSERT_TRUE(by_name.ok()) << by_name.status().ToString();
    EXPECT_EQ(Df11ConfigToJson(Df11Config{.patterns = *by_name})["pattern_dict"].dump(), expected);
  }
  StatusOr<std::vector<Df11Pattern>> gpt = DefaultPatterns("GPTNeoXForCausalLM");
  EXPECT_EQ(gpt.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(gpt.status().message(),
              HasSubstr("\"GPTNeoXForCausalLM\" (known: LlamaForCausalLM, Qwen2ForCausalLM, "
                        "Qwen3ForCausalLM, MistralForCausalLM, Gemma3ForCausalLM, "
                        "Gemma3ForConditionalGeneration); pass --pattern-dict"));
}

TEST(ModelTensorsTest, EveryLayerWeightsFieldIsBoundByExactlyOneRow) {
  // Each table binds a field at most once; together they bind every field (Gemma 3's block
  // output norms are its own).
  LayerWeights l;
  std::set<const void*> any_table;
  for (Architecture arch : kAll) {
    SCOPED_TRACE(std::string(ArchitectureClassName(arch)));
    std::map<const void*, int> bound;
    for (const TensorRow& row : TensorsOf(arch).layer) {
      // A matrix row binds a Weight and sits in the layer's DF11 unit; the others a Vector.
      ASSERT_EQ(row.kind == TensorKind::kMatrix, row.matrix != nullptr) << row.name;
      ASSERT_EQ(row.kind == TensorKind::kMatrix, row.vector == nullptr) << row.name;
      EXPECT_EQ(row.unit, row.kind == TensorKind::kMatrix ? UnitOf::kLayer : UnitOf::kPlain)
          << row.name;
      if (row.matrix != nullptr) ++bound[&(l.*row.matrix)];
      if (row.vector != nullptr) ++bound[&(l.*row.vector)];
    }
    for (const auto& [field, times] : bound) {
      EXPECT_EQ(times, 1);
      any_table.insert(field);
    }
    EXPECT_EQ(bound.size(), IsGemma3(arch) ? 17u : 15u);
  }
  std::set<const void*> fields;
  for (const Weight* m : l.Matrices()) fields.insert(m);
  for (const Vector* v : l.Vectors()) fields.insert(v);
  EXPECT_EQ(any_table, fields);
}

TEST(ModelTensorsTest, LocalShapesAreTheSlicesTheSharderCuts) {
  // tp 4 over 2 kv heads: q heads, MLP rows and vocabulary split, kv heads replicated.
  const ModelConfig c = Config(Architecture::kLlama);
  const int tp = 4;
  for (const TensorSpec& whole : ModelTensors(c)) {
    SCOPED_TRACE(whole.name);
    const TensorRow& row = *whole.row;
    const size_t axis = row.split == Split::kColumns ? 1 : 0;
    std::vector<int> held(static_cast<size_t>(whole.shape[axis]), 0);
    for (int r = 0; r < tp; ++r) {
      StatusOr<TpSlices> s = TensorParallelSlices(c, tp, r);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      const ModelPart part{0, -1, s->q_heads.size(), s->kv_heads.size(), s->intermediate.size(),
                           s->vocab.size(), true, true};
      const Range slice = SliceOf(row, c, *s);
      EXPECT_EQ(LocalShape(row, c, part)[axis], slice.size()) << "rank " << r;
      for (int64_t i = slice.begin; i < slice.end; ++i) ++held[static_cast<size_t>(i)];
    }
    // Every index is held once by a split tensor, by every rank when replicated, and twice
    // (tp / kv heads) for the kv projections.
    const bool kv = row.split != Split::kReplicated &&
                    (row.split == Split::kRows ? row.rows : row.cols) == Dim::kKv;
    const int copies = row.split == Split::kReplicated ? tp : kv ? 2 : 1;
    EXPECT_EQ(held, std::vector<int>(held.size(), copies));
  }
}

TEST(ModelTensorsTest, TheLayerPrefixIsOneProperty) {
  // A multimodal checkpoint keeps the language model under another prefix: changing the table's
  // prefix renames every layer tensor, unit and pattern.
  ArchitectureTensors t = TensorsOf(Architecture::kLlama);
  t.layer_prefix = "language_model.model.layers.";
  EXPECT_EQ(LayerModule(t, 7), "language_model.model.layers.7");
  EXPECT_EQ(UnitName(t, UnitOf::kLayer, 7), "language_model.model.layers.7");
  EXPECT_EQ(LayerTensorName(t, 7, t.layer[0]),
            "language_model.model.layers.7.self_attn.q_proj.weight");
  EXPECT_TRUE(DefaultPatternDict(t).contains("language_model.model.layers.\\d+"));
}

TEST(ModelTensorsTest, TiedHeadsAreNamedFromTheTable) {
  const nlohmann::ordered_json tied = {{"architectures", {"Qwen2ForCausalLM"}},
                                       {"tie_word_embeddings", true}};
  const std::optional<TiedHeadNames> names = TiedHeadNamesOf(tied);
  ASSERT_TRUE(names.has_value());
  EXPECT_EQ(names->unit, "lm_head");
  EXPECT_EQ(names->weight, "lm_head.weight");
  EXPECT_EQ(names->embedding, "model.embed_tokens.weight");
  nlohmann::ordered_json untied = tied;
  untied["tie_word_embeddings"] = false;
  EXPECT_FALSE(TiedHeadNamesOf(untied).has_value());
  nlohmann::ordered_json unknown = tied;
  unknown["architectures"] = {"GPTNeoXForCausalLM"};
  EXPECT_FALSE(TiedHeadNamesOf(unknown).has_value());

  // A tied model may store the LM head; an untied one must.
  for (bool tie : {true, false}) {
    const std::vector<TensorSpec> all = ModelTensors(Config(Architecture::kQwen3, tie));
    EXPECT_EQ(all.back().name, "lm_head.weight");
    EXPECT_EQ(all.back().required, !tie);
  }
  // Gemma3ForConditionalGeneration ties (by default) to its language model's embedding.
  const std::optional<TiedHeadNames> gemma = TiedHeadNamesOf(
      nlohmann::ordered_json{{"architectures", {"Gemma3ForConditionalGeneration"}},
                             {"tie_word_embeddings", true}});
  ASSERT_TRUE(gemma.has_value());
  EXPECT_EQ(gemma->unit, "language_model.lm_head");
  EXPECT_EQ(gemma->embedding, "language_model.model.embed_tokens.weight");
}

// The multimodal table's language model is under "language_model."; its vision tower and
// projector are recognised as unserved (never checked against config.json, never loaded), and
// nothing else is.
TEST(ModelTensorsTest, GemmaMultimodalTable) {
  const ModelConfig c = Config(Architecture::kGemma3Multimodal, /*tied=*/true);
  const ArchitectureTensors& t = TensorsOf(c.arch);
  const std::vector<TensorSpec> all = ModelTensors(c);
  EXPECT_EQ(all.front().name, "language_model.model.embed_tokens.weight");
  EXPECT_EQ(all[1].name, "language_model.model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(all[all.size() - 2].name, "language_model.model.norm.weight");
  EXPECT_EQ(all.back().name, "language_model.lm_head.weight");
  EXPECT_FALSE(all.back().required);
  std::set<std::string> layer0;
  for (const TensorSpec& s : all) {
    if (s.layer == 0) layer0.insert(s.name.substr(std::string("language_model.model.layers.0.").size()));
  }
  EXPECT_EQ(layer0, (std::set<std::string>{
                        "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                        "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                        "self_attn.q_norm.weight", "self_attn.k_norm.weight",
                        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                        "input_layernorm.weight", "post_attention_layernorm.weight",
                        "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"}));
  EXPECT_TRUE(IsUnserved(t, "vision_tower.encoder.layers.0.mlp.fc1.weight"));
  EXPECT_TRUE(IsUnserved(t, "vision_tower.vision_model.post_layernorm.bias"));
  EXPECT_TRUE(IsUnserved(t, "multi_modal_projector.mm_input_projection_weight"));
  EXPECT_FALSE(IsUnserved(t, "vision_towerx.weight"));
  EXPECT_FALSE(IsUnserved(t, "language_model.model.norm.weight"));
  EXPECT_FALSE(IsUnserved(TensorsOf(Architecture::kGemma3), "vision_tower.encoder.weight"));
}

TEST(ModelTensorsTest, ConfigOverloadsNameTheSizesInInvalidArgument) {
  const ModelConfig c = Config(Architecture::kQwen2);
  StatusOr<TpSlices> heads = TensorParallelSlices(c, 3, 0);
  EXPECT_EQ(heads.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(heads.status().message(), HasSubstr("num_attention_heads 8 is not divisible by tp 3"));
  StatusOr<std::vector<Range>> stages = StageLayers(c, 3, {});
  EXPECT_EQ(stages.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(stages.status().message(), HasSubstr("cannot split 2 layers into 3 pipeline stages"));
  StatusOr<std::vector<Range>> two = StageLayers(c, 2, {});
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(*two, (std::vector<Range>{{0, 1}, {1, 2}}));
}

TEST(ModelTensorsTest, WeightShapeNamesTheTablesModules) {
  const ModelConfig c = Config(Architecture::kMistral);
  StatusOr<std::vector<int64_t>> down = WeightShape(c, "model.layers.1.mlp.down_proj");
  ASSERT_TRUE(down.ok());
  EXPECT_EQ(*down, (std::vector<int64_t>{32, 48}));
  StatusOr<std::vector<int64_t>> norm = WeightShape(c, "model.layers.1.input_layernorm");
  EXPECT_EQ(norm.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(norm.status().message(),
              HasSubstr("expected model.embed_tokens, lm_head or model.layers.<i>.{"
                        "self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, "
                        "mlp.gate_proj, mlp.up_proj, mlp.down_proj}"));
}

}  // namespace
}  // namespace df11
