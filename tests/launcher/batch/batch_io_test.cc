// SPDX-License-Identifier: Apache-2.0
// Batch lines and result files: a field of the wrong JSON type or value, at every field, is an
// error for that line naming the field (never an exception or an abort; "speculative" is a
// boolean); the sampling fields accept exactly what the sampler serves; a number no double holds
// (1e999) names its field and keeps the line's custom_id. The output file is a locked regular
// file that is not the input (by any path) and holds nothing but results (a foreign file is
// refused, untouched), and a write error leaves it holding whole lines only.
#include "launcher/batch/batch_io.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "tests/common/temp_files.h"

namespace df11 {
namespace {

namespace fs = std::filesystem;

class BatchLines : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = Tokenizer::FromDirectory(std::string(DF11_TOKENIZER_DIR) + "/llama-3.1");
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tokenizer_ = new Tokenizer(std::move(t).value());
    auto c = ChatTemplate::FromDirectory(std::string(DF11_TOKENIZER_DIR) + "/llama-3.1");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    chat_ = new ChatTemplate(std::move(c).value());
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete chat_;
  }
  static BatchItem Parse(const std::string& line) {
    return ParseBatchLine(line, 7, BatchDefaults{}, *tokenizer_, chat_);
  }
  static Tokenizer* tokenizer_;
  static ChatTemplate* chat_;
};
Tokenizer* BatchLines::tokenizer_ = nullptr;
ChatTemplate* BatchLines::chat_ = nullptr;

// Each field of a request, set to values of every JSON type and to edge numbers: the line is
// either a request the sampler serves or an error naming the line and the field.
TEST_F(BatchLines, EveryFieldOfEveryTypeIsServedOrNamed) {
  const std::vector<std::string> fields = {
      "custom_id", "prompt", "messages", "max_tokens", "temperature", "top_p", "top_k",
      "min_p", "repetition_penalty", "seed", "stop", "speculative", "body"};
  const std::vector<std::string> values = {
      "null", "true", "\"x\"", "\"\"", "[]", "[1]", "[\"a\"]", "{}", "{\"a\":1}", "0", "-1", "1",
      "0.5", "1.5", "2", "-0.0", "1e9", "1e12", "1e300", "-1e300", "1e999", "-1e999",
      "18446744073709551615", "18446744073709551616", "-9223372036854775809", "3e38", "4e38",
      "1e-50"};
  int served = 0, refused = 0;
  for (const std::string& field : fields) {
    for (const std::string& value : values) {
      for (bool nested : {false, true}) {
        // The field first, so that a custom_id set after it is still reported.
        const bool text = field == "prompt" || field == "messages";
        const std::string request =
            "\"" + field + "\": " + value + (text ? "" : ", \"prompt\": \"hi\"");
        const std::string line =
            nested ? "{\"body\": {" + request + "}, \"custom_id\": \"c\"}"
                   : "{" + request + (field == "custom_id" ? "" : ", \"custom_id\": \"c\"") + "}";
        BatchItem item;
        ASSERT_NO_THROW(item = Parse(line)) << line;
        if (item.request) {
          ++served;
          EXPECT_EQ(InvalidSamplingField(item.request->sampling, nullptr), SamplingField::kNone)
              << line;
          EXPECT_GE(item.request->max_tokens, 1) << line;
          EXPECT_FALSE(item.request->prompt.empty()) << line;
          continue;
        }
        ++refused;
        EXPECT_EQ(item.error.rfind("line 7: ", 0), 0u) << line << " -> " << item.error;
        if (field != "body" && field != "custom_id") {
          EXPECT_NE(item.error.find(field), std::string::npos) << line << " -> " << item.error;
        }
        if (field != "custom_id" && item.error.find("not valid JSON") == std::string::npos) {
          EXPECT_EQ(item.custom_id, "c") << line << " -> " << item.error;
        }
      }
    }
  }
  EXPECT_GT(served, 50);
  EXPECT_GT(refused, 150);
}

