// SPDX-License-Identifier: Apache-2.0
// `mpirun -np N df11-run generate` as a user runs it: a JSONL batch through a tp 2 x pp 2 shard
// gives the same output file as one process on the DF11 model, and each way a job can be broken
// (wrong -np, a missing or corrupt rank file, a manifest that does not match the weights, a rank
// killed mid-run, an --output that is the --input) ends the whole job with a non-zero status,
// within a bounded time, with the message on stderr.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/command.h"
#include "tests/common/temp_files.h"
#include "tests/launcher/mpi_rank_pid.h"

namespace {

namespace fs = std::filesystem;
using df11::test_support::CommandResult;
using df11::test_support::RunCommandSeparateStderr;
using df11::test_support::TempDir;

const std::string kDf11 = std::string(DF11_BINARY_DIR) + "/launcher/df11";
const std::string kRun = std::string(DF11_BINARY_DIR) + "/launcher/df11-run";
const std::string kMpirun = DF11_MPIEXEC;
// Every failure must end the job well before this (measured per case).
constexpr double kFailBoundS = 30;
// Wall-clock cap on any command, so a hang fails the test instead of stalling ctest.
constexpr int kHardLimitS = 240;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The "df11-run: ..." lines of stderr.
std::vector<std::string> ErrorLines(const std::string& err) {
  std::vector<std::string> lines;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("df11-run: ", 0) == 0) lines.push_back(line);
  }
  return lines;
}

// Every one of `ranks` ranks printed the same single error line; returns it.
std::string SameFromEveryRank(const std::string& err, int ranks) {
  const std::vector<std::string> lines = ErrorLines(err);
  EXPECT_EQ(lines.size(), static_cast<size_t>(ranks)) << err;
  for (const auto& l : lines) EXPECT_EQ(l, lines.front()) << err;
  return lines.empty() ? "" : lines.front();
}

class Df11RunMpi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    tmp_.emplace("df11_run_mpi_test");
    dir_ = tmp_->path();
    CommandResult r = Sh(kDf11 +
                         " -q make-tiny --layers 4 --hidden 128 --heads 4 --kv-heads 2 "
                         "--intermediate 256 --vocab-from " DF11_TOKENIZER_DIR "/llama-3.1 " +
                         dir_ + "/m");
    ASSERT_EQ(r.status, 0) << r.err;
    r = Sh(kDf11 + " -q compress " + dir_ + "/m " + dir_ + "/m.df11");
    ASSERT_EQ(r.status, 0) << r.err;
    r = Sh(kDf11 + " -q shard " + dir_ + "/m.df11 " + dir_ + "/m.tp2pp2 --tp 2 --pp 2");
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static void TearDownTestSuite() { tmp_.reset(); }

  // Runs `cmd` with stdout and stderr apart, killed past the hard limit.
  static CommandResult Sh(const std::string& cmd) {
    return RunCommandSeparateStderr(cmd, kHardLimitS);
  }

  static std::string Mpirun(int np, const std::string& args) {
    return kMpirun + " --oversubscribe -np " + std::to_string(np) + " " + kRun + " " + args;
  }

  // A copy of the tp 2 x pp 2 shard to break.
  static std::string CopyShard(const std::string& name) {
    const std::string to = dir_ + "/" + name;
    fs::copy(dir_ + "/m.tp2pp2", to, fs::copy_options::recursive);
    return to;
  }

  static std::string WriteInput(const std::string& name, const std::vector<std::string>& lines) {
    const std::string path = dir_ + "/" + name;
    std::ofstream f(path);
    for (const auto& l : lines) f << l << "\n";
    return path;
  }

  // A small greedy batch and the failure a broken `model` dir gives under -np `np`.
  static CommandResult Generate(int np, const std::string& model) {
    const std::string in = WriteInput("fail.jsonl", {R"({"custom_id": "a", "prompt": "hello"})"});
    return Sh(Mpirun(np, "generate --model " + model + " --input " + in + " --output " + dir_ +
                             "/fail.out.jsonl -n 4 --threads 1"));
  }

  static std::optional<TempDir> tmp_;
  static std::string dir_;
};

