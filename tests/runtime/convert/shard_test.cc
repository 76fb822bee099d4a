// SPDX-License-Identifier: Apache-2.0
// df11 shard end to end on small random models: every rank's file holds exactly its slices (checked
// bit for bit against the BF16 original by direct index math, not through parallel/sharding.h),
// the manifest's checksums match, BF16 and DF11 sources give identical files, uncodable units stay
// BF16, and bad layouts, directories and sources give errors that name what is wrong.
#include "runtime/convert/shard.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "runtime/convert/compress.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_model_dir.h"
#include "runtime/formats/df11_unit.h"
#include "runtime/formats/model_config.h"
#include "runtime/formats/model_tensors.h"
#include "runtime/formats/safetensors_writer.h"
#include "runtime/formats/tiny_model.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;
using Words = std::vector<uint16_t>;

Words ToWords(std::span<const uint8_t> bytes) {
  Words w(bytes.size() / 2);
  std::memcpy(w.data(), bytes.data(), bytes.size());
  return w;
}

// One rank's slice bounds, computed here independently of parallel/sharding.h.
struct Geometry {
  int64_t q_begin, q_end;    // rows of q (heads * head_dim)
  int64_t kv_begin, kv_end;  // rows of k, v
  int64_t i_begin, i_end;    // intermediate rows
  int64_t v_begin, v_end;    // vocabulary rows
};

Geometry RankGeometry(const ModelConfig& c, int tp, int t) {
  const int64_t hd = c.head_dim, q = c.num_attention_heads / tp, kv = c.num_key_value_heads;
  Geometry g;
  g.q_begin = t * q * hd;
  g.q_end = (t + 1) * q * hd;
  const int64_t kv_head = kv >= tp ? t * (kv / tp) : t * kv / tp;
  const int64_t kv_count = kv >= tp ? kv / tp : 1;
  g.kv_begin = kv_head * hd;
  g.kv_end = (kv_head + kv_count) * hd;
  const int64_t in = c.intermediate_size / tp;
  g.i_begin = t * in;
  g.i_end = (t + 1) * in;
  const int64_t per = (c.vocab_size + tp - 1) / tp;
  g.v_begin = t * per;
  g.v_end = std::min(c.vocab_size, (t + 1) * per);
  return g;
}

// The rank's part of tensor `name` (full data `w`, shape `shape`); *local gets its shape.
Words ExpectedSlice(const std::string& name, const Words& w, std::vector<int64_t> shape,
                    const Geometry& g, std::vector<int64_t>* local) {
  const int64_t rows = shape[0], cols = shape.size() == 2 ? shape[1] : 1;
  int64_t r0 = 0, r1 = rows, c0 = 0, c1 = cols;
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("q_proj.")) std::tie(r0, r1) = std::pair(g.q_begin, g.q_end);
  if (has("k_proj.") || has("v_proj.")) std::tie(r0, r1) = std::pair(g.kv_begin, g.kv_end);
  if (has("gate_proj.") || has("up_proj.")) std::tie(r0, r1) = std::pair(g.i_begin, g.i_end);
  if (has("embed_tokens.") || has("lm_head.")) std::tie(r0, r1) = std::pair(g.v_begin, g.v_end);
  if (has("o_proj.weight")) std::tie(c0, c1) = std::pair(g.q_begin, g.q_end);
  if (has("down_proj.")) std::tie(c0, c1) = std::pair(g.i_begin, g.i_end);
  Words out;
  for (int64_t i = r0; i < r1; ++i) {
    for (int64_t j = c0; j < c1; ++j) out.push_back(w[i * cols + j]);
  }
  *local = shape;
  (*local)[0] = r1 - r0;
  if (shape.size() == 2) (*local)[1] = c1 - c0;
  return out;
}

// A weight read back from a rank file: decoded from its DF11 unit or stored as BF16.
struct ReadBack {
  std::vector<int64_t> shape;
  Words data;
  bool compressed = false;
};

class ShardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_tmp_.emplace("df11_shard_test");
    root_ = root_tmp_->path();
    TinyModelOptions o;
    o.seed = 7;
    o.hidden = 128;
    o.heads = 4;
    o.kv_heads = 2;
    o.intermediate = 256;
    o.layers = 4;
    o.vocab = 1000;
    o.threads = 2;
    ASSERT_TRUE(MakeTinyModel(o, root_ + "/bf16").ok());
    CompressOptions co;
    co.threads = 2;
    co.show_progress = false;
    auto s = CompressModel(root_ + "/bf16", root_ + "/df11", co);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
  }
  static void TearDownTestSuite() { root_tmp_.reset(); }

  static ShardOptions Options(int tp, int pp) {
    ShardOptions o;
    o.tp = tp;
    o.pp = pp;
    o.threads = 2;
    o.show_progress = false;
    return o;
  }

  // Every weight of rank file `file` (in `dir`), by name.
  static std::map<std::string, ReadBack> ReadRank(const std::string& dir, const std::string& file,
                                                  const std::string& scratch) {
    // Open the one file as a checkpoint of its own (a directory holding a hard link to it).
    fs::create_directories(scratch);
    fs::create_hard_link(dir + "/" + file, scratch + "/" + file);
    std::map<std::string, ReadBack> out;
    auto ckpt = Checkpoint::Open(scratch);
    EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    if (!ckpt.ok()) return out;
    const auto& meta = ckpt->files()[0].metadata();
    EXPECT_TRUE(meta.count(kShapesMetadataKey) && meta.count(kUnitsMetadataKey));
    const auto shapes = nlohmann::json::parse(meta.at(kShapesMetadataKey));
    const auto units = nlohmann::json::parse(meta.at(kUnitsMetadataKey));
    for (const std::string& name : FindDf11Units(*ckpt)) {
      auto unit = LoadDf11Unit(*ckpt, name);
      EXPECT_TRUE(unit.ok()) << unit.status().ToString();
      if (!unit.ok()) continue;
      Words all(unit->n_elements(), 0xFFFF);
      EXPECT_TRUE(DecodeDf11Unit(*unit, 0, unit->n_elements(), 2, all.data()).ok());
      const auto& weights = units.at(name);
      EXPECT_EQ(weights.size(), unit->split_positions.size() + 1) << name;
      for (size_t i = 0; i < weights.size(); ++i) {
        auto [b, e] = unit->MatrixRange(i);
        const std::string w = weights[i].get<std::string>();
        out[w] = {shapes.at(w).get<std::vector<int64_t>>(), Words(all.begin() + b, all.begin() + e),
                  true};
      }
    }
    for (const std::string& name : ckpt->tensor_names()) {
      const TensorInfo* t = ckpt->Find(name);
      if (t->dtype == DType::kBF16) out[name] = {t->shape, ToWords(t->bytes), false};
    }
    return out;
  }

  // Checks rank r of the sharded directory `out` against the BF16 original root_/bf16; adds the
  // number of DF11 units it holds to *units.
  void CheckRank(const nlohmann::json& manifest, const std::string& out, const ModelConfig& c,
                 int r, const std::string& tag, int64_t* units) {
    const int tp = manifest["layout"]["tp"], pp = manifest["layout"]["pp"];
    auto ckpt = Checkpoint::Open(root_ + "/bf16");
    ASSERT_TRUE(ckpt.ok());
    const nlohmann::json& e = manifest["ranks"][r];
    EXPECT_TRUE(VerifyShardFile(manifest, r, out).ok());
    const int stage = r / tp, t = r % tp;
    EXPECT_EQ(e["stage"], stage);
    EXPECT_EQ(e["tp_rank"], t);
    EXPECT_EQ(e["kv_replicated"], tp > c.num_key_value_heads);
    const nlohmann::json stages = manifest["layout"]["stage_layers"];
    const int64_t l0 = stages[stage][0], l1 = stages[stage][1];
    EXPECT_EQ(e["layers"], stages[stage]);
    // The tensors this rank must hold, from the architecture's full list.
    std::map<std::string, std::vector<int64_t>> want;
    for (auto& [tensor, shape] : ExpectedTensors(c)) {
      bool in = (tensor == "model.embed_tokens.weight" && stage == 0) ||
                (tensor == "model.norm.weight" && stage == pp - 1);
      for (int64_t l = l0; l < l1; ++l) {
        in = in || tensor.starts_with("model.layers." + std::to_string(l) + ".");
      }
      if (in) want[tensor] = shape;
    }
    if (stage == pp - 1) want["lm_head.weight"] = {c.vocab_size, c.hidden_size};
    const auto got = ReadRank(out, e["file"], dir_ + "/scratch-" + tag + std::to_string(r));
    ASSERT_EQ(got.size(), want.size());
    const Geometry g = RankGeometry(c, tp, t);
    for (const auto& [tensor, shape] : want) {
      SCOPED_TRACE(tensor);
      auto it = got.find(tensor);
      ASSERT_NE(it, got.end());
      EXPECT_EQ(it->second.compressed, shape.size() == 2);
      *units += tensor.ends_with("q_proj.weight") || tensor.ends_with("embed_tokens.weight") ||
                tensor == "lm_head.weight";
      const std::string source = tensor == "lm_head.weight" && c.tie_word_embeddings
                                     ? "model.embed_tokens.weight"
                                     : tensor;
      std::vector<int64_t> local;
      const Words expect =
          ExpectedSlice(tensor, ToWords(ckpt->Find(source)->bytes), shape, g, &local);
      EXPECT_EQ(it->second.shape, local);
      ASSERT_EQ(it->second.data.size(), expect.size());
      for (size_t i = 0; i < expect.size(); ++i) {
        ASSERT_EQ(it->second.data[i], expect[i]) << "element " << i;
      }
    }
  }

  // Shards `src` at tp x pp into dir_/name and checks every rank against the BF16 original.
  nlohmann::json ShardAndCheck(const std::string& src, const std::string& name, int tp, int pp) {
    const std::string out = dir_ + "/" + name;
    auto summary = ShardModel(src, out, Options(tp, pp));
    EXPECT_TRUE(summary.ok()) << summary.status().ToString();
    if (!summary.ok()) return {};
    EXPECT_TRUE(summary->kept_bf16.empty());
    EXPECT_EQ(static_cast<int>(summary->rank_bytes.size()), tp * pp);
    auto manifest = ReadShardManifest(out);
    EXPECT_TRUE(manifest.ok()) << manifest.status().ToString();
    if (!manifest.ok()) return {};
    EXPECT_EQ((*manifest)["layout"]["tp"], tp);
    EXPECT_EQ((*manifest)["layout"]["pp"], pp);
    EXPECT_FALSE((*manifest)["config"].contains("dfloat11_config"));
    EXPECT_TRUE(fs::exists(out + "/config.json"));
    EXPECT_TRUE(fs::exists(out + "/generation_config.json"));
    auto config = LoadModelConfig(out);
    EXPECT_TRUE(config.ok()) << config.status().ToString();

    if (!config.ok()) return {};
    int64_t units = 0;
    for (int r = 0; r < tp * pp; ++r) {
      SCOPED_TRACE("rank " + std::to_string(r));
      EXPECT_EQ((*manifest)["ranks"][r]["bytes"].get<int64_t>(), summary->rank_bytes[r]);
      CheckRank(*manifest, out, *config, r, name, &units);
    }
    EXPECT_EQ(summary->units, units);
    return *manifest;
  }

  // The models every test reads (root_ may point elsewhere for a while).
  static std::optional<test_support::TempDir> root_tmp_;
  static std::string root_;
  // This test's outputs.
  test_support::TempDir tmp_{"df11_shard_out"};
  const std::string dir_ = tmp_.path();
};

