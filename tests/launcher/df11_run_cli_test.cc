// SPDX-License-Identifier: Apache-2.0
// `df11-run generate` as a user runs it on one process: --prompt prints text and timings; a JSONL
// batch gives one result per line with per-line errors (malformed JSON, a prompt longer than the
// context, invalid UTF-8, wrong field types) while the other lines are served; a DF11 model
// generates exactly what its BF16 original does; missing or corrupt model files fail clearly;
// `bench` prints one JSON line per batch size and `logits` writes BF16 == DF11 bits, each
// refusing bad ids, batch sizes, devices, models and output paths by name. No request takes a run
// down: lines the sampler cannot serve, or whose KV cache no memory holds, get error lines naming
// the custom_id and the field while the others are served; bad numeric flags exit 2 naming the
// flag and its real bounds. `plan` refuses configs whose sizes overflow and contexts beyond the
// model's, and never calls 0 sequences a fit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>

#include "tests/common/command.h"
#include "tests/common/temp_files.h"

namespace {

using df11::test_support::RunCommand;
using df11::test_support::TempDir;

const std::string kBin = std::string(DF11_BINARY_DIR) + "/launcher/";

std::vector<nlohmann::json> ReadLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

class Df11RunCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_.emplace("df11_run_cli");
    dir_ = tmp_->path();
    // Small context so a long prompt overflows it.
    auto r = RunCommand(kBin +
                        "df11 -q make-tiny --arch llama --layers 2 --hidden 64 --heads 4 "
                        "--kv-heads 2 --intermediate 128 --vocab-from " DF11_TOKENIZER_DIR
                        "/llama-3.1 --seed 3 " +
                        dir_ + "/bf16");
    ASSERT_EQ(r.status, 0) << r.output;
    auto j = nlohmann::json::parse(std::ifstream(dir_ + "/bf16/config.json"));
    j["max_position_embeddings"] = 64;
    std::ofstream(dir_ + "/bf16/config.json") << j.dump(2);
    r = RunCommand(kBin + "df11 -q compress " + dir_ + "/bf16 " + dir_ + "/df11");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { tmp_.reset(); }
  static std::optional<TempDir> tmp_;
  static std::string dir_;
};
std::optional<TempDir> Df11RunCli::tmp_;
std::string Df11RunCli::dir_;