TEST_F(BatchLines, SpeculativeIsABooleanThatTurnsDraftsOff) {
  EXPECT_TRUE(Parse(R"({"custom_id": "c", "prompt": "hi"})").request->speculative);
  EXPECT_TRUE(Parse(R"({"custom_id": "c", "prompt": "hi", "speculative": true})")
                  .request->speculative);
  EXPECT_FALSE(Parse(R"({"custom_id": "c", "prompt": "hi", "speculative": false})")
                   .request->speculative);
  EXPECT_FALSE(Parse(R"({"custom_id": "c", "body": {"prompt": "hi", "speculative": false}})")
                   .request->speculative);
  const BatchItem bad = Parse(R"({"custom_id": "c", "prompt": "hi", "speculative": "off"})");
  EXPECT_FALSE(bad.request);
  EXPECT_EQ(bad.error, "line 7: \"speculative\" = \"off\": expected true or false (false: no "
                       "drafted tokens)");
}

TEST_F(BatchLines, SamplingFieldsAcceptExactlyWhatTheSamplerServes) {
  struct Case {
    const char* json;
    const char* error;  // "" when served
  };
  const Case cases[] = {
      {R"("temperature": 0.7, "top_p": 0)", "\"top_p\" = 0: expected a number in (0, 1] (1: off)"},
      {R"("temperature": 1e999)",
       "\"temperature\" = 1e999: out of range (a double holds at most 1.8e308)"},
      {R"("temperature": 1e300)",
       "\"temperature\" = 1e+300: out of range (a float holds at most 3.4e38)"},
      {R"("temperature": -0.5)", "\"temperature\" = -0.5: expected a finite number >= 0 (0: greedy)"},
      {R"("repetition_penalty": 0)",
       "\"repetition_penalty\" = 0: expected a finite number > 0 (1: off)"},
      {R"("min_p": 1.01)", "\"min_p\" = 1.01: expected a number in [0, 1] (0: off)"},
      {R"("top_k": -1)", "\"top_k\" = -1: expected an integer >= 0 (0: off)"},
      {R"("top_k": 2.5)", "\"top_k\" = 2.5: expected a 32-bit integer"},
      {R"("top_k": 3000000000)", "\"top_k\" = 3000000000: expected a 32-bit integer"},
      {R"("max_tokens": 0)", "\"max_tokens\" = 0: expected an integer >= 1 (new tokens)"},
      {R"("max_tokens": 1.5)", "\"max_tokens\" = 1.5: expected an integer >= 1 (new tokens)"},
      {R"("seed": -1)", "\"seed\" = -1: expected an integer in [0, 2^64)"},
      {R"("seed": 1.8446744073709552e19)",
       "\"seed\" = 1.8446744073709552e+19: expected an integer in [0, 2^64)"},
      {R"("temperature": 250, "top_p": 1e-30, "repetition_penalty": 1e30)", ""},
      {R"("temperature": 1e-30, "top_k": 2147483647, "min_p": 1)", ""},
      {R"("max_tokens": 1e9, "seed": 18446744073709551615)", ""},
  };
  for (const Case& c : cases) {
    const BatchItem item = Parse(std::string(R"({"custom_id": "id", "prompt": "x", )") + c.json + "}");
    EXPECT_EQ(item.custom_id, "id");
    if (*c.error == '\0') {
      ASSERT_TRUE(item.request) << c.json << " -> " << item.error;
      continue;
    }
    EXPECT_FALSE(item.request) << c.json;
    EXPECT_EQ(item.error, std::string("line 7: ") + c.error) << c.json;
  }
  const BatchItem seeded = Parse(R"({"prompt": "x", "seed": 18446744073709551615})");
  ASSERT_TRUE(seeded.request);
  EXPECT_EQ(seeded.request->seed, 18446744073709551615ull);  // exact, not through a double
}