std::optional<test_support::TempDir> ShardTest::root_tmp_;
std::string ShardTest::root_;

TEST_F(ShardTest, EveryRankHoldsExactlyItsSlicesFromBf16AndDf11) {
  for (auto [tp, pp] : {std::pair(2, 2), std::pair(4, 1), std::pair(1, 2)}) {
    const std::string tag = "tp" + std::to_string(tp) + "pp" + std::to_string(pp);
    SCOPED_TRACE(tag);
    const nlohmann::json a = ShardAndCheck(root_ + "/bf16", tag + "-bf16", tp, pp);
    const nlohmann::json b = ShardAndCheck(root_ + "/df11", tag + "-df11", tp, pp);
    ASSERT_FALSE(a.is_null() || b.is_null());
    EXPECT_EQ(a["source"]["format"], "bf16");
    EXPECT_EQ(b["source"]["format"], "df11");
    EXPECT_NE(a["source"]["hash"], b["source"]["hash"]);
    // Same slices in, same re-encoded files out, whichever form the source had.
    for (int r = 0; r < tp * pp; ++r) {
      EXPECT_EQ(a["ranks"][r]["xxh64"], b["ranks"][r]["xxh64"]) << "rank " << r;
    }
  }
}

TEST_F(ShardTest, ManifestDescribesLayoutAndSlices) {
  const nlohmann::json m = ShardAndCheck(root_ + "/bf16", "m", 4, 1);
  ASSERT_FALSE(m.is_null());
  EXPECT_EQ(m["format"], "df11-sharded");
  EXPECT_EQ(m["format_version"], 1);
  EXPECT_EQ(m["layout"]["world_size"], 4);
  EXPECT_EQ(m["layout"]["stage_layers"], nlohmann::json::parse("[[0, 4]]"));
  // kv 2 < tp 4: ranks 0, 1 share kv head 0 and ranks 2, 3 kv head 1.
  EXPECT_EQ(m["ranks"][1]["kv_heads"], nlohmann::json::parse("[0, 1]"));
  EXPECT_EQ(m["ranks"][2]["kv_heads"], nlohmann::json::parse("[1, 2]"));
  EXPECT_EQ(m["ranks"][3]["q_heads"], nlohmann::json::parse("[3, 4]"));
  EXPECT_EQ(m["ranks"][3]["intermediate"], nlohmann::json::parse("[192, 256]"));
  EXPECT_EQ(m["ranks"][3]["vocab"], nlohmann::json::parse("[750, 1000]"));
  EXPECT_EQ(m["ranks"][0]["file"], "rank-00000.safetensors");
  EXPECT_EQ(m["source"]["hash"].get<std::string>().size(), 16u);
  // Same source, same hash.
  auto again = ShardModel(root_ + "/bf16", dir_ + "/again", Options(1, 1));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->source_hash, m["source"]["hash"]);
}