TEST_F(Df11RunCli, PromptPrintsTextAndTimings) {
  auto r =
      RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --prompt 'Hello there' -n 5");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("prefill:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos);
  EXPECT_NE(r.output.find("peak memory"), std::string::npos);
  EXPECT_NE(r.output.find("steps: 1 prefill, 4 decode"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("KV cache: peak 1 blocks in use; prefix cache hit rate 0.0% (0 of "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("; 5 tokens generated"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("0 preemptions (0 generated tokens recomputed)"), std::string::npos)
      << r.output;
  // A step budget of 2 tokens prefills the prompt in chunks: more steps, the same text.
  auto run = [&](const std::string& flags, std::string* log) {
    const std::string err = dir_ + "/steps.log";
    auto out = RunCommand("(" + kBin + "df11-run generate --model " + dir_ +
                          "/df11 --prompt 'Hello there, how are you doing' -n 5 " + flags + " 2>" +
                          err + ")");
    EXPECT_EQ(out.status, 0) << out.output;
    std::ifstream f(err);
    *log = std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return out.output;
  };
  std::string whole_log, chunked_log;
  const std::string whole = run("", &whole_log);
  const std::string chunked = run("--max-step-tokens 2 --batch-size 2", &chunked_log);
  EXPECT_FALSE(whole.empty());
  EXPECT_EQ(chunked, whole);
  EXPECT_NE(whole_log.find("steps: 1 prefill, 4 decode"), std::string::npos) << whole_log;
  EXPECT_EQ(chunked_log.find("steps: 1 prefill"), std::string::npos) << chunked_log;
}

TEST_F(Df11RunCli, BatchServesGoodLinesAndReportsBadOnes) {
  const std::string in = dir_ + "/in.jsonl";
  {
    std::ofstream f(in);
    f << R"({"custom_id":"ok","prompt":"The sky is","max_tokens":6})" << "\n";
    f << "{this is not json\n";
    f << R"({"custom_id":"long","prompt":")";
    for (int i = 0; i < 200; ++i) f << "word ";
    f << R"("})" << "\n";
    f << R"({"custom_id":"utf8","prompt":")" << "\xff\xfe" << R"("})" << "\n";
    f << R"({"custom_id":"type","prompt":"x","max_tokens":"many"})" << "\n";
    f << R"({"custom_id":"nofield"})" << "\n";
    f << R"({"custom_id":"seeded","prompt":"Once","max_tokens":5,"temperature":1.0,"seed":11})" << "\n";
    f << R"({"custom_id":"openai","method":"POST","url":"/v1/completions","body":{"prompt":"Hi","max_tokens":3}})" << "\n";
  }
  auto r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --input " + in +
                      " --output " + dir_ + "/out.jsonl --batch-size 3");
  ASSERT_EQ(r.status, 0) << r.output;
  auto lines = ReadLines(dir_ + "/out.jsonl");
  ASSERT_EQ(lines.size(), 8u);
  // Lines come in the order requests finish (the input's own errors first): find them by id.
  std::map<std::string, nlohmann::json> by_id;
  for (const auto& l : lines) by_id[l["custom_id"].get<std::string>()] = l;
  ASSERT_EQ(by_id.size(), 8u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(lines[i].contains("error")) << i << ": " << lines[i];
  // The shortest request, admitted last, finished first.
  EXPECT_EQ(lines[5]["custom_id"], "openai");
  EXPECT_EQ(by_id["ok"]["token_ids"].size(), 6u);
  EXPECT_EQ(by_id["ok"]["finish_reason"], "length");
  EXPECT_EQ(by_id["ok"]["usage"]["completion_tokens"], 6);
  EXPECT_NE(by_id["line-2"]["error"].get<std::string>().find("line 2"), std::string::npos);
  EXPECT_NE(by_id["long"]["error"].get<std::string>().find("context"), std::string::npos)
      << by_id["long"];
  // A line that is not JSON is named by its number.
  EXPECT_NE(by_id["line-4"]["error"].get<std::string>().find("UTF-8"), std::string::npos)
      << by_id["line-4"];
  EXPECT_NE(by_id["type"]["error"].get<std::string>().find("max_tokens"), std::string::npos);
  EXPECT_NE(by_id["nofield"]["error"].get<std::string>().find("prompt"), std::string::npos);
  EXPECT_EQ(by_id["seeded"]["token_ids"].size(), 5u);
  EXPECT_EQ(by_id["openai"]["token_ids"].size(), 3u);

  // The seeded request alone gives the same tokens as inside the batch.
  std::ofstream(dir_ + "/one.jsonl")
      << R"({"custom_id":"seeded","prompt":"Once","max_tokens":5,"temperature":1.0,"seed":11})" << "\n";
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --input " + dir_ +
                 "/one.jsonl --output " + dir_ + "/one_out.jsonl");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(ReadLines(dir_ + "/one_out.jsonl")[0]["token_ids"], by_id["seeded"]["token_ids"]);

  // The BF16 original generates exactly the same.
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/bf16 --input " + in + " --output " +
                 dir_ + "/out_bf16.jsonl --batch-size 3");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(ReadLines(dir_ + "/out_bf16.jsonl"), lines);
}