TEST_F(BatchLines, OverflowingNumbersNameTheirFieldAndKeepTheCustomId) {
  BatchItem item = Parse(R"({"temperature": 1e999, "stop": [2e999], "custom_id": "late"})");
  EXPECT_EQ(item.custom_id, "late");
  EXPECT_EQ(item.error,
            "line 7: \"temperature\" = 1e999: out of range (a double holds at most 1.8e308)");
  item = Parse(R"({"custom_id": "b", "body": {"prompt": "x", "max_tokens": -1e999}})");
  EXPECT_EQ(item.custom_id, "b");
  EXPECT_NE(item.error.find("\"max_tokens\" = -1e999"), std::string::npos) << item.error;
  item = Parse(R"({"custom_id": "c", "body": 5})");
  EXPECT_EQ(item.error, "line 7: \"body\" must be an object (the request)");
  item = Parse(R"({"custom_id": "d", "prompt": "x", 1e999})");
  EXPECT_EQ(item.error.rfind("line 7: not valid JSON", 0), 0u) << item.error;
}

class ResultFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    in_ = dir_ + "/in.jsonl";
    std::ofstream(in_) << R"({"custom_id": "a", "prompt": "x"})" << "\n" << R"({"custom_id": "b")";
  }
  std::string Read(const std::string& path) {
    std::stringstream s;
    s << std::ifstream(path).rdbuf();
    return s.str();
  }
  test_support::TempDir tmp_{"df11_batch_io"};
  const std::string dir_ = tmp_.path();
  std::string in_;
};