std::optional<TempDir> Df11RunMpi::tmp_;
std::string Df11RunMpi::dir_;

TEST_F(Df11RunMpi, BatchMatchesOneProcess) {
  const std::string in = WriteInput(
      "batch.jsonl",
      {R"({"custom_id": "g1", "prompt": "The quick brown fox", "max_tokens": 12})",
       R"({"custom_id": "g2", "prompt": "Once upon a time there was a", "max_tokens": 20})",
       R"({"custom_id": "broken", "prompt": )",
       R"({"custom_id": "s1", "prompt": "Sampling needs logits", "temperature": 0.8, )"
       R"("top_p": 0.9, "seed": 42, "max_tokens": 16})",
       R"({"custom_id": "g3", "prompt": "x", "max_tokens": 9})"});
  // Two places for four requests: as sequences finish, waiting ones take their places (and
  // every rank frees the finished caches and makes the new ones).
  const std::string flags = " --input " + in + " -n 16 --threads 1 --batch-size 2";
  CommandResult one =
      Sh(kRun + " generate --model " + dir_ + "/m.df11 --output " + dir_ + "/one.jsonl" + flags);
  ASSERT_EQ(one.status, 0) << one.err;
  CommandResult mpi = Sh(
      Mpirun(4, "generate --model " + dir_ + "/m.tp2pp2 --output " + dir_ + "/mpi.jsonl" + flags));
  ASSERT_EQ(mpi.status, 0) << mpi.err;
  const std::string a = ReadFile(dir_ + "/one.jsonl"), b = ReadFile(dir_ + "/mpi.jsonl");
  EXPECT_EQ(a, b);
  // Five results, in the order they finished; the malformed line is an error, the others text.
  auto by_id = [](const std::string& text) {
    std::istringstream lines(text);
    std::string line;
    std::map<std::string, nlohmann::json> m;
    while (std::getline(lines, line)) {
      auto j = nlohmann::json::parse(line);
      m[j["custom_id"].get<std::string>()] = j;
    }
    return m;
  };
  auto results = by_id(b);
  ASSERT_EQ(results.size(), 5u) << b;
  EXPECT_TRUE(results["line-3"].contains("error")) << results["line-3"];
  EXPECT_EQ(results["g1"]["token_ids"].size(), 12u) << results["g1"];
  EXPECT_EQ(results["g2"]["token_ids"].size(), 20u) << results["g2"];
  EXPECT_EQ(results["s1"]["token_ids"].size(), 16u) << results["s1"];
  // Static batches (the next two start when both have finished) give every request the same
  // tokens.
  CommandResult fixed = Sh(Mpirun(4, "generate --model " + dir_ + "/m.tp2pp2 --output " + dir_ +
                                         "/static.jsonl --batching static" + flags));
  ASSERT_EQ(fixed.status, 0) << fixed.err;
  auto static_results = by_id(ReadFile(dir_ + "/static.jsonl"));
  ASSERT_EQ(static_results.size(), 5u);
  for (const auto& [id, r] : results) EXPECT_EQ(static_results[id], r) << id;
  // Prompts prefilled 3 tokens per step over the 4 ranks: the same tokens again.
  CommandResult chunked = Sh(Mpirun(4, "generate --model " + dir_ + "/m.tp2pp2 --output " + dir_ +
                                           "/chunked.jsonl --max-step-tokens 3" + flags));
  ASSERT_EQ(chunked.status, 0) << chunked.err;
  EXPECT_NE(chunked.err.find("steps: "), std::string::npos) << chunked.err;
  auto chunked_results = by_id(ReadFile(dir_ + "/chunked.jsonl"));
  ASSERT_EQ(chunked_results.size(), 5u);
  for (const auto& [id, r] : results) EXPECT_EQ(chunked_results[id], r) << id;
  std::printf("one process %.2f s, mpirun -np 4 (tp 2 x pp 2) %.2f s\n", one.seconds, mpi.seconds);
}

