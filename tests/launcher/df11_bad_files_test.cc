// SPDX-License-Identifier: Apache-2.0
// `df11` and `df11-run` on incomplete or hostile files, as a user runs them: a DF11 directory
// that lost a unit tensor or a unit file is refused by every command that reads it (exit 2,
// naming the file and the missing thing, nothing written); a command whose writes fail (a file
// size limit) leaves no output directory; tokenizer files with absurd ids or wrong types are
// refused by name; every path a flag reads refuses a directory, a device or a missing path by
// name; a tied model compressed by the reference encoder verifies, and both forms of a tied DF11
// model (with and without a stored lm_head) are served.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "runtime/formats/safetensors.h"
#include "runtime/formats/safetensors_writer.h"
#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;
using test_support::CommandResult;
using test_support::RunCommand;
using test_support::TempDir;

const std::string kBin = std::string(DF11_BINARY_DIR) + "/launcher/";
const std::string kTiedData = std::string(DF11_TEST_DATA_DIR) + "/tied_interop";
const char* const kFields[] = {"luts", "encoded_exponent", "sign_mantissa", "output_positions",
                               "gaps", "split_positions"};

// Rewrites safetensors `file` without tensor `drop`.
void Drop(const std::string& file, const std::string& drop) {
  SafetensorsWriter writer;
  {
    auto f = SafetensorsFile::Open(file);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_NE(f->Find(drop), nullptr) << drop;
    for (const TensorInfo& t : f->tensors()) {
      if (t.name == drop) continue;
      ASSERT_TRUE(writer.AddOwnedTensor(t.name, t.dtype, t.shape,
                                        std::vector<uint8_t>(t.bytes.begin(), t.bytes.end()))
                      .ok());
    }
    for (const auto& [k, v] : f->metadata()) writer.SetMetadata(k, v);
  }
  ASSERT_TRUE(writer.Write(file).ok());
}

class Df11BadFiles : public ::testing::Test {
 protected:
  // A BF16 model and its DF11 compression (vocab 64: small embedding, larger layers).
  void MakeModels() {
    auto r = RunCommand(kBin +
                        "df11 -q make-tiny --arch llama --layers 2 --hidden 64 --heads 4 "
                        "--kv-heads 2 --intermediate 512 --vocab 64 --seed 9 " +
                        dir_ + "/bf16");
    ASSERT_EQ(r.status, 0) << r.output;
    r = RunCommand(kBin + "df11 -q compress " + dir_ + "/bf16 " + dir_ + "/df11");
    ASSERT_EQ(r.status, 0) << r.output;
  }

  // Every command that reads DF11_DIR refuses it with exit 2 and a message holding `expect`;
  // none leaves an output directory.
  void ExpectRefusedEverywhere(const std::string& df11_dir, const std::string& expect) {
    const std::string out = dir_ + "/out";
    const std::string commands[] = {
        kBin + "df11 -q verify " + df11_dir + " " + dir_ + "/bf16",
        kBin + "df11 inspect " + df11_dir,
        kBin + "df11 -q decompress " + df11_dir + " " + out,
        kBin + "df11 -q shard " + df11_dir + " " + out + " --tp 2",
        kBin + "df11-run generate --model " + df11_dir + " --prompt hi -n 2",
    };
    for (const std::string& cmd : commands) {
      SCOPED_TRACE(cmd);
      CommandResult r = RunCommand(cmd);
      EXPECT_EQ(r.status, 2) << r.output;
      EXPECT_NE(r.output.find(expect), std::string::npos) << r.output;
      EXPECT_FALSE(fs::exists(out));
    }
  }

  // The names in dir_ (to see that nothing, not even a staging directory, was left).
  std::set<std::string> Entries() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.insert(e.path().filename());
    return names;
  }

  TempDir tmp_{"df11_bad_files"};
  const std::string dir_ = tmp_.path();
};

