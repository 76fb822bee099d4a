// SPDX-License-Identifier: Apache-2.0
// Checkpoint: single-file, sharded (index) and directory-scan layouts, the index writer, and bad
// indexes or shard sets that must give a Status naming the file and tensor.
#include "runtime/formats/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/file_util.h"
#include "runtime/formats/safetensors_writer.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = std::random_device{}();
    rng_.seed(seed_);
  }

  // Writes `file` in dir_ holding one random BF16 tensor of shape [2, 3] per name; remembers the
  // bytes in expected_.
  void WriteShard(const std::string& file, const std::vector<std::string>& names) {
    SafetensorsWriter writer;
    for (const std::string& name : names) {
      std::vector<uint8_t> bytes(12);
      for (auto& b : bytes) b = static_cast<uint8_t>(rng_());
      expected_[name] = bytes;
      ASSERT_TRUE(writer.AddOwnedTensor(name, DType::kBF16, {2, 3}, bytes).ok());
    }
    ASSERT_TRUE(writer.Write(JoinPath(dir_, file)).ok());
  }
  void WriteText(const std::string& file, const std::string& text) {
    ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, file), text).ok());
  }
  void ExpectTensor(const Checkpoint& ckpt, const std::string& name) {
    const TensorInfo* t = ckpt.Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
    const std::vector<uint8_t>& want = expected_.at(name);
    ASSERT_EQ(t->bytes.size(), want.size());
    EXPECT_EQ(std::memcmp(t->bytes.data(), want.data(), want.size()), 0) << name;
  }

  test_support::TempDir tmp_{"df11_checkpoint_test"};
  const std::string dir_ = tmp_.path();
  uint32_t seed_ = 0;
  std::mt19937 rng_;
  std::map<std::string, std::vector<uint8_t>> expected_;
};

TEST_F(CheckpointTest, SingleModelFile) {
  WriteShard("model.safetensors", {"b.weight", "a.weight"});
  WriteText("config.json", "{}");
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->layout(), Checkpoint::Layout::kDirectoryScan);
  EXPECT_THAT(ckpt->tensor_names(), ElementsAre("b.weight", "a.weight"));  // file order
  ExpectTensor(*ckpt, "a.weight");
  ExpectTensor(*ckpt, "b.weight");
  EXPECT_EQ(ckpt->Find("c.weight"), nullptr);
  StatusOr<const TensorInfo*> missing = ckpt->Get("c.weight");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("\"c.weight\""));
}

TEST_F(CheckpointTest, ShardedWithIndex) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  WriteShard("stray.safetensors", {"lm_head.weight"});  // not in the index: ignored
  WriteShard("model-00002-of-00002.safetensors", {"lm_head.weight", "model.norm.weight"});
  WriteShard("model-00001-of-00002.safetensors", {"model.embed_tokens.weight", "model.layers.0.w"});
  std::map<std::string, std::string> weight_map = {
      {"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
      {"model.layers.0.w", "model-00001-of-00002.safetensors"},
      {"lm_head.weight", "model-00002-of-00002.safetensors"},
      {"model.norm.weight", "model-00002-of-00002.safetensors"},
  };
  ASSERT_TRUE(WriteCheckpointIndex(dir_, weight_map, 48).ok());

  StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->layout(), Checkpoint::Layout::kIndexed);
  EXPECT_EQ(ckpt->files().size(), 2u);
  EXPECT_THAT(ckpt->tensor_names(),
              ElementsAre("model.embed_tokens.weight", "model.layers.0.w", "lm_head.weight",
                          "model.norm.weight"));
  for (const auto& [name, file] : weight_map) {
    ExpectTensor(*ckpt, name);
    ASSERT_NE(ckpt->FileOf(name), nullptr);
    EXPECT_EQ(ckpt->FileOf(name)->path(), JoinPath(dir_, file));
  }
}

TEST_F(CheckpointTest, IndexHasHuggingFaceForm) {
  ASSERT_TRUE(WriteCheckpointIndex(dir_, {{"b", "f2.safetensors"}, {"a", "f1.safetensors"}},
                                   123456789012)
                  .ok());
  StatusOr<std::string> text = ReadFileToString(JoinPath(dir_, kCheckpointIndexName));
  ASSERT_TRUE(text.ok());
  nlohmann::json index = nlohmann::json::parse(*text);
  EXPECT_EQ(index, nlohmann::json::parse(R"({"metadata": {"total_size": 123456789012},
      "weight_map": {"a": "f1.safetensors", "b": "f2.safetensors"}})"));
  EXPECT_LT(text->find("\"metadata\""), text->find("\"weight_map\""));
  EXPECT_EQ(text->back(), '\n');
}