TEST_F(Df11RunMpi, SpeculativeDecodingGivesTheTokensOfOneProcessWithout) {
  // Prompts that repeat themselves (drafts found and accepted), plain ones, an opted-out and a
  // sampled one, through tp 2 x pp 2 with prompt-lookup drafts at batch 1 and 8 (the rejected
  // drafts leave every rank's cache and the sampling rank's history) and with a draft model.
  const std::string in = WriteInput(
      "spec.jsonl",
      {R"({"custom_id": "r1", "prompt": "the cat sat on the mat. the cat sat on the mat. the",)"
       R"( "max_tokens": 30})",
       R"({"custom_id": "r2", "prompt": "one two three one two three one two", "max_tokens": 24})",
       R"({"custom_id": "g1", "prompt": "Once upon a time there was a", "max_tokens": 20})",
       R"({"custom_id": "off", "prompt": "The quick brown fox", "max_tokens": 12,)"
       R"( "speculative": false})",
       R"({"custom_id": "s1", "prompt": "x y z x y z x y", "temperature": 0.8, "seed": 42,)"
       R"( "max_tokens": 16})"});
  const std::string flags = " --input " + in + " --threads 1";
  CommandResult one = Sh(kRun + " generate --model " + dir_ + "/m.df11 --output " + dir_ +
                         "/spec-one.jsonl --batch-size 8" + flags);
  ASSERT_EQ(one.status, 0) << one.err;
  auto by_id = [](const std::string& path) {
    std::istringstream lines(ReadFile(path));
    std::string line;
    std::map<std::string, nlohmann::json> m;
    while (std::getline(lines, line)) {
      auto j = nlohmann::json::parse(line);
      m[j["custom_id"].get<std::string>()] = j;
    }
    return m;
  };
  const auto want = by_id(dir_ + "/spec-one.jsonl");
  ASSERT_EQ(want.size(), 5u);
  for (const char* batch : {"1", "8"}) {
    const std::string out = dir_ + "/spec-mpi" + batch + ".jsonl";
    CommandResult mpi =
        Sh(Mpirun(4, "generate --model " + dir_ + "/m.tp2pp2 --output " + out + " --batch-size " +
                         batch + " --speculative prompt-lookup" + flags));
    ASSERT_EQ(mpi.status, 0) << mpi.err;
    const auto got = by_id(out);
    ASSERT_EQ(got.size(), 5u);
    for (const auto& [id, r] : want) {
      EXPECT_EQ(got.at(id)["token_ids"], r["token_ids"]) << "batch " << batch << " " << id;
    }
    EXPECT_GT(got.at("r1")["usage"]["accepted_draft_tokens"].get<int64_t>(), 0)
        << got.at("r1").dump();
    EXPECT_NE(mpi.err.find("drafted tokens accepted"), std::string::npos) << mpi.err;
  }  // The target itself as draft model, on the leader: every greedy draft accepted.
  const std::string out = dir_ + "/spec-draft.jsonl";
  CommandResult draft = Sh(Mpirun(4, "generate --model " + dir_ + "/m.tp2pp2 --output " + out +
                                         " --batch-size 8 --speculative draft:" + dir_ +
                                         "/m.df11" + flags));
  ASSERT_EQ(draft.status, 0) << draft.err;
  const auto got = by_id(out);
  ASSERT_EQ(got.size(), 5u);
  for (const auto& [id, r] : want) EXPECT_EQ(got.at(id)["token_ids"], r["token_ids"]) << id;
  const nlohmann::json& usage = got.at("g1")["usage"];
  EXPECT_GT(usage["draft_tokens"].get<int64_t>(), 0) << usage.dump();
  EXPECT_EQ(usage["accepted_draft_tokens"], usage["draft_tokens"]) << usage.dump();
}

