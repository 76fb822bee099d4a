// SPDX-License-Identifier: Apache-2.0
// `df11`: the offline tool. compress | decompress | verify | inspect | make-tiny.
// Each subcommand validates its flags, runs one library call and prints a short summary;
// errors go to stderr with a non-zero exit status.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <optional>

#include "launcher/cli_flags.h"

#include "runtime/convert/compress.h"
#include "runtime/convert/decompress.h"
#include "runtime/convert/inspect.h"
#include "runtime/convert/shard.h"
#include "runtime/convert/verify.h"
#include "runtime/core/file_util.h"
#include "runtime/core/logging.h"
#include "runtime/formats/model_config.h"
#include "runtime/formats/tiny_model.h"
#include "runtime/text/token_io.h"
#include "runtime/text/tokenizer.h"

namespace df11 {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "df11: %s\n", s.ToString().c_str());
  return ExitCode(s);
}

// --pattern-dict takes JSON text, or @FILE to read it from a file (which must not be empty: an
// empty flag means the architecture's default, an empty file is a mistake).
StatusOr<std::string> PatternDictText(const std::string& flag) {
  if (flag.empty() || flag[0] != '@') return flag;
  const std::string path = flag.substr(1);
  DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    return Status::InvalidArgument(path + " is empty: expected JSON {regex: [sub.module, ...]}");
  }
  return text;
}

int RunCompress(const std::string& src, const std::string& out, int threads,
                const std::string& pattern_dict, bool quiet) {
  CompressOptions options;
  options.threads = threads;
  options.show_progress = !quiet;
  auto pd = PatternDictText(pattern_dict);
  if (!pd.ok()) return Fail(pd.status().WithContext("--pattern-dict"));
  options.pattern_dict_json = *pd;
  auto summary = CompressModel(src, out, options);
  if (!summary.ok()) return Fail(summary.status());
  const CompressSummary& s = *summary;
  std::printf("compressed %lld units (%lld weights): %.3f bits/weight, %.2f%% of BF16\n",
              static_cast<long long>(s.units), static_cast<long long>(s.unit_elements),
              s.unit_elements ? 8.0 * s.unit_stored_bytes / s.unit_elements : 0.0,
              s.unit_elements ? 100.0 * s.unit_stored_bytes / (2.0 * s.unit_elements) : 0.0);
  std::printf("model: %.3f MB -> %.3f MB (%.2f%%)\n", s.total_input_bytes / 1e6,
              s.total_output_bytes / 1e6,
              s.total_input_bytes ? 100.0 * s.total_output_bytes / s.total_input_bytes : 0.0);
  for (const std::string& k : s.kept_bf16) std::printf("warning: %s\n", k.c_str());
  return 0;
}

int RunDecompress(const std::string& src, const std::string& out, int threads, bool quiet) {
  auto summary = DecompressModel(src, out, threads, !quiet);
  if (!summary.ok()) return Fail(summary.status());
  std::printf("decompressed %lld units into %lld tensors (%.3f MB)\n",
              static_cast<long long>(summary->units), static_cast<long long>(summary->tensors),
              summary->output_bytes / 1e6);
  return 0;
}

int RunVerify(const std::string& df11_dir, const std::string& bf16_dir, int threads, bool quiet) {
  auto report = VerifyModel(df11_dir, bf16_dir, threads, !quiet);
  if (!report.ok()) return Fail(report.status());
  if (!report->identical) {
    std::printf("MISMATCH: %s\n", report->first_mismatch.c_str());
    return 1;
  }
  std::printf("OK: %lld units, %lld tensors, %lld weights bit-identical\n",
              static_cast<long long>(report->units), static_cast<long long>(report->tensors),
              static_cast<long long>(report->elements));
  return 0;
}

int RunInspect(const std::string& dir, bool json, int threads) {
  auto inspection = InspectModel(dir, threads);
  if (!inspection.ok()) return Fail(inspection.status());
  if (json) {
    std::cout << InspectionToJson(*inspection).dump(2) << "\n";
  } else {
    std::cout << FormatInspection(*inspection);
  }
  return 0;
}