TEST_F(CheckpointTest, IndexWriterRejectsEscapingNames) {
  for (const std::string bad : {"../x.safetensors", "sub/x.safetensors", "..", ""}) {
    Status s = WriteCheckpointIndex(dir_, {{"t", bad}}, 0);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("\"t\"")) << bad;
  }
  EXPECT_FALSE(FileExists(JoinPath(dir_, kCheckpointIndexName)));
}

TEST_F(CheckpointTest, DirectoryScanOfSeveralFiles) {
  // DF11 releases: one file per unit plus a remainder model.safetensors, no index.
  WriteShard("model_layers_1.safetensors", {"model.layers.1.w"});
  WriteShard("model_layers_0.safetensors", {"model.layers.0.w"});
  WriteShard("model.safetensors", {"model.norm.weight"});
  WriteText("notes.safetensors.txt", "not weights");
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_THAT(ckpt->tensor_names(),
              ElementsAre("model.norm.weight", "model.layers.0.w", "model.layers.1.w"));
  for (const std::string& name : ckpt->tensor_names()) ExpectTensor(*ckpt, name);
}

TEST_F(CheckpointTest, DuplicateTensorAcrossFilesIsCorruption) {
  WriteShard("a.safetensors", {"x", "shared.weight"});
  WriteShard("b.safetensors", {"shared.weight"});
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("\"shared.weight\""));
  EXPECT_THAT(ckpt.status().message(), HasSubstr("a.safetensors"));
  EXPECT_THAT(ckpt.status().message(), HasSubstr("b.safetensors"));
}

TEST_F(CheckpointTest, EmptyOrMissingDirectory) {
  StatusOr<Checkpoint> empty = Checkpoint::Open(dir_);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(empty.status().message(), HasSubstr(dir_));
  StatusOr<Checkpoint> missing = Checkpoint::Open(JoinPath(dir_, "nope"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(CheckpointTest, CorruptShardNamesTheFile) {
  WriteShard("good.safetensors", {"x"});
  WriteText("bad.safetensors", std::string("\x02\0\0\0\0\0\0\0[]", 10));
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(JoinPath(dir_, "bad.safetensors")));
}

TEST_F(CheckpointTest, IndexToMissingFile) {
  WriteShard("model-00001-of-00002.safetensors", {"a"});
  ASSERT_TRUE(WriteCheckpointIndex(dir_, {{"a", "model-00001-of-00002.safetensors"},
                                          {"b", "model-00002-of-00002.safetensors"}},
                                   24)
                  .ok());
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(kCheckpointIndexName));
  EXPECT_THAT(ckpt.status().message(), HasSubstr("model-00002-of-00002.safetensors"));
}

TEST_F(CheckpointTest, IndexToTensorNotInItsFile) {
  WriteShard("s1.safetensors", {"a"});
  WriteShard("s2.safetensors", {"b"});
  ASSERT_TRUE(WriteCheckpointIndex(dir_,
                                   {{"a", "s1.safetensors"},
                                    {"b", "s1.safetensors"},  // b is in s2
                                    {"c", "s2.safetensors"}},
                                   36)
                  .ok());
  StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(ckpt.status().message(),
              HasSubstr("weight_map[\"b\"] = \"s1.safetensors\", but that file holds no such"));
}

TEST_F(CheckpointTest, MalformedIndexes) {
  WriteShard("s1.safetensors", {"a"});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"weight_map\": ", "expected valid JSON"},
      {"[1, 2]", "expected a JSON object, got array"},
      {"{\"metadata\": {}}", "\"weight_map\": expected an object"},
      {"{\"weight_map\": []}", "\"weight_map\": expected an object"},
      {"{\"weight_map\": {}}", "weight_map is empty"},
      {"{\"weight_map\": {\"a\": 3}}", "weight_map[\"a\"]: expected a plain file name"},
      {"{\"weight_map\": {\"a\": \"../s1.safetensors\"}}", "weight_map[\"a\"]: expected a plain"},
      {"{\"weight_map\": {\"a\": \"/etc/passwd\"}}", "weight_map[\"a\"]: expected a plain"},
      {"{\"weight_map\": {\"a\": \"..\"}}", "weight_map[\"a\"]: expected a plain"},
      {"{\"weight_map\": {\"a\": \"s1.safetensors\\u0000.txt\"}}", "weight_map[\"a\"]: expected"},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    WriteText(kCheckpointIndexName, text);
    StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir_);
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), StatusCode::kCorruption) << ckpt.status().ToString();
    EXPECT_THAT(ckpt.status().message(), HasSubstr(kCheckpointIndexName));
    EXPECT_THAT(ckpt.status().message(), HasSubstr(expected));
  }
}

}  // namespace
}  // namespace df11