// ew4 served three ways gives one output file: shards written as ew4 (`df11 shard --codec ew4`,
// from the DF11 and from the BF16 model) and DF11 shards transcoded at load (--weight-codec
// ew4, and auto, which every rank resolves to the same codec); on one process the BF16 and the
// DF11 model served as ew4 agree too.
TEST_F(Df11RunMpi, Ew4ShardsAndTranscodedShardsAgree) {
  for (const char* src : {"m.df11", "m"}) {
    CommandResult r = Sh(kDf11 + " -q shard " + dir_ + "/" + src + " " + dir_ + "/" + src +
                         ".ew4 --tp 2 --pp 2 --codec ew4");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(ReadFile(dir_ + "/" + src + ".ew4/manifest.json").find("\"codec\": \"ew4\""),
              std::string::npos);
  }
  const std::string in = WriteInput(
      "ew4.jsonl", {R"({"custom_id": "g1", "prompt": "The quick brown fox", "max_tokens": 10})",
                    R"({"custom_id": "g2", "prompt": "Once upon a time", "max_tokens": 12})"});
  const std::string flags = " --input " + in + " --threads 1 --batch-size 2";
  struct Run {
    std::string name, model, extra;
    int np;
  };
  const std::vector<Run> runs = {
      {"ew4_shards", "m.df11.ew4", "", 4},
      {"ew4_shards_from_bf16", "m.ew4", "", 4},
      {"df11_shards_as_ew4", "m.tp2pp2", " --weight-codec ew4", 4},
      {"df11_shards_auto", "m.tp2pp2", " --weight-codec auto", 4},
  };
  std::string first;
  for (const Run& run : runs) {
    SCOPED_TRACE(run.name);
    const std::string out = dir_ + "/" + run.name + ".jsonl";
    CommandResult r = Sh(Mpirun(run.np, "generate --model " + dir_ + "/" + run.model +
                                            " --output " + out + flags + run.extra));
    ASSERT_EQ(r.status, 0) << r.err;
    if (!run.extra.empty()) {
      EXPECT_NE(r.err.find("weights served as ew4"), std::string::npos) << r.err;
    }
    const std::string text = ReadFile(out);
    EXPECT_NE(text.find("\"g2\""), std::string::npos) << text;
    if (first.empty()) first = text;
    EXPECT_EQ(text, first);
  }
  std::string one;
  for (const char* model : {"m", "m.df11"}) {
    const std::string out = dir_ + "/one_ew4_" + model + ".jsonl";
    CommandResult r = Sh(kRun + " generate --model " + dir_ + "/" + model + " --output " + out +
                         flags + " --weight-codec ew4");
    ASSERT_EQ(r.status, 0) << r.err;
    if (one.empty()) one = ReadFile(out);
    EXPECT_EQ(ReadFile(out), one) << model;
  }
}

