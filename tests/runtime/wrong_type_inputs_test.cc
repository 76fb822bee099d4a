// SPDX-License-Identifier: Apache-2.0
// Every JSON (and YAML) file the project reads, with each field's value replaced in turn by a
// value of every JSON type (null, bool, negative, huge and fractional numbers, strings, empty and
// non-empty lists and objects), fed to the real readers: config.json with dfloat11_config
// (loader, compress, verify, inspect, decompress), safetensors headers and their metadata
// (df11_shapes, df11_units), model.safetensors.index.json, tokenizer.json, tokenizer_config.json,
// generation_config.json, the shard manifest.json, and the deployment YAML in configs/. Each
// reader must return a Status (OK or an error): no crash, no exception. Big maps and lists are
// sampled (their first two entries and the last).
#include <gtest/gtest.h>
#include <xxhash.h>
#include <yaml-cpp/yaml.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "runtime/convert/compress.h"
#include "runtime/convert/decompress.h"
#include "runtime/convert/inspect.h"
#include "runtime/convert/shard.h"
#include "runtime/convert/verify.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/tiny_model.h"
#include "runtime/model/deploy_config.h"
#include "runtime/model/model_weights.h"
#include "runtime/model/shard_weights.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Paths of every value in `j` (itself included); of a list or map with more than 64 entries (a
// vocabulary, merges, added tokens) only the first two and the last are visited.
void CollectPaths(const json& j, const json::json_pointer& at, std::vector<json::json_pointer>* out) {
  out->push_back(at);
  if (!j.is_object() && !j.is_array()) return;
  const size_t n = j.size();
  size_t i = 0;
  for (auto it = j.begin(); it != j.end(); ++it, ++i) {
    if (n > 64 && i >= 2 && i + 1 < n) continue;
    CollectPaths(it.value(), j.is_object() ? at / it.key() : at / i, out);
  }
}

const std::vector<json>& WrongValues() {
  static const std::vector<json> values = {
      nullptr, true, -1, json(uint64_t{18446744073709551615u}), 4294967297LL, 3.5, -1e300, "",
      "x", json::array(), json::array({nullptr, "y"}), json::object(), json{{"x", 1}}};
  return values;
}

// Runs `read` once per (path, wrong value) of the JSON document that `to_text` turns into the
// file's bytes at `file`; the file is restored afterwards. `read` may fail; it must not throw.
void ForEachMutation(const json& doc, const std::string& file,
                     const std::function<std::string(const json&)>& to_text,
                     const std::function<void()>& read) {
  const std::string original = ReadAll(file);
  std::vector<json::json_pointer> paths;
  CollectPaths(doc, json::json_pointer(), &paths);
  int failures = 0;
  for (const json::json_pointer& path : paths) {
    for (const json& value : WrongValues()) {
      json mutated = doc;
      mutated[path] = value;
      WriteAll(file, to_text(mutated));
      try {
        read();
      } catch (const std::exception& e) {
        if (++failures <= 10) {
          ADD_FAILURE() << file << " " << path.to_string() << " = " << value.dump()
                        << ": exception " << e.what();
        }
      } catch (...) {
        if (++failures <= 10) ADD_FAILURE() << file << " " << path.to_string() << ": exception";
      }
    }
  }
  WriteAll(file, original);
  EXPECT_EQ(failures, 0) << file << ": " << paths.size() << " paths";
}

std::string JsonText(const json& j) { return j.dump(1); }

// A safetensors file's header as JSON, and the file rebuilt from a header and the same data.
json Header(const std::string& bytes) {
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return json::parse(bytes.substr(8, n));
}
std::string WithHeader(const std::string& bytes, const json& header) {
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  const uint64_t len = h.size();
  return std::string(reinterpret_cast<const char*>(&len), 8) + h + bytes.substr(8 + n);
}