int RunShard(const std::string& src, const std::string& out, const ShardOptions& options) {
  auto summary = ShardModel(src, out, options);
  if (!summary.ok()) return Fail(summary.status());
  const std::string written = options.codec == WeightCodec::kEw4
                                  ? std::to_string(summary->ew4_matrices) + " ew4 matrices"
                                  : std::to_string(summary->units) + " units";
  std::printf("sharded into %zu ranks (tp %d x pp %d), %s, %.3f MB in %.2f s\n",
              summary->rank_bytes.size(), options.tp, options.pp, written.c_str(),
              summary->total_bytes / 1e6, summary->elapsed_s);
  for (const std::string& k : summary->kept_bf16) std::printf("warning: %s\n", k.c_str());
  return 0;
}

int RunTokenize(const std::string& model, bool detokenize, bool bos) {
  auto tokenizer = Tokenizer::FromDirectory(model);
  if (!tokenizer.ok()) return Fail(tokenizer.status().WithContext("--model"));
  Status s = detokenize ? DetokenizeJsonl(*tokenizer, std::cin, std::cout)
                        : TokenizeJsonl(*tokenizer, std::cin, std::cout, bos);
  return s.ok() ? 0 : Fail(s);
}

// --threads' range (0: all cores).
CLI::Validator ThreadCount() { return IntegerIn(0, 1 << 16); }

// The make-tiny subcommand and its flags, bound to *tiny and *out.
CLI::App* AddMakeTinyCommand(CLI::App* app, TinyModelOptions* tiny, std::string* out) {
  CLI::App* make_tiny =
      app->add_subcommand("make-tiny", "write a random BF16 model for tests/demos");
  make_tiny->add_option("--arch", tiny->arch, "the config.json model_type")
      ->check(CLI::IsMember(SupportedModelTypes()))
      ->capture_default_str();
  make_tiny->add_option("--layers", tiny->layers, "decoder layers")->capture_default_str();
  make_tiny->add_option("--hidden", tiny->hidden, "hidden size")->capture_default_str();
  make_tiny->add_option("--heads", tiny->heads, "attention heads")->capture_default_str();
  make_tiny->add_option("--kv-heads", tiny->kv_heads, "key/value heads")->capture_default_str();
  make_tiny->add_option("--intermediate", tiny->intermediate, "MLP size")->capture_default_str();
  make_tiny->add_option("--head-dim", tiny->head_dim, "head size (0: hidden/heads)")
      ->capture_default_str();
  make_tiny->add_option("--vocab", tiny->vocab, "vocabulary size (0: the tokenizer's, or 512)")
      ->capture_default_str();
  make_tiny->add_option("--vocab-from", tiny->vocab_from, "directory whose tokenizer to copy");
  make_tiny->add_option("--seed", tiny->seed, "random seed")
      ->check(Unsigned64())
      ->capture_default_str();
  make_tiny->add_flag("--tie-embeddings", tiny->tie_embeddings, "share embedding and LM head");
  make_tiny
      ->add_option("--sliding-window", tiny->sliding_window,
                   "gemma3_text / gemma3: the local layers' window (0: 16)")
      ->capture_default_str();
  make_tiny->add_option("OUT_DIR", *out, "new model directory")->required();
  return make_tiny;
}