TEST_F(Df11RunCli, BadModelsAndFlags) {
  auto r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/nope --prompt hi");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("nope"), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11");
  EXPECT_NE(r.status, 0);
  r = RunCommand(kBin + "df11-run generate --model " + dir_ +
                 "/df11 --prompt \"$(printf 'bad \\377 byte')\"");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("0xFF"), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --prompt hi --temp -1");
  EXPECT_NE(r.status, 0);
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --input " + dir_ +
                 "/missing.jsonl --output " + dir_ + "/o.jsonl");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("missing.jsonl"), std::string::npos) << r.output;
  // Batching flags: each refused naming itself.
  for (const char* flag : {"--batching dynamic", "--kv-tokens -5", "--batch-size 0",
                           "--max-step-tokens 0"}) {
    r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --prompt hi " + flag);
    EXPECT_NE(r.status, 0) << flag << ": " << r.output;
    EXPECT_NE(r.output.find(std::string(flag).substr(0, std::string(flag).find(' '))),
              std::string::npos)
        << r.output;
  }
  // A batch that cannot fit one step: refused before loading anything, naming both flags.
  r = RunCommand(kBin + "df11-run generate --model " + dir_ +
                 "/df11 --prompt hi --batch-size 16 "
                 "--max-step-tokens 8");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--batch-size 16 is larger than --max-step-tokens 8"), std::string::npos)
      << r.output;
  r = RunCommand(kBin + "df11-run bench --model " + dir_ + "/df11 --decode-grid-fraction 1.5");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("--decode-grid-fraction"), std::string::npos) << r.output;
  // A kernel table with a bad line, or none at the path: refused naming the file and line.
  {
    std::ofstream(dir_ + "/table.txt") << "# rows cols batch path us\n4096 4096 16 ew4_tc 20\n"
                                       << "4096 4096 16 wgmma 3\n";
    r = RunCommand(kBin + "df11-run bench --model " + dir_ + "/df11 --ew4-gemm-table " + dir_ +
                   "/table.txt");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--ew4-gemm-table: " + dir_ + "/table.txt:3: PATH must be ew4_gemv, "
                            "ew4_tc, ew4_decode_cublas or cublas_bf16, got wgmma"),
              std::string::npos)
        << r.output;
    r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --prompt hi -n 2 " +
                   "--ew4-gemm-table " + dir_ + "/absent.txt");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--ew4-gemm-table: " + dir_ + "/absent.txt: no such file"),
              std::string::npos)
        << r.output;
    std::ofstream(dir_ + "/good.txt") << "4096 4096 16 ew4_tc 20\n";
    r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --prompt hi -n 2 " +
                   "--ew4-gemm-table " + dir_ + "/good.txt");
    EXPECT_EQ(r.status, 0) << r.output;
  }
  // A prompt that can never fit the KV budget is an error naming the figures (the CPU's pool
  // holds whole blocks, at least one).
  r = RunCommand(kBin + "df11-run generate --model " + dir_ +
                 "/df11 --prompt hi -n 20 --kv-tokens 8");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("KV budget of 16 tokens (1 block of 16)"), std::string::npos)
      << r.output;
  // A corrupt unit file.
  std::filesystem::copy(dir_ + "/df11", dir_ + "/broken", std::filesystem::copy_options::recursive);
  std::filesystem::resize_file(dir_ + "/broken/model_layers_1.safetensors", 100);
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/broken --prompt hi");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("model_layers_1.safetensors"), std::string::npos) << r.output;
  // An architecture this build does not run.
  std::filesystem::copy(dir_ + "/bf16", dir_ + "/gpt", std::filesystem::copy_options::recursive);
  auto j = nlohmann::json::parse(std::ifstream(dir_ + "/gpt/config.json"));
  j["architectures"] = {"GPT2LMHeadModel"};
  std::ofstream(dir_ + "/gpt/config.json") << j.dump();
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/gpt --prompt hi");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("GPT2LMHeadModel"), std::string::npos) << r.output;
}

