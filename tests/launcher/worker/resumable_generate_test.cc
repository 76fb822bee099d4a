// SPDX-License-Identifier: Apache-2.0
// `df11-run generate --input IN --output OUT` resumes: a rerun after a crash that tore OUT's last
// line drops that line, keeps the complete ones byte for byte, serves only what is missing (new
// input lines included), and leaves exactly one line per custom_id; duplicate custom_ids in IN
// get an error line; progress (items, tokens/s) goes to stderr.
#include "tests/launcher/worker/serve_cluster.h"

namespace df11::testing {
namespace {

class ResumableGenerate : public TinyModelSuite {
 protected:
  static CommandResult Generate(const std::string& in, const std::string& out) {
    return RunCommandSeparateStderr(kRun + " generate --model " + dir_ + "/df11 --input " + in +
                                        " --output " + out + " -n 8 --threads 1 --batch-size 2",
                                    kCommandLimitS);
  }
};

TEST_F(ResumableGenerate, RerunAfterTornLineServesOnlyWhatIsMissing) {
  std::vector<std::string> lines = ManyLines("r", 6, 8);
  lines[3] = R"({"custom_id": "r3", "prompt": "Sampled", "temperature": 0.9, "seed": 3})";
  const std::string in = Write("in.jsonl", lines);
  const std::string out = dir_ + "/out.jsonl";
  CommandResult first = Generate(in, out);
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_NE(first.err.find("batch: 6/6 items"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("tokens/s"), std::string::npos) << first.err;
  const std::string full = ReadFile(out);
  const std::vector<std::string> before = Lines(full);
  ASSERT_EQ(before.size(), 6u) << full;

  // A crash mid-write: the sixth line is cut in half.
  const size_t five = full.size() - before[5].size() - 1;
  fs::resize_file(out, five + before[5].size() / 2);
  lines.push_back(R"({"custom_id": "new1", "prompt": "Fresh line", "max_tokens": 5})");
  lines.push_back(R"({"custom_id": "new2", "prompt": "Another one"})");
  Write("in.jsonl", lines);
  CommandResult second = Generate(in, out);
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_NE(second.err.find("torn last line"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("already holds 5 of 8 results"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("batch: 8/8 items"), std::string::npos) << second.err;
  const std::string after = ReadFile(out);
  EXPECT_EQ(after.substr(0, five), full.substr(0, five));  // complete lines untouched
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.back(), '\n');
  std::map<std::string, int> count;
  std::map<std::string, nlohmann::json> by_id;
  for (const std::string& l : Lines(after)) {
    auto j = nlohmann::json::parse(l);  // every line whole
    ++count[j["custom_id"].get<std::string>()];
    by_id[j["custom_id"].get<std::string>()] = j;
  }
  ExpectExactlyOnce(count, {"r0", "r1", "r2", "r3", "r4", "r5", "new1", "new2"});
  // The re-served line (lines come in the order requests finish) is what the first run gave.
  const auto torn = nlohmann::json::parse(before[5]);
  EXPECT_EQ(by_id[torn["custom_id"].get<std::string>()], torn);
  EXPECT_EQ(by_id["new1"]["token_ids"].size(), 5u);

  // Nothing left to do: the file stays as it is.
  CommandResult third = Generate(in, out);
  ASSERT_EQ(third.status, 0) << third.err;
  EXPECT_EQ(ReadFile(out), after);
  EXPECT_NE(third.err.find("already holds 8 of 8 results"), std::string::npos) << third.err;
}

TEST_F(ResumableGenerate, ValidJsonWithoutNewlineIsTornToo) {
  const std::string in = Write("nl.jsonl", ManyLines("n", 3, 4));
  const std::string out = dir_ + "/nl.out.jsonl";
  ASSERT_EQ(Generate(in, out).status, 0);
  const std::string full = ReadFile(out);
  fs::resize_file(out, full.size() - 1);  // only the last newline lost
  CommandResult again = Generate(in, out);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(ReadFile(out), full);
}

TEST_F(ResumableGenerate, DuplicateCustomIdsGetAnErrorLine) {
  const std::string in = Write(
      "dup.jsonl", {R"({"custom_id": "a", "prompt": "One", "max_tokens": 3})",
                    R"({"custom_id": "b", "prompt": "Two", "max_tokens": 3})",
                    R"({"custom_id": "a", "prompt": "Three", "max_tokens": 3})", "{broken"});
  const std::string out = dir_ + "/dup.out.jsonl";
  CommandResult r = Generate(in, out);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::vector<std::string> lines = Lines(ReadFile(out));
  ASSERT_EQ(lines.size(), 4u);
  // Lines come in the order requests finish: the input's own errors first.
  std::vector<nlohmann::json> served, errors;
  for (const std::string& l : lines) {
    auto j = nlohmann::json::parse(l);
    (j.contains("error") && j["error"].is_string() ? errors : served).push_back(j);
  }
  ASSERT_EQ(served.size(), 2u);
  ASSERT_EQ(errors.size(), 2u);
  for (const auto& j : served) EXPECT_EQ(j["token_ids"].size(), 3u) << j;
  EXPECT_EQ(served[0]["custom_id"].get<std::string>() + served[1]["custom_id"].get<std::string>(),
            served[0]["custom_id"] == "a" ? "ab" : "ba");
  const auto& dup = errors[0];
  EXPECT_EQ(dup["custom_id"], "a");
  EXPECT_NE(dup["error"].get<std::string>().find("duplicate custom_id \"a\" (first on line 1)"),
            std::string::npos)
      << dup;
  EXPECT_NE(errors[1]["error"].get<std::string>().find("line 4"), std::string::npos) << errors[1];
  // A rerun finds everything done.
  const std::string text = ReadFile(out);
  ASSERT_EQ(Generate(in, out).status, 0);
  EXPECT_EQ(ReadFile(out), text);
}

}  // namespace
}  // namespace df11::testing