TEST_F(ShardTest, ExplicitStageLayers) {
  ShardOptions o = Options(2, 2);
  o.stage_layers = {1, 3};
  ASSERT_TRUE(ShardModel(root_ + "/df11", dir_ + "/s", o).ok());
  auto m = ReadShardManifest(dir_ + "/s");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)["layout"]["stage_layers"], nlohmann::json::parse("[[0, 1], [1, 4]]"));
  EXPECT_EQ((*m)["ranks"][3]["layers"], nlohmann::json::parse("[1, 4]"));
}

TEST_F(ShardTest, TiedEmbeddingsAndBiasesQwen2) {
  TinyModelOptions o;
  o.arch = "qwen2";
  o.seed = 11;
  o.hidden = 128;
  o.heads = 4;
  o.kv_heads = 2;
  o.intermediate = 256;
  o.layers = 2;
  o.vocab = 1001;
  o.tie_embeddings = true;
  o.threads = 2;
  ASSERT_TRUE(MakeTinyModel(o, dir_ + "/qwen2").ok());
  // ShardAndCheck compares against root_/bf16; point it at this model instead.
  const std::string saved = root_;
  root_ = dir_ + "/q";
  fs::create_directories(root_);
  fs::rename(dir_ + "/qwen2", root_ + "/bf16");
  EXPECT_FALSE(ShardAndCheck(root_ + "/bf16", "q2", 2, 2).is_null());
  root_ = saved;
}