TEST_F(Df11RunCli, NoRequestTakesTheRunDown) {
  const std::string in = dir_ + "/hostile.jsonl";
  std::ofstream(in) << R"({"custom_id":"ok1","prompt":"The sky is","max_tokens":4})" "\n"
                    << R"({"custom_id":"inf","prompt":"x","temperature":1e999})" "\n"
                    << R"({"temperature":0.7,"top_p":0,"custom_id":"p0","prompt":"x"})" "\n"
                    << R"({"custom_id":"rp","prompt":"x","repetition_penalty":0})" "\n"
                    << R"({"custom_id":"k","body":{"prompt":"x","top_k":-1}})" "\n"
                    << R"({"custom_id":"ok2","prompt":"Once","max_tokens":3,"temperature":1.0,"seed":5})"
                    << "\n";
  auto r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/df11 --input " + in +
                      " --output " + dir_ + "/hostile.out.jsonl --batch-size 2");
  ASSERT_EQ(r.status, 0) << r.output;
  std::map<std::string, nlohmann::json> by_id;
  for (const auto& l : ReadLines(dir_ + "/hostile.out.jsonl")) by_id[l["custom_id"]] = l;
  ASSERT_EQ(by_id.size(), 6u) << r.output;
  EXPECT_EQ(by_id["ok1"]["token_ids"].size(), 4u) << by_id["ok1"];
  EXPECT_EQ(by_id["ok2"]["token_ids"].size(), 3u) << by_id["ok2"];
  const std::map<std::string, std::string> errors = {
      {"inf", "line 2: \"temperature\" = 1e999: out of range"},
      {"p0", "line 3: \"top_p\" = 0: expected a number in (0, 1]"},
      {"rp", "line 4: \"repetition_penalty\" = 0: expected a finite number > 0"},
      {"k", "line 5: \"top_k\" = -1: expected an integer >= 0"}};
  for (const auto& [id, text] : errors) {
    EXPECT_NE(by_id[id].value("error", "").find(text), std::string::npos) << by_id[id];
  }

  // A context no memory holds: max_tokens 1e9 is an error line for its request, not an
  // out-of-memory death that loses the batch.
  std::filesystem::copy(dir_ + "/bf16", dir_ + "/long", std::filesystem::copy_options::recursive);
  auto j = nlohmann::json::parse(std::ifstream(dir_ + "/long/config.json"));
  j["max_position_embeddings"] = 1 << 30;
  std::ofstream(dir_ + "/long/config.json") << j.dump(2);
  std::ofstream(dir_ + "/huge.jsonl")
      << R"({"custom_id":"huge","prompt":"x","max_tokens":1000000000})" "\n"
      << R"({"custom_id":"fine","prompt":"The sky is","max_tokens":4})" "\n";
  r = RunCommand(kBin + "df11-run generate --model " + dir_ + "/long --input " + dir_ +
                 "/huge.jsonl --output " + dir_ + "/huge.out.jsonl");
  ASSERT_EQ(r.status, 0) << r.output;
  by_id.clear();
  for (const auto& l : ReadLines(dir_ + "/huge.out.jsonl")) by_id[l["custom_id"]] = l;
  ASSERT_EQ(by_id.size(), 2u);
  EXPECT_EQ(by_id["fine"]["token_ids"].size(), 4u) << by_id["fine"];
  EXPECT_NE(by_id["huge"].value("error", "").find("more than the KV budget of"), std::string::npos)
      << by_id["huge"];
  EXPECT_NE(r.output.find("host memory plan:"), std::string::npos) << r.output;
}