// The paged KV cache over the group: the leader plans block tables and every rank uses its
// ids; a shared prompt prefix found in the prefix cache (the sampler's repetition penalty still
// sees those tokens) and preemptions under a small pool give the tokens of one process.
TEST_F(Df11RunMpi, PagedKvCacheMatchesOneProcess) {
  std::string shared = "Rules:";
  for (int i = 0; i < 40; ++i) shared += " rule " + std::to_string(i) + ".";
  std::vector<std::string> lines;
  for (int i = 0; i < 6; ++i) {
    std::string line = R"({"custom_id": "p)" + std::to_string(i) + R"(", "prompt": ")" + shared +
                       " Question " + std::to_string(i) + R"(", "max_tokens": 40)";
    if (i % 2 == 1) {
      line += R"(, "temperature": 0.9, "repetition_penalty": 1.3, "seed": )" + std::to_string(i);
    }
    lines.push_back(line + "}");
  }
  const std::string in = WriteInput("paged.jsonl", lines);
  const std::string flags = " --input " + in + " --threads 1 --batch-size 4 --kv-tokens 288";
  CommandResult one = Sh(kRun + " generate --model " + dir_ + "/m.df11 --output " + dir_ +
                         "/paged-one.jsonl" + flags);
  ASSERT_EQ(one.status, 0) << one.err;
  CommandResult mpi = Sh(Mpirun(4, "generate --model " + dir_ + "/m.tp2pp2 --output " + dir_ +
                                       "/paged-mpi.jsonl" + flags));
  ASSERT_EQ(mpi.status, 0) << mpi.err;
  EXPECT_EQ(ReadFile(dir_ + "/paged-one.jsonl"), ReadFile(dir_ + "/paged-mpi.jsonl"));
  // Both found the shared prefix and ran out of blocks.
  for (const CommandResult* r : {&one, &mpi}) {
    const size_t at = r->err.find("KV cache: peak ");
    ASSERT_NE(at, std::string::npos) << r->err;
    const std::string line = r->err.substr(at, r->err.find('\n', at) - at);
    EXPECT_EQ(line.find("hit rate 0.0%"), std::string::npos) << line;
    EXPECT_EQ(line.find(" 0 preemptions"), std::string::npos) << line;
  }
}

// Gemma 3 (a window of 8 on 3 of 4 layers) under tp 2 x pp 2: the leader plans both block
// groups' tables and every rank uses them (the first stage holds only sliding-window layers,
// the second one of each); the output equals one process's, and both keep the sliding layers'
// blocks to their window, also with prompts prefilled in chunks (the same tokens).
TEST_F(Df11RunMpi, SlidingWindowBlockGroupMatchesOneProcess) {
  CommandResult r = Sh(kDf11 +
                       " -q make-tiny --arch gemma3_text --layers 4 --hidden 128 --heads 4 "
                       "--kv-heads 2 --intermediate 256 --sliding-window 8 --vocab-from " +
                       DF11_TOKENIZER_DIR "/gemma3 " + dir_ + "/g");
  ASSERT_EQ(r.status, 0) << r.err;
  r = Sh(kDf11 + " -q compress " + dir_ + "/g " + dir_ + "/g.df11");
  ASSERT_EQ(r.status, 0) << r.err;
  r = Sh(kDf11 + " -q shard " + dir_ + "/g.df11 " + dir_ + "/g.tp2pp2 --tp 2 --pp 2");
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> lines;
  for (int i = 0; i < 4; ++i) {
    lines.push_back(R"({"custom_id": "g)" + std::to_string(i) +
                    R"(", "prompt": "Shared rules one two three. Question )" +
                    std::to_string(i) + R"(", "max_tokens": 48})");
  }
  const std::string in = WriteInput("window.jsonl", lines);
  // Also with prompts prefilled in chunks of 4 tokens, their sliding blocks taken chunk by chunk
  // (the tables sent are shorter than the full-attention ones until a prompt is done).
  for (const std::string step : {"", " --max-step-tokens 4"}) {
    SCOPED_TRACE(step);
    const std::string flags = " --input " + in +
                              " --threads 1 --batch-size 4 --kv-block-tokens 4 --kv-tokens 4096" +
                              step;
    const std::string out = dir_ + (step.empty() ? "/window" : "/window-chunked");
    CommandResult one =
        Sh(kRun + " generate --model " + dir_ + "/g.df11 --output " + out + "-one.jsonl" + flags);
    ASSERT_EQ(one.status, 0) << one.err;
    CommandResult mpi = Sh(Mpirun(
        4, "generate --model " + dir_ + "/g.tp2pp2 --output " + out + "-mpi.jsonl" + flags));
    ASSERT_EQ(mpi.status, 0) << mpi.err;
    EXPECT_EQ(ReadFile(out + "-one.jsonl"), ReadFile(out + "-mpi.jsonl"));
    EXPECT_EQ(ReadFile(out + "-one.jsonl"), ReadFile(dir_ + "/window-one.jsonl"));
    std::string summaries[2];
    for (int k = 0; k < 2; ++k) {
      const std::string& err = (k == 0 ? one : mpi).err;
      const size_t at = err.find("KV cache: peak ");
      ASSERT_NE(at, std::string::npos) << err;
      summaries[k] = err.substr(at, err.find(';', at) - at);
      int full = 0, sliding = 0;
      ASSERT_EQ(std::sscanf(summaries[k].c_str(),
                            "KV cache: peak %d blocks in use (+ %d of the sliding-window layers)",
                            &full, &sliding),
                2)
          << summaries[k];
      EXPECT_LT(sliding, full) << summaries[k];
    }
    EXPECT_EQ(summaries[0], summaries[1]);
  }
}

