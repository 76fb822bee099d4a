// SPDX-License-Identifier: Apache-2.0
// `df11-run generate --input IN --output OUT` and its files, as a user meets them: OUT that is IN
// (by its path, a symbolic or a hard link), OUT that is no regular file (/dev/full) and IN that
// is a directory are refused with exit 2 before the model loads; a second run on an OUT that a
// running one holds is refused (flock) instead of serving every item twice; a write error ends
// the run with a message, OUT keeps whole lines only, and a new run serves the rest once.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "tests/launcher/worker/serve_cluster.h"

namespace df11::testing {
namespace {

class GenerateFiles : public TinyModelSuite {
 protected:
  static std::string Args(const std::string& in, const std::string& out) {
    return " generate --model " + dir_ + "/df11 --input " + in + " --output " + out +
           " -n 8 --threads 1 --batch-size 2";
  }
  static CommandResult Generate(const std::string& in, const std::string& out) {
    return RunCommandSeparateStderr(kRun + Args(in, out), kCommandLimitS);
  }
};

TEST_F(GenerateFiles, OutputThatIsTheInputOrNoFileAndInputThatIsADirectoryAreRefused) {
  const std::string in = Write("in.jsonl", ManyLines("a", 2, 3));
  const std::string text = ReadFile(in);
  fs::create_symlink(in, dir_ + "/link.jsonl");
  fs::create_hard_link(in, dir_ + "/hard.jsonl");
  for (const std::string& out : {in, dir_ + "/link.jsonl", dir_ + "/hard.jsonl"}) {
    CommandResult r = Generate(in, out);
    EXPECT_EQ(r.status, 2) << out << ": " << r.err;
    EXPECT_NE(r.err.find("--output " + out + " is the same file as --input " + in),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.err.find("loaded"), std::string::npos) << "refused before the model loads";
  }
  EXPECT_EQ(ReadFile(in), text);

  CommandResult full = RunCommandSeparateStderr(kRun + Args(in, "/dev/full"), 60);
  EXPECT_EQ(full.status, 2) << full.err;
  EXPECT_NE(full.err.find("--output /dev/full is a character device: expected a regular file"),
            std::string::npos)
      << full.err;

  fs::create_directories(dir_ + "/requests");
  CommandResult directory = Generate(dir_ + "/requests", dir_ + "/d.out.jsonl");
  EXPECT_EQ(directory.status, 2) << directory.err;
  EXPECT_NE(directory.err.find("--input " + dir_ + "/requests is a directory"), std::string::npos)
      << directory.err;
}

// The first run reads its requests from a pipe the test holds open, so it holds OUT for as long
// as the test wants; meanwhile a second run on the same OUT is refused.
TEST_F(GenerateFiles, ASecondRunOnTheSameOutputIsRefused) {
  const std::string fifo = dir_ + "/requests.fifo", out = dir_ + "/locked.jsonl";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // A writer, so the run's open does not block; close-on-exec, or the run would hold a writer
  // itself and never see the end of its input.
  const int writer = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(writer, 0);
  Child first = Child::Start(kRun + Args(fifo, out), dir_ + "/first.log");
  bool locked = false;
  for (auto start = Clock::now(); !locked && Since(start) < 60;) {
    const int fd = ::open(out.c_str(), O_RDONLY);
    if (fd >= 0) {
      locked = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
      ::close(fd);
    }
    if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(locked) << ReadFile(dir_ + "/first.log");
  const std::string other = Write("other.jsonl", ManyLines("b", 2, 3));
  CommandResult second = Generate(other, out);
  EXPECT_EQ(second.status, 1) << second.err;
  EXPECT_NE(second.err.find("--output " + out + ": another df11-run holds it"), std::string::npos)
      << second.err;

  std::string lines;
  for (const std::string& l : ManyLines("f", 3, 4)) lines += l + "\n";
  ASSERT_EQ(::write(writer, lines.data(), lines.size()), static_cast<ssize_t>(lines.size()));
  ::close(writer);  // end of the requests
  EXPECT_EQ(first.Wait(120), 0) << ReadFile(dir_ + "/first.log");
  std::map<std::string, int> count;
  for (const auto& [id, j] : ByCustomId(ReadFile(out))) ++count[id];
  EXPECT_EQ(Lines(ReadFile(out)).size(), 3u);
  ExpectExactlyOnce(count, {"f0", "f1", "f2"});
}

// The file size limit (SIGXFSZ ignored) makes write(2) fail part way, as a full disk does.
TEST_F(GenerateFiles, AWriteErrorEndsTheRunWithWholeLines) {
  const std::vector<std::string> requests = ManyLines("w", 30, 8);
  const std::string in = Write("w.jsonl", requests), out = dir_ + "/w.out.jsonl";
  CommandResult limited =
      RunCommandSeparateStderr("sh -c '{ (ulimit -f 2; trap \"\" XFSZ; exec " + kRun +
                                   Args(in, out) + ") 2>&1; echo exit=$?; } | cat'",
                               kCommandLimitS);
  EXPECT_NE(limited.output.find("exit=1"), std::string::npos) << limited.output;
  EXPECT_NE(limited.output.find("--output " + out + ": write: File too large"), std::string::npos)
      << limited.output;
  EXPECT_NE(limited.output.find("a new run serves the rest"), std::string::npos) << limited.output;
  const std::string partial = ReadFile(out);
  ASSERT_FALSE(partial.empty());
  EXPECT_EQ(partial.back(), '\n');
  const std::vector<std::string> kept = Lines(partial);
  EXPECT_LT(kept.size(), requests.size());
  for (const std::string& line : kept) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << "a torn line: " << line;
  }

  CommandResult again = Generate(in, out);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(again.err.find("torn last line"), std::string::npos) << again.err;
  EXPECT_EQ(ReadFile(out).substr(0, partial.size()), partial);
  std::map<std::string, int> count;
  for (const std::string& line : Lines(ReadFile(out))) {
    ++count[nlohmann::json::parse(line)["custom_id"].get<std::string>()];
  }
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) ids.push_back("w" + std::to_string(i));
  ExpectExactlyOnce(count, ids);
}

}  // namespace
}  // namespace df11::testing