// Each numeric flag: a bad value exits 2 naming the flag and what it takes, in numbers a person
// reads (no "0.000000 to 1.79769e+308").
TEST_F(Df11RunCli, NumericFlagsSayTheirRange) {
  const std::string gen = kBin + "df11-run generate --model " + dir_ + "/df11 --prompt hi ";
  const std::pair<std::string, std::string> cases[] = {
      {gen + "--temp nan", "--temp: 'nan' is not a finite number"},
      {gen + "--temp inf", "--temp: 'inf' is not a finite number"},
      {gen + "--temp -1", "--temp -1: expected a finite number >= 0"},
      {gen + "--top-p 0", "--top-p 0: expected a number in (0, 1]"},
      {gen + "--min-p 2", "--min-p 2: expected a number in [0, 1]"},
      {gen + "--repeat-penalty 0", "--repeat-penalty 0: expected a finite number > 0"},
      {gen + "-n 0", "--max-tokens: '0' is not an integer >= 1"},
      {gen + "-n 1.5", "--max-tokens: '1.5' is not an integer >= 1"},
      {gen + "--top-k -2", "--top-k: '-2' is not an integer in [0, 2147483647]"},
      {gen + "--batch-size 0", "--batch-size: '0' is not an integer >= 1"},
      {gen + "--max-step-tokens 0", "--max-step-tokens: '0' is not an integer in [1, 16777216]"},
      {gen + "--kv-tokens -5", "--kv-tokens: '-5' is not an integer >= 0"},
      {gen + "--kv-block-tokens 0", "--kv-block-tokens: '0' is not an integer in [1, 4096]"},
      {gen + "--seed -1", "--seed: '-1' is not an integer in [0, 2^64)"},
      {gen + "--collective-timeout 0", "--collective-timeout: '0' is not a number in (0, 1000000]"},
      {kBin + "df11-run plan --model x --gpu-memory nan",
       "--gpu-memory: 'nan' is not a number in (0, 1000000]"},
      {gen + "--gpu-memory-fraction 2", "--gpu-memory-fraction: '2' is not a number in [0.01, 1]"},
      {kBin + "df11-run plan --model x --tp 0", "--tp: '0' is not an integer in [1, 1048576]"},
      {kBin + "df11-run plan --model x --context -1", "--context: '-1' is not an integer >= 0"},
      {kBin + "df11-run bench --model x --gen-tokens 0", "--gen-tokens: '0' is not an integer >= 1"},
      {kBin + "df11 --threads -1 inspect x", "--threads: '-1' is not an integer in [0, 65536]"},
      {kBin + "df11 shard a b --tp 0", "--tp: '0' is not an integer in [1, 65536]"},
      {kBin + "df11-ctl --token-file " + dir_ + "/bf16/config.json --timeout nan list",
       "--timeout: 'nan' is not a number in [0.001, 86400]"},
      {kBin + "df11-ctl --token-file " + dir_ + "/bf16/config.json list --limit -1",
       "--limit: '-1' is not an integer in [0, 2147483647]"},
      {kBin + "df11-coordinator --db x --token-file " + dir_ + "/bf16/config.json --port 70000",
       "--port: '70000' is not an integer in [0, 65535]"},
      {kBin + "df11-coordinator --db x --token-file " + dir_ + "/bf16/config.json --lease-seconds 0",
       "--lease-seconds: '0' is not an integer in [1, 2147483647]"},
  };
  for (const auto& [cmd, message] : cases) {
    auto r = RunCommand(cmd);
    EXPECT_EQ(r.status, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << cmd << "\n" << r.output;
    EXPECT_EQ(r.output.find("1797"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find(".000000"), std::string::npos) << r.output;
  }
}

}  // namespace

namespace {

// Sizes whose products overflow 64 bits are refused, not printed as a negative parameter count;
// a context beyond max_position_embeddings is refused; a cache that holds no whole sequence of
// the context does not fit.
TEST(Df11RunPlan, AbsurdConfigsAndContextsAreRefused) {
  TempDir tmp("df11_run_plan");
  const std::string dir = tmp.path();
  const std::string models = std::string(DF11_TEST_DATA_DIR) + "/../../configs/models";
  auto j = nlohmann::json::parse(std::ifstream(models + "/llama-3.1-405b/config.json"));
  j["hidden_size"] = 2147483520;
  j["intermediate_size"] = 2147483647;
  j["num_hidden_layers"] = 65536;
  std::ofstream(dir + "/config.json") << j.dump(2);
  auto r = RunCommand(kBin + "df11-run plan --model " + dir);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("parameter count does not fit a 64-bit integer"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("parameters,"), std::string::npos) << r.output;

  const std::string model = " --model " + models + "/llama-3.1-405b --tp 8";
  for (const char* context : {"9000000000000000000", "131073"}) {
    r = RunCommand(kBin + "df11-run plan" + model + " --context " + context);
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find(std::string("--context ") + context +
                            " is more than the model supports: expected 0 (the model's maximum) "
                            "to max_position_embeddings 131072"),
              std::string::npos)
        << r.output;
  }
  // The whole 131072-token context: ~61 k tokens of cache hold no sequence of it.
  r = RunCommand(kBin + "df11-run plan" + model);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("0 sequences of 131072 tokens"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("verdict: DOES NOT FIT (the KV cache holds less than one sequence"),
            std::string::npos)
      << r.output;
  r = RunCommand(kBin + "df11-run plan" + model + " --context 32768");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("verdict: FITS"), std::string::npos) << r.output;
}

TEST(Df11RunPlan, Llama405bFitsOneNodeOnlyCompressed) {
  const std::string configs = std::string(DF11_TEST_DATA_DIR) + "/../../configs";
  auto r =
      RunCommand(kBin + "df11-run plan --config " + configs + "/llama-3.1-405b-8xh100-tp8.yaml");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("verdict: FITS"), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run plan --model " + configs +
                 "/models/llama-3.1-405b --tp 8 --bf16");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("DOES NOT FIT"), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run plan --model " + configs +
                 "/models/llama-3.1-405b --tp 8 "
                 "--max-step-tokens 0");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("--max-step-tokens"), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run plan --model " + configs + "/models/llama-3.1-405b --tp 3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--tp 3"), std::string::npos) << r.output;
}