TEST_F(ResultFiles, OutputMustBeARegularFileThatIsNotTheInput) {
  const std::string input = Read(in_);
  fs::create_symlink(in_, dir_ + "/link.jsonl");
  fs::create_hard_link(in_, dir_ + "/hard.jsonl");
  for (const std::string& out : {in_, dir_ + "/link.jsonl", dir_ + "/hard.jsonl",
                                 dir_ + "/../" + fs::path(dir_).filename().string() + "/in.jsonl"}) {
    auto files = OpenBatchFiles(in_, out);
    ASSERT_FALSE(files.ok()) << out;
    EXPECT_EQ(files.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(files.status().message().find("is the same file as --input"), std::string::npos)
        << files.status().ToString();
  }
  EXPECT_EQ(Read(in_), input);  // the torn last line of the input is untouched

  auto full = OpenBatchFiles(in_, "/dev/full");
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(full.status().message().find("--output /dev/full is a character device"),
            std::string::npos)
      << full.status().ToString();
  auto dir_out = OpenBatchFiles(in_, dir_);
  ASSERT_FALSE(dir_out.ok());
  EXPECT_NE(dir_out.status().message().find("--output " + dir_), std::string::npos);
  ASSERT_EQ(mkfifo((dir_ + "/fifo").c_str(), 0600), 0);
  auto fifo_out = OpenBatchFiles(in_, dir_ + "/fifo");
  ASSERT_FALSE(fifo_out.ok());
  EXPECT_NE(fifo_out.status().message().find("is a pipe"), std::string::npos)
      << fifo_out.status().ToString();

  auto dir_in = OpenBatchFiles(dir_, dir_ + "/out.jsonl");
  ASSERT_FALSE(dir_in.ok());
  EXPECT_EQ(dir_in.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dir_in.status().message().find("--input " + dir_ + " is a directory"),
            std::string::npos)
      << dir_in.status().ToString();
  auto zero_in = OpenBatchFiles("/dev/zero", dir_ + "/out.jsonl");
  ASSERT_FALSE(zero_in.ok());
  EXPECT_NE(zero_in.status().message().find("is a character device"), std::string::npos);
}

// "-" is standard input for --input; for --output it is refused (a result file is resumed, which
// standard output cannot be) instead of creating a file named "-".
TEST_F(ResultFiles, DashReadsStandardInputAndIsRefusedAsOutput) {
  auto dash_out = OpenBatchFiles(in_, "-");
  ASSERT_FALSE(dash_out.ok());
  EXPECT_EQ(dash_out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dash_out.status().message().find("--output -: results go to a regular file"),
            std::string::npos)
      << dash_out.status().ToString();
  EXPECT_FALSE(fs::exists("-"));

  const int saved = ::dup(STDIN_FILENO);
  ASSERT_GE(saved, 0);
  const int in = ::open(in_.c_str(), O_RDONLY);
  ASSERT_GE(in, 0);
  ASSERT_EQ(::dup2(in, STDIN_FILENO), STDIN_FILENO);
  ::close(in);
  auto files = OpenBatchFiles("-", dir_ + "/out.jsonl");
  ASSERT_EQ(::dup2(saved, STDIN_FILENO), STDIN_FILENO);
  ::close(saved);
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  char line[64] = {};
  ASSERT_NE(std::fgets(line, sizeof line, files->input.get()), nullptr);
  EXPECT_EQ(std::string(line), Read(in_).substr(0, std::string(line).size()));
}

TEST_F(ResultFiles, AnOutputIsLockedWhileARunHoldsIt) {
  const std::string out = dir_ + "/out.jsonl";
  {
    auto first = OpenBatchFiles(in_, out);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    auto second = OpenBatchFiles(in_, out);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(second.status().message().find("another df11-run holds it"), std::string::npos)
        << second.status().ToString();
    // The lock is flock(2)'s, so other tools see it too.
    const int fd = ::open(out.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    EXPECT_NE(::flock(fd, LOCK_EX | LOCK_NB), 0);
    ::close(fd);
  }
  EXPECT_TRUE(OpenBatchFiles(in_, out).ok());  // released with the first run's files
}

// An existing output must hold results of an earlier run: a file of anything else (a config, a
// request file, a text without a final newline) is refused by line and left byte for byte as it
// was. Blank lines are allowed, and a tail of zeros (what a crash may leave) is cut like a torn
// line.
TEST_F(ResultFiles, AFileThatIsNotResultsIsRefusedAndLeftAsItWas) {
  const std::string result = ToJsonLine({{"custom_id", "r1"}, {"text", "one"}});
  const std::pair<std::string, std::string> foreign[] = {
      {"{\n  \"hidden_size\": 64\n}\n", "line 1 is not a result line"},
      {result + R"({"prompt": "no id"})" + "\n", "line 2 is not a result line"},
      {result + "[1, 2]\n", "line 2 is not a result line"},
      {result + R"({"custom_id": 7})" + "\n", "line 2 is not a result line"},
      {"secret-token", "its last line (no newline) is not a result line"},
      {result + "\n" + "plain text", "its last line (no newline) is not a result line"},
  };
  for (const auto& [text, message] : foreign) {
    SCOPED_TRACE(text);
    const std::string out = dir_ + "/foreign.txt";
    std::ofstream(out, std::ios::binary | std::ios::trunc) << text;
    auto file = ResultFile::Open(out);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(file.status().message().find("--output " + out + ": " + message), std::string::npos)
        << file.status().ToString();
    EXPECT_EQ(Read(out), text);
  }

  const std::string out = dir_ + "/results.jsonl";
  std::ofstream(out, std::ios::binary) << result << "\n" << result << std::string(5, '\0');
  auto file = ResultFile::Open(out);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->done_ids(), std::set<std::string>{"r1"});
  EXPECT_EQ((*file)->truncated_bytes(), 5);
  EXPECT_EQ(Read(out), result + "\n" + result);
}

// A write that fails part way (here: the file size limit, as a full disk would) cuts the torn
// line off again: the file holds the lines written before, whole.
TEST_F(ResultFiles, AWriteErrorLeavesWholeLines) {
  const std::string out = dir_ + "/out.jsonl";
  auto file = ResultFile::Open(out);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const std::vector<std::string> first = {ToJsonLine({{"custom_id", "1"}, {"text", "one"}}),
                                          ToJsonLine({{"custom_id", "2"}, {"text", "two"}})};
  ASSERT_TRUE((*file)->Append(first).ok());
  const std::string before = Read(out);
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* previous = signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = before.size() + 40;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string text(100, 'x');
  const Status s = (*file)->Append({ToJsonLine({{"custom_id", "3"}, {"text", "3"}}),
                                    ToJsonLine({{"custom_id", "4"}, {"text", text}}),
                                    ToJsonLine({{"custom_id", "5"}, {"text", text}})});
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, previous);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--output " + out + ": write: File too large"), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("2 result lines not written"), std::string::npos) << s.ToString();
  EXPECT_EQ(Read(out), before + ToJsonLine({{"custom_id", "3"}, {"text", "3"}}));
}

}  // namespace
}  // namespace df11