TEST_F(ShardTest, UncodableUnitIsWrittenAsBf16) {
  const std::string src = dir_ + "/inf";
  fs::create_directories(src);
  for (const auto& f : fs::directory_iterator(root_ + "/bf16")) {
    if (f.path().extension() != ".safetensors") fs::copy(f.path(), src / f.path().filename());
  }
  // Inf into layer 1's up_proj, row 0: only tp rank 0's slice is uncodable.
  auto ckpt = Checkpoint::Open(root_ + "/bf16");
  ASSERT_TRUE(ckpt.ok());
  SafetensorsWriter w;
  std::vector<uint8_t> changed;
  for (const std::string& name : ckpt->tensor_names()) {
    const TensorInfo* t = ckpt->Find(name);
    if (name == "model.layers.1.mlp.up_proj.weight") {
      changed.assign(t->bytes.begin(), t->bytes.end());
      changed[6] = 0x80;
      changed[7] = 0x7F;  // element 3 = 0x7F80: +Inf
      ASSERT_TRUE(w.AddTensor(name, t->dtype, t->shape, changed).ok());
    } else {
      ASSERT_TRUE(w.AddTensor(name, t->dtype, t->shape, t->bytes).ok());
    }
  }
  ASSERT_TRUE(w.Write(src + "/model.safetensors").ok());
  auto summary = ShardModel(src, dir_ + "/out", Options(2, 1));
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  ASSERT_EQ(summary->kept_bf16.size(), 1u);
  EXPECT_NE(summary->kept_bf16[0].find("rank-00000.safetensors: model.layers.1"),
            std::string::npos)
      << summary->kept_bf16[0];
  EXPECT_EQ(summary->units, 2 * 6 - 1);  // per rank: 4 layers + embed + lm_head
  auto m = ReadShardManifest(dir_ + "/out");
  ASSERT_TRUE(m.ok());
  const auto r0 = ReadRank(dir_ + "/out", "rank-00000.safetensors", dir_ + "/r0");
  const ReadBack& up = r0.at("model.layers.1.mlp.up_proj.weight");
  EXPECT_FALSE(up.compressed);
  EXPECT_EQ(up.shape, (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(up.data[3], 0x7F80);
  EXPECT_FALSE(r0.at("model.layers.1.self_attn.q_proj.weight").compressed);
  EXPECT_TRUE(r0.at("model.layers.2.mlp.up_proj.weight").compressed);
  const auto r1 = ReadRank(dir_ + "/out", "rank-00001.safetensors", dir_ + "/r1");
  EXPECT_TRUE(r1.at("model.layers.1.mlp.up_proj.weight").compressed);
}

TEST_F(ShardTest, CorruptFileFailsVerification) {
  ASSERT_TRUE(ShardModel(root_ + "/bf16", dir_ + "/v", Options(2, 1)).ok());
  auto m = ReadShardManifest(dir_ + "/v");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(VerifyShardFile(*m, 1, dir_ + "/v").ok());
  {
    // Flip one byte in the middle of rank 1's file.
    const std::string path = dir_ + "/v/rank-00001.safetensors";
    FILE* f = std::fopen(path.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    const long mid = static_cast<long>(fs::file_size(path) / 2);
    std::fseek(f, mid, SEEK_SET);
    const int byte = std::fgetc(f);
    std::fseek(f, mid, SEEK_SET);
    std::fputc(byte ^ 1, f);
    std::fclose(f);
  }
  Status s = VerifyShardFile(*m, 1, dir_ + "/v");
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("rank-00001.safetensors: xxh64 "), std::string::npos) << s.message();
  EXPECT_NE(s.message().find((*m)["ranks"][1]["xxh64"].get<std::string>()), std::string::npos);
  fs::resize_file(dir_ + "/v/rank-00000.safetensors", 100);
  s = VerifyShardFile(*m, 0, dir_ + "/v");
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("100 bytes"), std::string::npos) << s.message();
  fs::remove(dir_ + "/v/rank-00000.safetensors");
  EXPECT_EQ(VerifyShardFile(*m, 0, dir_ + "/v").code(), StatusCode::kNotFound);
  EXPECT_EQ(VerifyShardFile(*m, 2, dir_ + "/v").code(), StatusCode::kInvalidArgument);
}

TEST_F(ShardTest, Errors) {
  // tp 3 does not divide 4 heads; nothing is created.
  auto heads = ShardModel(root_ + "/bf16", dir_ + "/a", Options(3, 1));
  ASSERT_FALSE(heads.ok());
  EXPECT_EQ(heads.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(heads.status().message().find("num_attention_heads 4"), std::string::npos)
      << heads.status().message();
  EXPECT_NE(heads.status().message().find("tp 3"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ + "/a"));

  fs::create_directories(dir_ + "/full");
  FILE* f = std::fopen((dir_ + "/full/x").c_str(), "w");
  std::fclose(f);
  auto full = ShardModel(root_ + "/bf16", dir_ + "/full", Options(2, 1));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(full.status().message().find("not empty"), std::string::npos);

  auto missing = ShardModel(dir_ + "/nope", dir_ + "/b", Options(2, 1));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir_ + "/nope"), std::string::npos);

  ShardOptions o = Options(1, 2);
  o.stage_layers = {1, 2};
  auto sum = ShardModel(root_ + "/bf16", dir_ + "/c", o);
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(sum.status().message().find("sum to 3"), std::string::npos) << sum.status().message();
  EXPECT_NE(sum.status().message().find("4 layers"), std::string::npos);

  // A sharded directory is not a source.
  ASSERT_TRUE(ShardModel(root_ + "/bf16", dir_ + "/d", Options(1, 1)).ok());
  auto twice = ShardModel(dir_ + "/d", dir_ + "/e", Options(1, 1));
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("already sharded"), std::string::npos);

  // A directory without a manifest is not sharded (or not finished).
  EXPECT_EQ(ReadShardManifest(root_ + "/bf16").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace df11