// Gemma 3 27B DF11 on one 80 GB GPU at 32k context, and 12B on 2 x 24 GB (TP 2): the plan prints
// the window saving, more sequences (and KV tokens) with it than without.
TEST(Df11RunPlan, Gemma3PrintsTheWindowSaving) {
  const std::string models = std::string(DF11_TEST_DATA_DIR) + "/../../configs/models";
  for (const std::string args : {"/gemma-3-27b-it --weight-codec df11 --context 32768",
                                 "/gemma-3-12b-it --weight-codec df11 --context 32768 --tp 2 "
                                 "--gpu-memory 24"}) {
    SCOPED_TRACE(args);
    auto r = RunCommand(kBin + "df11-run plan --model " + models + args);
    EXPECT_EQ(r.status, 0) << r.output;
    std::smatch m;
    const std::regex saving(
        "with the saving (\\d+) sequences? of 32768 tokens\\s+\\((\\d+) KV tokens\\), without "
        "it (\\d+) \\((\\d+) KV tokens\\)");
    ASSERT_TRUE(std::regex_search(r.output, m, saving)) << r.output;
    EXPECT_GT(std::stoll(m[1]), std::stoll(m[3])) << r.output;
    EXPECT_GT(std::stoll(m[2]), std::stoll(m[4])) << r.output;
    EXPECT_GE(std::stoll(m[3]), 1) << r.output;
  }
}

}  // namespace

namespace {

// The benchmarking and logits subcommands on the CPU backend, and their bad input.
// DF11_CPU_LEVEL lowers the kernels' instruction set (the level used is printed at start); a
// value that names no level is bad input.
TEST_F(Df11RunCli, CpuLevelVariable) {
  const std::string bench = kBin + "df11-run bench --model " + dir_ +
                            "/bf16 --batch-sizes 1 --prompt-tokens 2 --gen-tokens 2 --threads 1";
  auto r = RunCommand("DF11_CPU_LEVEL=scalar " + bench);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("cpu kernels: scalar"), std::string::npos) << r.output;
  r = RunCommand("DF11_CPU_LEVEL=avx-512 " + bench);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("DF11_CPU_LEVEL='avx-512': expected one of scalar, avx2, avx512, "
                          "avx512bf16"),
            std::string::npos)
      << r.output;
}

TEST_F(Df11RunCli, BenchAndLogitsSubcommands) {
  auto r = RunCommand(kBin + "df11-run bench --model " + dir_ + "/df11 --batch-sizes 1,2 " +
                      "--prompt-tokens 4 --gen-tokens 3 --threads 1");
  ASSERT_EQ(r.status, 0) << r.output;
  int lines = 0;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("{\"bench\":\"generate\"", 0) != 0) continue;
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["format"], "df11");
    EXPECT_EQ(j["batch"], lines == 0 ? 1 : 2);
    EXPECT_GT(j["decode_tok_s"].get<double>(), 0.0);
    ++lines;
  }
  EXPECT_EQ(lines, 2) << r.output;

  // Logits of BF16 and DF11 are bit-identical (both decode to the same weights).
  for (const char* fmt : {"bf16", "df11"}) {
    r = RunCommand(kBin + "df11-run logits --model " + dir_ + "/" + fmt + " --ids 1,2,3 --out " +
                   dir_ + "/" + fmt + ".f32 --threads 1");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  const auto size = std::filesystem::file_size(dir_ + "/df11.f32");
  EXPECT_EQ(size % (3 * 4), 0u);
  EXPECT_GT(size, 0u);
  EXPECT_EQ(RunCommand("cmp " + dir_ + "/bf16.f32 " + dir_ + "/df11.f32").status, 0);

  // Bad input: an id outside the vocabulary, a non-number, a zero batch, a missing model, an
  // unwritable output, an unknown device.
  r = RunCommand(kBin + "df11-run logits --model " + dir_ + "/df11 --ids 1,99999999 --out " + dir_ +
                 "/x.f32");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--ids: 99999999 is outside the vocabulary"), std::string::npos)
      << r.output;
  r = RunCommand(kBin + "df11-run logits --model " + dir_ + "/df11 --ids 1,x --out " + dir_ +
                 "/x.f32");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--ids"), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run bench --model " + dir_ + "/df11 --batch-sizes 0");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--batch-sizes"), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run bench --model " + dir_ + "/nope");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find(dir_ + "/nope"), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run logits --model " + dir_ +
                 "/df11 --ids 1 --out /nonexistent-dir/x.f32");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("cannot write --out /nonexistent-dir/x.f32"), std::string::npos)
      << r.output;
  // No GPU here (or a build without CUDA): a clear refusal naming the flag, not a crash.
  r = RunCommand(kBin + "df11-run logits --model " + dir_ + "/df11 --ids 1 --device cuda --out " +
                 dir_ + "/x.f32");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--device cuda: "), std::string::npos) << r.output;
  r = RunCommand(kBin + "df11-run bench --model " + dir_ + "/df11 --device tpu");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--device"), std::string::npos) << r.output;
}

}  // namespace