// The shard subcommand and its flags, bound to *options, *src, *out and *threads.
CLI::App* AddShardCommand(CLI::App* app, ShardOptions* options, std::string* src, std::string* out,
                          int* threads) {
  CLI::App* shard =
      app->add_subcommand("shard", "split a model into per-rank DF11 shards (TP x PP)");
  shard->add_option("SRC", *src, "BF16 or DF11 model directory")->required();
  shard->add_option("OUT", *out, "new directory for manifest.json and rank files")->required();
  shard->add_option("--tp", options->tp, "tensor-parallel ranks per stage")
      ->check(IntegerIn(1, 1 << 16))
      ->capture_default_str();
  shard->add_option("--pp", options->pp, "pipeline stages")
      ->check(IntegerIn(1, 1 << 16))
      ->capture_default_str();
  shard
      ->add_option("--stage-layers", options->stage_layers,
                   "layers per stage, e.g. 40,40,46 (default: balanced)")
      ->delimiter(',')
      ->check(IntegerIn(1, 1 << 16));
  shard->add_option("--threads", *threads, "worker threads (0: all cores)")->check(ThreadCount());
  shard
      ->add_option_function<std::string>(
          "--codec",
          [options](const std::string& v) {
            options->codec = v == "ew4" ? WeightCodec::kEw4 : WeightCodec::kDf11;
          },
          "the rank files' matrices: df11 (Huffman units, densest) or ew4 (4-bit exponent codes, "
          "served by fused kernels)")
      ->check(CLI::IsMember({"df11", "ew4"}))
      ->default_str("df11");
  return shard;
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) {
  using namespace df11;
  CLI::App app{"df11: compress, decompress, verify and inspect DFloat11 models"};
  app.require_subcommand(1);
  int threads = 0;
  bool quiet = false;
  const CLI::Validator thread_count = ThreadCount();
  app.add_option("--threads", threads, "worker threads (0: all cores)")->check(thread_count);
  app.add_flag("-q,--quiet", quiet, "no progress output");

  std::string src, out, pattern_dict;
  auto* compress = app.add_subcommand("compress", "BF16 model directory -> DF11 directory");
  compress->add_option("SRC_BF16_DIR", src, "Hugging Face BF16 model directory")->required();
  compress->add_option("OUT_DIR", out, "new directory for the DF11 model")->required();
  compress->add_option("--threads", threads, "worker threads (0: all cores)")->check(thread_count);
  compress->add_option("--pattern-dict", pattern_dict,
                       "JSON {regex: [sub.module, ...]} or @FILE; default: the architecture's");

  auto* decompress = app.add_subcommand("decompress", "DF11 directory -> BF16 checkpoint");
  decompress->add_option("DF11_DIR", src, "DF11 model directory")->required();
  decompress->add_option("OUT_DIR", out, "new directory for the BF16 model")->required();
  decompress->add_option("--threads", threads, "worker threads (0: all cores)")
      ->check(thread_count);

  std::string bf16_dir;
  auto* verify = app.add_subcommand("verify", "check a DF11 model against its BF16 original");
  verify->add_option("DF11_DIR", src, "DF11 model directory")->required();
  verify->add_option("BF16_DIR", bf16_dir, "the original BF16 model directory")->required();
  verify->add_option("--threads", threads, "worker threads (0: all cores)")->check(thread_count);

  bool json = false;
  auto* inspect = app.add_subcommand("inspect", "where a DF11 model's bits go");
  inspect->add_option("DIR", src, "DF11 model directory")->required();
  inspect->add_flag("--json", json, "JSON output");

  TinyModelOptions tiny;
  CLI::App* make_tiny = AddMakeTinyCommand(&app, &tiny, &out);

  ShardOptions shard_options;
  CLI::App* shard = AddShardCommand(&app, &shard_options, &src, &out, &threads);

  std::string model;
  bool bos = false;
  auto* tokenize = app.add_subcommand("tokenize", "JSON lines {\"text\"} -> {\"ids\"}");
  tokenize->add_option("--model", model, "model directory with tokenizer.json")->required();
  tokenize->add_flag("--bos", bos, "prepend the BOS token");
  auto* detokenize = app.add_subcommand("detokenize", "JSON lines {\"ids\"} -> {\"text\"}");
  detokenize->add_option("--model", model, "model directory with tokenizer.json")->required();

  if (std::optional<int> exit = ParseFlags(&app, argc, argv)) return *exit;
  LoggingOptions logging;
  InitLogging(argv[0], logging);

  if (*compress) return RunCompress(src, out, threads, pattern_dict, quiet);
  if (*decompress) return RunDecompress(src, out, threads, quiet);
  if (*verify) return RunVerify(src, bf16_dir, threads, quiet);
  if (*inspect) return RunInspect(src, json, threads);
  if (*shard) {
    shard_options.threads = threads;
    shard_options.show_progress = !quiet;
    return RunShard(src, out, shard_options);
  }
  if (*tokenize || *detokenize) return RunTokenize(model, detokenize->parsed(), bos);
  if (*make_tiny) {
    Status s = MakeTinyModel(tiny, out);
    if (!s.ok()) return Fail(s);
    std::printf("wrote %s\n", out.c_str());
    return 0;
  }
  return 0;
}