class WrongTypeInputs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_.emplace("df11_wrong_types");
    dir_ = tmp_->path();
    TinyModelOptions o;
    o.layers = 1;
    o.hidden = 32;
    o.heads = 2;
    o.kv_heads = 1;
    o.intermediate = 64;
    o.vocab = 64;
    o.seed = 3;
    ASSERT_TRUE(MakeTinyModel(o, dir_ + "/bf16").ok());
    o.max_shard_bytes = 8000;
    ASSERT_TRUE(MakeTinyModel(o, dir_ + "/sharded_bf16").ok());
    CompressOptions c;
    c.threads = 1;
    c.show_progress = false;
    ASSERT_TRUE(CompressModel(dir_ + "/bf16", dir_ + "/df11", c).ok());
    ShardOptions s;
    s.tp = 2;
    s.threads = 1;
    s.show_progress = false;
    ASSERT_TRUE(ShardModel(dir_ + "/df11", dir_ + "/shards", s).ok());
  }
  static void TearDownTestSuite() { tmp_.reset(); }

  // A tokenizer directory: the family's tokenizer_config.json and a compact tokenizer.json (the
  // real one cut to ids < 300 and the first twelve added tokens, merges among those ids).
  static std::string CompactTokenizer(const std::string& family) {
    const std::string out = dir_ + "/tok-" + family;
    if (fs::exists(out)) return out;
    fs::create_directories(out);
    const std::string src = std::string(DF11_TOKENIZER_DIR) + "/" + family;
    // (nlohmann::json here: ordered_json inserts in linear time, too slow for 262 k tokens.)
    nlohmann::json full = nlohmann::json::parse(ReadAll(src + "/tokenizer.json"));
    nlohmann::json vocab = nlohmann::json::object();
    for (auto& [token, id] : full["model"]["vocab"].items()) {
      if (id.get<int64_t>() < 300) vocab[token] = id;
    }
    nlohmann::json merges = nlohmann::json::array();
    for (const nlohmann::json& m : full["model"]["merges"]) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        a = s.substr(0, s.find(' '));
        b = s.substr(s.find(' ') + 1);
      } else {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      }
      if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) merges.push_back(m);
    }
    full["model"]["vocab"] = vocab;
    full["model"]["merges"] = merges;
    json t = json::parse(full.dump());
    // The first twelve added tokens (the family's BOS/EOS among them), renumbered from 300 so
    // that the id tables stay small; the post-processor follows the new ids.
    json added = json::array();
    std::map<int64_t, int64_t> renumbered;
    for (size_t i = 0; i < 12 && i < t["added_tokens"].size(); ++i) {
      json a = t["added_tokens"][i];
      const int64_t id = a["id"].get<int64_t>();
      if (id >= 300) a["id"] = renumbered[id] = 300 + static_cast<int64_t>(i);
      added.push_back(a);
    }
    t["added_tokens"] = added;
    std::function<void(json&)> follow = [&](json& j) {
      if (j.is_object() && j.contains("ids") && j["ids"].is_array()) {
        for (json& id : j["ids"]) {
          if (renumbered.count(id.get<int64_t>())) id = renumbered[id.get<int64_t>()];
        }
      }
      if (j.is_object() || j.is_array()) {
        for (json& child : j) follow(child);
      }
    };
    if (t.contains("post_processor")) follow(t["post_processor"]);
    WriteAll(out + "/tokenizer.json", t.dump());
    // tokenizer_config.json without added_tokens_decoder (thousands of entries nothing reads);
    // BOS in the {"content": ...} form that many models' files use, so that its content is
    // mutated too.
    json config = json::parse(ReadAll(src + "/tokenizer_config.json"));
    config.erase("added_tokens_decoder");
    if (config.contains("bos_token") && config["bos_token"].is_string()) {
      config["bos_token"] = {{"__type", "AddedToken"}, {"content", config["bos_token"]},
                             {"lstrip", false}, {"normalized", false}, {"rstrip", false},
                             {"single_word", false}};
    }
    WriteAll(out + "/tokenizer_config.json", config.dump(1));
    EXPECT_TRUE(Tokenizer::FromDirectory(out).ok()) << Tokenizer::FromDirectory(out).status().ToString();
    return out;
  }

  static void UseTokenizer(const Tokenizer& t) {
    auto ids = t.Encode("Hello wörld ab <|x|> 123", true);
    if (ids.ok()) (void)t.Decode(*ids, false);
  }

  static std::optional<test_support::TempDir> tmp_;
  static std::string dir_;
};
std::optional<test_support::TempDir> WrongTypeInputs::tmp_;
std::string WrongTypeInputs::dir_;