TEST_F(Df11RunMpi, WrongWorldSize) {
  CommandResult r = Generate(3, dir_ + "/m.tp2pp2");
  EXPECT_NE(r.status, 0);
  EXPECT_LT(r.seconds, kFailBoundS);
  // Every rank says the same thing, naming both sizes.
  const std::string msg =
      "is laid out for 4 ranks (tp 2 x pp 2) but the job has 3; launch with -np 4";
  EXPECT_NE(SameFromEveryRank(r.err, 3).find(msg), std::string::npos) << r.err;
  std::printf("wrong -np: exit %d after %.2f s\n", r.status, r.seconds);
}

// Rank 0 checks the files before any rank loads its shard; every rank exits with its message.
TEST_F(Df11RunMpi, OutputThatIsTheInput) {
  const std::string in = WriteInput("same.jsonl", {R"({"custom_id": "a", "prompt": "Hi"})"});
  CommandResult r =
      Sh(Mpirun(4, "generate --model " + dir_ + "/m.tp2pp2 --input " + in + " --output " + in));
  EXPECT_NE(r.status, 0);
  EXPECT_LT(r.seconds, kFailBoundS);
  const std::string msg = "rank 0: Invalid argument: --output " + in + " is the same file as --input";
  EXPECT_NE(SameFromEveryRank(r.err, 4).find(msg), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(in), "{\"custom_id\": \"a\", \"prompt\": \"Hi\"}\n");
}

TEST_F(Df11RunMpi, MissingRankFile) {
  const std::string model = CopyShard("missing");
  fs::remove(model + "/rank-00003.safetensors");
  CommandResult r = Generate(4, model);
  EXPECT_NE(r.status, 0);
  EXPECT_LT(r.seconds, kFailBoundS);
  // Every rank reports rank 3's error (they agree before serving).
  const std::string msg = "rank 3: Not found: " + model + "/rank-00003.safetensors";
  EXPECT_NE(SameFromEveryRank(r.err, 4).find(msg), std::string::npos) << r.err;
  std::printf("missing rank file: exit %d after %.2f s\n", r.status, r.seconds);
}

TEST_F(Df11RunMpi, CorruptRankFile) {
  const std::string model = CopyShard("corrupt");
  const std::string file = model + "/rank-00001.safetensors";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const std::streamoff at = f.tellg() - std::streamoff(100);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(at);
    f.write(&c, 1);
  }
  CommandResult r = Generate(4, model);
  EXPECT_NE(r.status, 0);
  EXPECT_LT(r.seconds, kFailBoundS);
  const std::string msg = "rank 1: Corruption: " + file + ": xxh64 ";
  EXPECT_NE(SameFromEveryRank(r.err, 4).find(msg), std::string::npos) << r.err;
  std::printf("corrupt rank file: exit %d after %.2f s\n", r.status, r.seconds);
}