TEST_F(Df11BadFiles, UnitMissingAFieldIsRefusedByEveryCommand) {
  MakeModels();
  for (const char* field : kFields) {
    SCOPED_TRACE(field);
    const std::string copy = dir_ + "/broken";
    fs::copy(dir_ + "/df11", copy);
    Drop(copy + "/model_layers_1.safetensors", std::string("model.layers.1.") + field);
    ExpectRefusedEverywhere(copy, copy + "/model_layers_1.safetensors: DF11 unit model.layers.1 "
                                  "has no tensor model.layers.1." + field);
    fs::remove_all(copy);
  }
}

TEST_F(Df11BadFiles, MissingUnitFileIsRefusedByEveryCommand) {
  MakeModels();
  fs::remove(dir_ + "/df11/model_layers_1.safetensors");
  ExpectRefusedEverywhere(dir_ + "/df11",
                          "is missing (DF11 unit model.layers.1, kept in model_layers_1.safetensors)");
}

TEST_F(Df11BadFiles, FailedWritesLeaveNoOutputDirectory) {
  MakeModels();
  const std::set<std::string> before = Entries();
  // Writes past 100 KiB fail with EFBIG (SIGXFSZ ignored): each command below finishes some
  // small files first, then fails on a larger one.
  const std::string limit = "trap '' XFSZ; ulimit -f 200; ";
  const std::string commands[] = {
      kBin + "df11 -q make-tiny --arch llama --layers 1 --hidden 64 --intermediate 1024 "
             "--vocab 64 " + dir_ + "/out",
      kBin + "df11 -q compress " + dir_ + "/bf16 " + dir_ + "/out --pattern-dict "
             "'{\"model.layers.\\\\d+\": [\"mlp.gate_proj\"]}'",
      kBin + "df11 -q decompress " + dir_ + "/df11 " + dir_ + "/out",
      kBin + "df11 -q shard " + dir_ + "/df11 " + dir_ + "/out --tp 1",
  };
  for (const std::string& cmd : commands) {
    SCOPED_TRACE(cmd);
    CommandResult r = RunCommand(limit + cmd);
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir_ + "/out"));
    EXPECT_EQ(Entries(), before);
  }
  // A model no disk holds (hidden 2e6 x vocab 1e8: 800 TB) is refused before anything is written.
  CommandResult huge = RunCommand(kBin + "df11 -q make-tiny --hidden 2000000 --heads 2 "
                                         "--kv-heads 1 --vocab 100000000 " + dir_ + "/out");
  EXPECT_EQ(huge.status, 1) << huge.output;
  EXPECT_NE(huge.output.find(dir_ + "/out: needs 8"), std::string::npos) << huge.output;
  EXPECT_EQ(Entries(), before);
  // Without the limit the same commands succeed.
  CommandResult r = RunCommand(kBin + "df11 -q decompress " + dir_ + "/df11 " + dir_ + "/out");
  EXPECT_EQ(r.status, 0) << r.output;
}