TEST_F(WrongTypeInputs, ConfigJsonOfABf16Model) {
  const std::string file = dir_ + "/bf16/config.json";
  ForEachMutation(json::parse(ReadAll(file)), file, JsonText, [&] {
    (void)LoadModelWeights(dir_ + "/bf16");
    CompressOptions c;
    c.threads = 1;
    c.show_progress = false;
    if (CompressModel(dir_ + "/bf16", dir_ + "/out", c).ok()) fs::remove_all(dir_ + "/out");
  });
}

TEST_F(WrongTypeInputs, ConfigJsonOfADf11ModelWithDfloat11Config) {
  const std::string file = dir_ + "/df11/config.json";
  ForEachMutation(json::parse(ReadAll(file)), file, JsonText, [&] {
    (void)LoadModelWeights(dir_ + "/df11");
    (void)InspectModel(dir_ + "/df11", 1);
    (void)VerifyModel(dir_ + "/df11", dir_ + "/bf16", 1, false);
    if (DecompressModel(dir_ + "/df11", dir_ + "/out", 1, false).ok()) fs::remove_all(dir_ + "/out");
  });
}

TEST_F(WrongTypeInputs, SafetensorsHeaderAndDf11ShapesMetadata) {
  const std::string file = dir_ + "/df11/model_layers_0.safetensors";
  const std::string bytes = ReadAll(file);
  auto read = [&] {
    (void)SafetensorsFile::Open(file);
    (void)LoadModelWeights(dir_ + "/df11");
    (void)VerifyModel(dir_ + "/df11", dir_ + "/bf16", 1, false);
  };
  const json header = Header(bytes);
  ForEachMutation(header, file, [&](const json& h) { return WithHeader(bytes, h); }, read);
  // The JSON inside the df11_shapes metadata string.
  ForEachMutation(json::parse(header["__metadata__"]["df11_shapes"].get<std::string>()), file,
                  [&](const json& shapes) {
                    json h = header;
                    h["__metadata__"]["df11_shapes"] = shapes.dump();
                    return WithHeader(bytes, h);
                  },
                  read);
}

TEST_F(WrongTypeInputs, CheckpointIndex) {
  const std::string file = dir_ + "/sharded_bf16/" + kCheckpointIndexName;
  ASSERT_TRUE(fs::exists(file));
  ForEachMutation(json::parse(ReadAll(file)), file, JsonText, [&] {
    (void)Checkpoint::Open(dir_ + "/sharded_bf16");
    (void)LoadModelWeights(dir_ + "/sharded_bf16");
  });
}

TEST_F(WrongTypeInputs, ShardManifestAndRankFileMetadata) {
  const std::string shards = dir_ + "/shards";
  auto read = [&] {
    if (auto m = ReadShardManifest(shards); m.ok()) (void)VerifyShardFile(*m, 0, shards);
    if (auto layout = ReadShardLayout(shards); layout.ok()) {
      (void)LoadShardWeights(shards, *layout, 0);
    }
  };
  const std::string manifest_file = shards + "/manifest.json";
  const json manifest = json::parse(ReadAll(manifest_file));
  ForEachMutation(manifest, manifest_file, JsonText, read);
  // The rank file's df11_units and df11_shapes metadata, with the manifest's size and checksum
  // following the mutated file so that the metadata is what gets read.
  const std::string rank_file = shards + "/" + manifest["ranks"][0]["file"].get<std::string>();
  const std::string bytes = ReadAll(rank_file);
  const json header = Header(bytes);
  for (const char* key : {"df11_units", "df11_shapes"}) {
    SCOPED_TRACE(key);
    ForEachMutation(json::parse(header["__metadata__"][key].get<std::string>()), rank_file,
                    [&](const json& inner) {
                      json h = header;
                      h["__metadata__"][key] = inner.dump();
                      const std::string out = WithHeader(bytes, h);
                      json m = manifest;
                      m["ranks"][0]["bytes"] = out.size();
                      char hex[17];
                      std::snprintf(hex, sizeof(hex), "%016llx",
                                    static_cast<unsigned long long>(XXH64(out.data(), out.size(), 0)));
                      m["ranks"][0]["xxh64"] = hex;
                      WriteAll(manifest_file, m.dump(1));
                      return out;
                    },
                    read);
  }
  WriteAll(manifest_file, manifest.dump(1));
}