TEST_F(Df11RunMpi, ManifestConfigDoesNotMatchWeights) {
  const std::string model = CopyShard("mismatch");
  auto m = nlohmann::json::parse(ReadFile(model + "/manifest.json"));
  ASSERT_EQ(m["config"]["hidden_size"], 128);
  m["config"]["hidden_size"] = 192;
  std::ofstream(model + "/manifest.json") << m.dump(2);
  CommandResult r = Generate(4, model);
  EXPECT_EQ(r.status, 2) << "bad input";
  EXPECT_LT(r.seconds, kFailBoundS);
  // Every rank prints the first failing rank's message, which names its shard file, a weight
  // whose shape no longer fits and the shape the edited config implies.
  const std::string line = SameFromEveryRank(r.err, 4);
  EXPECT_NE(line.find("the weights do not match config.json"), std::string::npos) << r.err;
  EXPECT_NE(line.find("rank-0000"), std::string::npos) << r.err;
  EXPECT_NE(line.find(", 192]"), std::string::npos) << r.err;
  std::printf("manifest/config mismatch: exit %d after %.2f s\n", r.status, r.seconds);
}

// The class, on shards: the manifest's config says 3 layers where the weights hold 4, or asks for
// something this runtime does not compute; refused with exit 2 by every rank before loading.
TEST_F(Df11RunMpi, ManifestConfigLayersOrMathRefused) {
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {{{"num_hidden_layers", 3}}, "rank holds layers [2, 4) but num_hidden_layers is 3"},
      {{{"hidden_act", "relu"}}, "\"hidden_act\" is \"relu\""},
      {{{"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}}}}, "\"dynamic\""}};
  int i = 0;
  for (const auto& [patch, expect] : cases) {
    const std::string model = CopyShard("refused" + std::to_string(i++));
    auto m = nlohmann::json::parse(ReadFile(model + "/manifest.json"));
    m["config"].merge_patch(patch);
    std::ofstream(model + "/manifest.json") << m.dump(2);
    CommandResult r = Generate(4, model);
    EXPECT_EQ(r.status, 2) << patch.dump() << "\n" << r.err;
    EXPECT_NE(SameFromEveryRank(r.err, 4).find(expect), std::string::npos) << r.err;
  }
}

// The pid of the df11-run process that is rank `rank` of a `generate` job on `model`, or 0.
pid_t FindRank(const std::string& model, int rank) {
  return df11::FindMpiRankPid(kRun + " generate --model " + model, rank);
}

TEST_F(Df11RunMpi, RankKilledMidRun) {
  // Long enough that the job is still decoding when the rank dies (about 100 s undisturbed).
  std::vector<std::string> lines;
  for (int i = 0; i < 32; ++i) {
    lines.push_back(R"({"custom_id": "r)" + std::to_string(i) +
                    R"(", "prompt": "Tell me a long story", "max_tokens": 200})");
  }
  const std::string in = WriteInput("long.jsonl", lines);
  const std::string model = dir_ + "/m.tp2pp2";
  CommandResult r;
  std::thread job([&] {
    r = Sh(Mpirun(4, "generate --model " + model + " --input " + in + " --output " + dir_ +
                         "/long.out.jsonl --threads 1 --collective-timeout 20"));
  });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  pid_t victim = 0;
  for (int i = 0; i < 50 && victim == 0; ++i) {
    victim = FindRank(model, 2);
    if (victim == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const auto killed_at = std::chrono::steady_clock::now();
  if (victim != 0) kill(victim, SIGKILL);
  job.join();
  const double after_kill =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  ASSERT_NE(victim, 0) << "rank 2 was not running 2 s into the job: " << r.err;
  EXPECT_NE(r.status, 0) << r.err;
  EXPECT_LT(after_kill, 60.0);
  // The output file was not completed (the run did end early).
  std::istringstream done(ReadFile(dir_ + "/long.out.jsonl"));
  std::string line;
  int n = 0;
  while (std::getline(done, line)) ++n;
  EXPECT_LT(n, 32);
  EXPECT_NE(r.err.find("signal 9"), std::string::npos) << r.err;
  std::printf("rank 2 killed 2 s in: mpirun exit %d, %.2f s after the kill (job %.2f s)\n",
              r.status, after_kill, r.seconds);
}

}  // namespace