// Every path a command reads, given a directory, a device that never ends or a missing path, is
// refused with exit 1 or 2 and a message naming it: no crash inside a parser, no endless read,
// no output directory left behind.
TEST_F(Df11BadFiles, EveryPathAFlagReadsIsRefusedByNameWhenItIsNotAFile) {
  MakeModels();
  const std::string out = dir_ + "/out", token = dir_ + "/token", in = dir_ + "/in.jsonl";
  test_support::WriteOwnerOnlyFile(token, "0123456789abcdef0123456789abcdef\n");
  std::ofstream(in) << R"({"custom_id": "a", "prompt": "x", "max_tokens": 2})" << "\n";
  const std::string bf16 = dir_ + "/bf16", df11 = dir_ + "/df11";
  const std::string run = kBin + "df11-run ";
  const std::string ctl = kBin + "df11-ctl --token-file " + token + " --coordinator 127.0.0.1:1 ";
  // BAD stands for the path under test.
  const std::string commands[] = {
      kBin + "df11 -q compress BAD " + out,
      kBin + "df11 -q compress --pattern-dict @BAD " + bf16 + " " + out,
      kBin + "df11 -q decompress BAD " + out,
      kBin + "df11 -q verify BAD " + bf16,
      kBin + "df11 -q verify " + df11 + " BAD",
      kBin + "df11 inspect BAD",
      kBin + "df11 -q make-tiny --vocab-from BAD " + out,
      kBin + "df11 -q shard BAD " + out + " --tp 2",
      kBin + "df11 tokenize --model BAD",
      run + "generate --model BAD --prompt hi -n 2",
      run + "generate --model " + df11 + " --input BAD --output " + dir_ + "/o.jsonl",
      run + "generate --model " + df11 + " --input " + in + " --output BAD",
      run + "generate --model " + df11 + " --prompt hi -n 2 --speculative draft:BAD",
      run + "generate --model " + df11 + " --prompt hi -n 2 --ew4-gemm-table BAD",
      run + "plan --model BAD",
      run + "plan --config BAD",
      run + "bench --model BAD --batch-sizes 1 --gen-tokens 2 --prompt-tokens 2",
      run + "logits --model BAD --out " + dir_ + "/logits --ids 1,2",
      run + "serve --model " + df11 + " --coordinator 127.0.0.1:1 --token-file BAD",
      kBin + "df11-coordinator --db " + dir_ + "/c.db --token-file BAD --port 0",
      kBin + "df11-ctl --token-file BAD list",
      ctl + "submit --input BAD",
  };
  fs::create_directory(dir_ + "/adir");
  for (const std::string& bad : {dir_ + "/adir", std::string("/dev/zero"), dir_ + "/missing"}) {
    for (std::string cmd : commands) {
      if (bad == dir_ + "/missing" && cmd.find("--output BAD") != std::string::npos) continue;
      cmd.replace(cmd.find("BAD"), 3, bad);
      SCOPED_TRACE(cmd);
      CommandResult r = RunCommand(cmd + " < /dev/null", /*limit_s=*/60);
      EXPECT_TRUE(r.status == 1 || r.status == 2) << "status " << r.status << "\n" << r.output;
      EXPECT_NE(r.output.find(bad), std::string::npos) << r.output;
      EXPECT_FALSE(fs::exists(out));
    }
  }
}

TEST_F(Df11BadFiles, TokenizerIdsAndTypesAreCheckedByName) {
  const std::string model = dir_ + "/tok";
  fs::create_directory(model);
  auto write_tokenizer = [&](const nlohmann::json& vocab_ab, const nlohmann::json& added_id) {
    nlohmann::json t = {
        {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", vocab_ab}}},
                   {"merges", {"a b"}}}},
        {"added_tokens", {{{"id", added_id}, {"content", "<s>"}, {"special", true}}}}};
    std::ofstream(model + "/tokenizer.json") << t.dump();
  };
  auto tokenize = [&] {
    return RunCommand("echo '{\"text\": \"ab\"}' | " + kBin + "df11 tokenize --model " + model);
  };
  write_tokenizer(2, 3);
  CommandResult r = tokenize();
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("[2]"), std::string::npos) << r.output;

  write_tokenizer(2147483647, 3);
  r = tokenize();
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(model + "/tokenizer.json: model.vocab[\"ab\"] = 2147483647"),
            std::string::npos) << r.output;
  write_tokenizer(2, 1000000000);
  r = tokenize();
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(model + "/tokenizer.json: added_tokens[0].id = 1000000000"),
            std::string::npos) << r.output;
  write_tokenizer(2, 2147483647);
  EXPECT_EQ(tokenize().status, 2);

  write_tokenizer(2, 3);
  std::ofstream(model + "/tokenizer_config.json") << R"({"bos_token": {"content": 5}})";
  r = tokenize();
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(model + "/tokenizer_config.json: \"bos_token\" must be"),
            std::string::npos) << r.output;
}