class WrongTypeTokenizerFiles : public WrongTypeInputs,
                                public ::testing::WithParamInterface<std::string> {};

TEST_P(WrongTypeTokenizerFiles, TokenizerJson) {
  const std::string tok = CompactTokenizer(GetParam());
  const std::string file = tok + "/tokenizer.json";
  ForEachMutation(json::parse(ReadAll(file)), file, JsonText, [&] {
    if (auto t = Tokenizer::FromFile(file); t.ok()) UseTokenizer(*t);
    TinyModelOptions o;
    o.vocab_from = tok;
    o.vocab = 1;  // refused after the tokenizer files are read: nothing is written
    (void)MakeTinyModel(o, dir_ + "/never");
  });
}

TEST_P(WrongTypeTokenizerFiles, TokenizerConfigAndGenerationConfig) {
  const std::string tok = CompactTokenizer(GetParam());
  auto read = [&] {
    if (auto t = Tokenizer::FromDirectory(tok); t.ok()) UseTokenizer(*t);
    if (auto c = ChatTemplate::FromDirectory(tok); c.ok()) {
      const ChatMessage messages[] = {{"system", "s"}, {"user", "hi"}};
      (void)c->Apply(messages);
    }
    TinyModelOptions o;
    o.vocab_from = tok;
    o.vocab = 1;
    (void)MakeTinyModel(o, dir_ + "/never");
  };
  const std::string config_file = tok + "/tokenizer_config.json";
  ForEachMutation(json::parse(ReadAll(config_file)), config_file, JsonText, read);
  const std::string generation_file = tok + "/generation_config.json";
  fs::copy_file(dir_ + "/bf16/generation_config.json", generation_file,
                fs::copy_options::overwrite_existing);
  ForEachMutation(json::parse(ReadAll(generation_file)), generation_file, JsonText, read);
}

INSTANTIATE_TEST_SUITE_P(Families, WrongTypeTokenizerFiles,
                         ::testing::Values("llama-3.1", "qwen3", "gemma3"));

// YAML: every node replaced by scalars that are not what the key wants, and by lists and maps.
TEST_F(WrongTypeInputs, DeploymentYaml) {
  const std::vector<std::string> replacements = {"x", "-1", "1e999", ".nan", "true", "~",
                                                 "[]", "[1, x]", "{}", "{a: 1}", "9223372036854775808"};
  int failures = 0;
  for (const auto& entry : fs::directory_iterator(std::string(DF11_TEST_DATA_DIR) + "/../../configs")) {
    if (entry.path().extension() != ".yaml") continue;
    const YAML::Node original = YAML::LoadFile(entry.path());
    // Paths as key lists, depth first.
    std::vector<std::vector<std::string>> paths = {{}};
    std::function<void(const YAML::Node&, std::vector<std::string>)> walk =
        [&](const YAML::Node& n, std::vector<std::string> at) {
          if (!n.IsMap()) return;
          for (const auto& kv : n) {
            std::vector<std::string> sub = at;
            sub.push_back(kv.first.as<std::string>());
            paths.push_back(sub);
            walk(kv.second, sub);
          }
        };
    walk(original, {});
    const std::string file = dir_ + "/" + entry.path().filename().string();
    for (const auto& path : paths) {
      for (const std::string& r : replacements) {
        YAML::Node copy = YAML::Clone(original);
        if (path.empty()) {
          copy = YAML::Load(r);
        } else {
          YAML::Node parent = copy;
          for (size_t i = 0; i + 1 < path.size(); ++i) parent.reset(parent[path[i]]);
          parent[path.back()] = YAML::Load(r);
        }
        YAML::Emitter out;
        out << copy;
        WriteAll(file, out.c_str());
        try {
          (void)LoadDeployConfig(file);
        } catch (const std::exception& e) {
          if (++failures <= 10) {
            std::string where;
            for (const auto& k : path) where += "." + k;
            ADD_FAILURE() << entry.path().filename() << " " << where << " = " << r
                          << ": exception " << e.what();
          }
        }
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

}  // namespace
}  // namespace df11