TEST_F(Df11BadFiles, GenerateRefusesTokenIdsBeyondTheModelsVocabulary) {
  // The Llama 3.1 tokenizer has ids up to 128255; a model with 1000 rows cannot embed them.
  CommandResult r = RunCommand(kBin +
                               "df11 -q make-tiny --arch llama --layers 1 --hidden 32 --heads 2 "
                               "--kv-heads 2 --intermediate 64 --vocab 1000 " +
                               dir_ + "/small");
  ASSERT_EQ(r.status, 0) << r.output;
  fs::copy_file(DF11_TOKENIZER_DIR "/llama-3.1/tokenizer.json", dir_ + "/small/tokenizer.json");
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/small --prompt hi -n 1");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(dir_ + "/small/tokenizer.json: added_tokens[255].id = 128255 is not "
                          "below the vocab_size 1000 of " + dir_ + "/small/config.json"),
            std::string::npos) << r.output;
  // An absurd id is refused while the tokenizer is read (it used to crash generate).
  auto t = nlohmann::json::parse(std::ifstream(dir_ + "/small/tokenizer.json"));
  t["added_tokens"][0]["id"] = 2147483647;
  std::ofstream(dir_ + "/small/tokenizer.json") << t.dump();
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/small --prompt hi -n 1");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("tokenizer.json: added_tokens[0].id = 2147483647: a token id must be"),
            std::string::npos) << r.output;
}

TEST_F(Df11BadFiles, TiedModelFromTheReferenceEncoderVerifiesAndBothFormsServe) {
  auto manifest = nlohmann::json::parse(std::ifstream(kTiedData + "/manifest.json"));
  std::string flags;
  for (const auto& f : manifest["make_tiny_flags"]) flags += " " + f.get<std::string>();
  CommandResult r = RunCommand(kBin + "df11 -q make-tiny" + flags + " " + dir_ + "/bf16");
  ASSERT_EQ(r.status, 0) << r.output;
  // The reference encoder stores lm_head (a copy of the embedding) for the tied model.
  const std::string reference = kTiedData + "/reference_df11";
  ASSERT_TRUE(fs::exists(reference + "/lm_head.safetensors"));
  r = RunCommand(kBin + "df11 -q verify " + reference + " " + dir_ + "/bf16");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("OK: 3 units"), std::string::npos) << r.output;
  // Ours stores it too; without it (older files) the model is still complete and served.
  r = RunCommand(kBin + "df11 -q compress " + dir_ + "/bf16 " + dir_ + "/ours");
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(fs::exists(dir_ + "/ours/lm_head.safetensors"));
  fs::copy(dir_ + "/ours", dir_ + "/ours_without");
  fs::remove(dir_ + "/ours_without/lm_head.safetensors");
  std::string logits[4];
  const std::string models[4] = {dir_ + "/bf16", reference, dir_ + "/ours",
                                 dir_ + "/ours_without"};
  for (int i = 0; i < 4; ++i) {
    r = RunCommand(kBin + "df11-run logits --model " + models[i] + " --ids 1,17,100,5 --out " +
                   dir_ + "/l" + std::to_string(i) + ".f32");
    ASSERT_EQ(r.status, 0) << models[i] << ": " << r.output;
    std::ifstream in(dir_ + "/l" + std::to_string(i) + ".f32", std::ios::binary);
    logits[i].assign(std::istreambuf_iterator<char>(in), {});
    ASSERT_FALSE(logits[i].empty());
    EXPECT_EQ(logits[i], logits[0]) << models[i] << " gives other logits than the BF16 model";
  }
  r = RunCommand(kBin + "df11 -q verify " + dir_ + "/ours " + dir_ + "/bf16");
  EXPECT_EQ(r.status, 0) << r.output;
  r = RunCommand(kBin + "df11 -q verify " + dir_ + "/ours_without " + dir_ + "/bf16");
  EXPECT_EQ(r.status, 0) << r.output;
}

}  // namespace
}  // namespace df11
