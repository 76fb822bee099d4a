// SPDX-License-Identifier: Apache-2.0
// MakeTinyModel: options -> config.json (parsed back with ParseModelConfig, so the tensor list is
// the table's required tensors, model_tensors.h) -> shard plan -> each shard streamed to disk: header first, then every tensor
// generated piece by piece (double-buffered) right before it is written. The random fill is split
// into fixed blocks, each with its own xoshiro256** stream seeded from (seed, tensor name, block),
// so the bytes depend neither on the thread count nor on the piece size.
#include "runtime/formats/tiny_model.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/common/bf16.h"
#include "kernels/common/parallel_for.h"
#include "runtime/core/file_util.h"
#include "runtime/core/staged_dir.h"
#include "runtime/core/progress.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/model_config.h"
#include "runtime/formats/model_tensors.h"
#include "runtime/formats/tiny_model_config.h"

namespace df11 {
namespace {

using json = nlohmann::json;

constexpr int64_t kMaxDim = 2147483647;
constexpr int64_t kMaxLayers = 1 << 16;
constexpr int64_t kBlockElems = 1 << 16;  // random-stream granularity (even)
constexpr int64_t kPieceElems = kBlockElems * 64;  // 8 MiB of BF16 generated per write
constexpr int64_t kProgressBytes = int64_t{1} << 30;  // show progress above this size

// Files besides tokenizer.json that --vocab-from copies when present.
constexpr const char* kOptionalTokenizerFiles[] = {
    "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "tokenizer.model",       "vocab.json",              "merges.txt",
};

// ---- random numbers ----

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (uint64_t& word : s_) word = SplitMix64(seed);
  }
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001B3ull;
  return h;
}

// out[i] = BF16(mean + stddev * N(0,1)) by Box-Muller on 24-bit uniforms (enough for BF16).
void FillNormalBf16(uint64_t stream_seed, float mean, float stddev, uint16_t* out, int64_t n) {
  Xoshiro256 rng(stream_seed);
  constexpr float kInv24 = 1.0f / 16777216.0f;
  constexpr float kTwoPi = 6.283185307179586f;
  for (int64_t i = 0; i < n; i += 2) {
    uint64_t x = rng.Next();
    float u1 = static_cast<float>((x >> 40) + 1) * kInv24;  // (0, 1]: log stays finite
    float u2 = static_cast<float>(x & 0xFFFFFF) * kInv24;
    float r = std::sqrt(-2.0f * std::log(u1));
    float theta = kTwoPi * u2;
    out[i] = FloatToBf16(mean + stddev * r * std::cos(theta));
    if (i + 1 < n) out[i + 1] = FloatToBf16(mean + stddev * r * std::sin(theta));
  }
}

// Fills out[0, count) with elements [begin, begin + count) of tensor `name`, N(mean, std)
// (norm weights: 1 + noise; matrices and biases: mean 0); `begin` is a multiple of kBlockElems,
// so any split of a tensor into pieces yields the same bytes.
void GenerateRange(const std::string& name, float mean, int64_t begin, int64_t count,
                   const TinyModelOptions& o, int threads, uint16_t* out) {
  uint64_t mix = o.seed;
  const uint64_t tensor_seed = SplitMix64(mix) ^ Fnv1a(name);
  const int64_t first_block = begin / kBlockElems;
  const int64_t blocks = (count + kBlockElems - 1) / kBlockElems;
  const float stddev = static_cast<float>(o.init_std);
  ParallelFor(blocks, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const int64_t offset = b * kBlockElems;
      const uint64_t block = static_cast<uint64_t>(first_block + b);
      FillNormalBf16(tensor_seed + block * 0xD1B54A32D192ED03ull, mean, stddev, out + offset,
                     std::min(kBlockElems, count - offset));
    }
  });
}

// ---- options and tokenizer ----

Status CheckRange(const char* flag, int64_t value, int64_t min, int64_t max) {
  if (value < min || value > max) {
    return Status::InvalidArgument(std::string(flag) + " must be in [" + std::to_string(min) +
                                   ", " + std::to_string(max) + "], got " + std::to_string(value));
  }
  return Status::Ok();
}

StatusOr<Architecture> ValidateOptions(const TinyModelOptions& o) {
  const std::optional<Architecture> arch = ArchitectureOfModelType(o.arch);
  if (!arch) {
    std::string expected;
    for (const std::string& t : SupportedModelTypes()) expected += (expected.empty() ? "" : ", ") + t;
    return Status::InvalidArgument("--arch \"" + o.arch + "\" is not supported; expected one of " +
                                   expected);
  }
  DF11_RETURN_IF_ERROR(CheckRange("--layers", o.layers, 1, kMaxLayers));
  DF11_RETURN_IF_ERROR(CheckRange("--hidden", o.hidden, 1, kMaxDim));
  DF11_RETURN_IF_ERROR(CheckRange("--heads", o.heads, 1, kMaxDim));
  DF11_RETURN_IF_ERROR(CheckRange("--kv-heads", o.kv_heads, 1, kMaxDim));
  DF11_RETURN_IF_ERROR(CheckRange("--intermediate", o.intermediate, 1, kMaxDim));
  DF11_RETURN_IF_ERROR(CheckRange("--head-dim", o.head_dim, 0, kMaxDim));
  DF11_RETURN_IF_ERROR(CheckRange("--vocab", o.vocab, 0, kMaxDim));
  DF11_RETURN_IF_ERROR(
      CheckRange("--max-position-embeddings", o.max_position_embeddings, 1, kMaxDim));
  DF11_RETURN_IF_ERROR(CheckRange("--max-shard-bytes", o.max_shard_bytes, 1, INT64_MAX));
  DF11_RETURN_IF_ERROR(CheckRange("--threads", o.threads, 0, 1 << 16));
  DF11_RETURN_IF_ERROR(CheckRange("--sliding-window", o.sliding_window, 0, kMaxDim));
  if (o.sliding_window != 0 && !IsGemma3(*arch)) {
    return Status::InvalidArgument("--sliding-window applies to --arch gemma3_text and gemma3; "
                                   "got --arch \"" + o.arch + "\"");
  }
  if (o.heads % o.kv_heads != 0) {
    return Status::InvalidArgument("--heads (" + std::to_string(o.heads) +
                                   ") must be a multiple of --kv-heads (" +
                                   std::to_string(o.kv_heads) + ")");
  }
  if (o.head_dim == 0 && o.hidden % o.heads != 0) {
    return Status::InvalidArgument("--hidden (" + std::to_string(o.hidden) +
                                   ") must be a multiple of --heads (" + std::to_string(o.heads) +
                                   ") when --head-dim is 0 (head_dim = hidden / heads)");
  }
  if (!std::isfinite(o.init_std) || o.init_std < 0) {
    return Status::InvalidArgument("--init-std must be a finite number >= 0, got " +
                                   std::to_string(o.init_std));
  }
  return *arch;
}

struct TokenizerFacts {
  int64_t vocab_size = 0;  // max id + 1
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
};

StatusOr<json> ReadJson(const std::string& path) {
  DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument(path + ": not valid JSON");
  return j;
}

// The id of special token `field` ("bos_token") of tokenizer_config.json: a string, an
// {"content": ...} object or null.
StatusOr<std::optional<int64_t>> SpecialTokenId(const json& config, const char* field,
                                                const json& tokenizer, const std::string& dir) {
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return std::optional<int64_t>();
  const json& v = it->is_object() && it->contains("content") ? (*it)["content"] : *it;
  if (!v.is_string()) {
    return Status::InvalidArgument("--vocab-from " + dir + ": tokenizer_config.json \"" + field +
                                   "\" is " + v.dump() + "; expected a token string or null");
  }
  const std::string token = v.get<std::string>();
  if (tokenizer.contains("added_tokens") && tokenizer["added_tokens"].is_array()) {
    for (const json& added : tokenizer["added_tokens"]) {
      if (added.is_object() && added.contains("content") && added["content"] == token &&
          added.contains("id") && added["id"].is_number_integer()) {
        return std::optional<int64_t>(added["id"].get<int64_t>());
      }
    }
  }
  const json* vocab = tokenizer.contains("model") ? &tokenizer["model"] : nullptr;
  if (vocab != nullptr && vocab->contains("vocab") && (*vocab)["vocab"].is_object()) {
    auto found = (*vocab)["vocab"].find(token);
    if (found != (*vocab)["vocab"].end() && found->is_number_integer()) {
      return std::optional<int64_t>(found->get<int64_t>());
    }
  }
  return Status::InvalidArgument("--vocab-from " + dir + ": tokenizer_config.json \"" + field +
                                 "\" \"" + token + "\" is not a token of tokenizer.json");
}

StatusOr<TokenizerFacts> ReadTokenizer(const std::string& dir) {
  if (!IsDirectory(dir)) return Status::NotFound("--vocab-from " + dir + ": no such directory");
  DF11_ASSIGN_OR_RETURN(json tok, ReadJson(JoinPath(dir, "tokenizer.json")));
  TokenizerFacts facts;
  // An id widens the vocabulary to id + 1, within the limits of --vocab.
  auto take_id = [&](const json& id, const std::string& field) -> Status {
    if (!id.is_number_integer()) return Status::Ok();
    if (id.is_number_unsigned() ? id.get<uint64_t>() >= static_cast<uint64_t>(kMaxDim)
                                : id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxDim) {
      return Status::InvalidArgument("--vocab-from " + dir + ": tokenizer.json " + field + " = " +
                                     id.dump() + " is not a token id in [0, " +
                                     std::to_string(kMaxDim) + ")");
    }
    facts.vocab_size = std::max(facts.vocab_size, id.get<int64_t>() + 1);
    return Status::Ok();
  };
  if (tok.contains("model") && tok["model"].is_object() && tok["model"].contains("vocab")) {
    const json& vocab = tok["model"]["vocab"];
    if (vocab.is_object()) {  // BPE / WordPiece / WordLevel: token -> id
      for (const auto& [token, id] : vocab.items()) {
        DF11_RETURN_IF_ERROR(take_id(id, "model.vocab[" + json(token).dump() + "]"));
      }
    } else if (vocab.is_array()) {  // Unigram: [[piece, score], ...], id = position
      facts.vocab_size = static_cast<int64_t>(vocab.size());
    }
  }
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    const json& added_tokens = tok["added_tokens"];
    for (size_t i = 0; i < added_tokens.size(); ++i) {
      if (added_tokens[i].is_object() && added_tokens[i].contains("id")) {
        DF11_RETURN_IF_ERROR(
            take_id(added_tokens[i]["id"], "added_tokens[" + std::to_string(i) + "].id"));
      }
    }
  }
  if (facts.vocab_size <= 0) {
    return Status::InvalidArgument("--vocab-from " + dir +
                                   ": tokenizer.json has no model.vocab or added_tokens with ids");
  }
  const std::string config_path = JoinPath(dir, "tokenizer_config.json");
  if (FileExists(config_path)) {
    DF11_ASSIGN_OR_RETURN(json config, ReadJson(config_path));
    if (config.is_object()) {
      DF11_ASSIGN_OR_RETURN(facts.bos, SpecialTokenId(config, "bos_token", tok, dir));
      DF11_ASSIGN_OR_RETURN(facts.eos, SpecialTokenId(config, "eos_token", tok, dir));
    }
  }
  return facts;
}

json IdOrNull(const std::optional<int64_t>& id) { return id ? json(*id) : json(nullptr); }

// ---- weights ----

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  float mean = 0;  // of its random values
};

struct Shard {
  std::string file_name;
  std::vector<PlannedTensor> tensors;
};

// The tensors to write: the table's required ones (norm weights around 1, or around 0 where the
// norm multiplies by 1 + w), then the unserved ones (a vision tower).
std::vector<tiny_model::ExtraTensor> TensorsToWrite(const ModelConfig& config) {
  std::vector<tiny_model::ExtraTensor> out;
  for (const TensorSpec& t : ModelTensors(config)) {
    if (!t.required) continue;
    const bool norm = t.row->kind == TensorKind::kNorm;
    out.push_back({t.name, t.shape, norm ? 1.0f - config.norm_weight_offset : 0.0f});
  }
  for (tiny_model::ExtraTensor& t : tiny_model::UnservedTensors(config)) out.push_back(std::move(t));
  return out;
}

StatusOr<std::vector<Shard>> PlanShards(const ModelConfig& config, int64_t max_shard_bytes,
                                        uint64_t* total_bytes) {
  std::vector<Shard> shards(1);
  int64_t shard_bytes = 0;
  *total_bytes = 0;
  for (const tiny_model::ExtraTensor& t : TensorsToWrite(config)) {
    const std::string& name = t.name;
    const std::vector<int64_t>& shape = t.shape;
    int64_t numel = 1;
    int64_t bytes = 0;
    bool overflow = false;
    for (int64_t d : shape) overflow |= __builtin_mul_overflow(numel, d, &numel);
    overflow |= __builtin_mul_overflow(numel, int64_t{2}, &bytes);
    overflow |= *total_bytes + static_cast<uint64_t>(bytes) > uint64_t{INT64_MAX};
    if (overflow) {
      return Status::InvalidArgument("make-tiny: the model is too large (" + name +
                                     " overflows 64-bit byte counts)");
    }
    if (!shards.back().tensors.empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().tensors.push_back(PlannedTensor{name, shape, numel, t.mean});
    shard_bytes += bytes;
    *total_bytes += static_cast<uint64_t>(bytes);
  }
  if (shards.size() == 1) {
    shards[0].file_name = "model.safetensors";
  } else {
    for (size_t i = 0; i < shards.size(); ++i) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      shards[i].file_name = buf;
    }
  }
  return shards;
}

// The safetensors header of `shard` (BF16, contiguous in order), padded with spaces to 8 bytes.
std::string ShardHeader(const Shard& shard) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const PlannedTensor& t : shard.tensors) {
    const uint64_t end = offset + static_cast<uint64_t>(t.numel) * 2;
    header[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// An output file written through "<path>.tmp.<pid>", fsync and rename; removed unless committed.
class AtomicFile {
 public:
  static StatusOr<std::unique_ptr<AtomicFile>> Create(const std::string& path) {
    std::unique_ptr<AtomicFile> f(new AtomicFile(path));
    f->fd_ = ::open(f->tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd_ < 0) return Status::IoError(f->tmp_ + ": cannot create: " + std::strerror(errno));
    return f;
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  Status Write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::IoError(tmp_ + ": write failed: " + std::strerror(errno));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return Status::Ok();
  }
  Status Commit() {
    if (::fsync(fd_) != 0) return Status::IoError(tmp_ + ": fsync failed: " + std::strerror(errno));
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return Status::IoError(tmp_ + ": close failed: " + std::strerror(errno));
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      return Status::IoError(path_ + ": rename failed: " + std::strerror(errno));
    }
    committed_ = true;
    return Status::Ok();
  }

 private:
  explicit AtomicFile(const std::string& path)
      : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())) {}
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Streams one shard: the header, then each tensor in pieces of kPieceElems, generating piece i+1
// on the worker threads while piece i is written (two piece buffers, whatever the model size).
Status WriteShard(const std::string& path, const Shard& shard, const TinyModelOptions& o,
                  int threads, Progress* progress) {
  struct Piece {
    const PlannedTensor* tensor;
    int64_t begin;
    int64_t count;
  };
  std::vector<Piece> pieces;
  for (const PlannedTensor& t : shard.tensors) {
    for (int64_t b = 0; b < t.numel; b += kPieceElems) {
      pieces.push_back(Piece{&t, b, std::min(kPieceElems, t.numel - b)});
    }
  }
  std::vector<uint16_t> buffers[2];
  auto generate = [&](size_t i) {
    const Piece& p = pieces[i];
    std::vector<uint16_t>& buf = buffers[i % 2];
    if (buf.size() < static_cast<size_t>(p.count)) buf.resize(p.count);
    GenerateRange(p.tensor->name, p.tensor->mean, p.begin, p.count, o, threads, buf.data());
  };

  const std::string header = ShardHeader(shard);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  DF11_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFile> file, AtomicFile::Create(path));
  DF11_RETURN_IF_ERROR(file->Write(length, sizeof(length)));
  DF11_RETURN_IF_ERROR(file->Write(header.data(), header.size()));
  if (!pieces.empty()) generate(0);
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::future<void> next;
    if (i + 1 < pieces.size()) next = std::async(std::launch::async, generate, i + 1);
    Status written = file->Write(buffers[i % 2].data(), static_cast<size_t>(pieces[i].count) * 2);
    if (next.valid()) next.wait();
    DF11_RETURN_IF_ERROR(written);
    if (progress != nullptr) progress->Add(pieces[i].count * 2);
  }
  return file->Commit();
}

}  // namespace

Status MakeTinyModel(const TinyModelOptions& o, const std::string& target_dir) {
  DF11_ASSIGN_OR_RETURN(Architecture arch, ValidateOptions(o));
  int64_t vocab = o.vocab != 0 ? o.vocab : 512;
  std::optional<int64_t> bos = 1, eos = 2;  // Llama 2 convention when no tokenizer is given
  if (!o.vocab_from.empty()) {
    DF11_ASSIGN_OR_RETURN(TokenizerFacts facts, ReadTokenizer(o.vocab_from));
    if (o.vocab != 0 && o.vocab < facts.vocab_size) {
      return Status::InvalidArgument("--vocab (" + std::to_string(o.vocab) +
                                     ") is smaller than the tokenizer in --vocab-from " +
                                     o.vocab_from + " (" + std::to_string(facts.vocab_size) +
                                     " ids)");
    }
    if (o.vocab == 0) vocab = facts.vocab_size;
    bos = facts.bos;
    eos = facts.eos;
  }
  if (bos && *bos >= vocab) bos.reset();
  if (eos && *eos >= vocab) eos.reset();

  const json config_json = tiny_model::BuildConfig(o, arch, vocab, bos, eos);
  StatusOr<ModelConfig> config = ParseModelConfig(config_json, "make-tiny config.json");
  if (!config.ok()) return config.status().WithContext("make-tiny built an invalid config");

  DF11_ASSIGN_OR_RETURN(StagedDir staged, StagedDir::Create(target_dir));
  const std::string& out_dir = staged.path();
  if (!o.vocab_from.empty()) {
    DF11_RETURN_IF_ERROR(
        CopyFile(JoinPath(o.vocab_from, "tokenizer.json"), JoinPath(out_dir, "tokenizer.json")));
    for (const char* name : kOptionalTokenizerFiles) {
      const std::string from = JoinPath(o.vocab_from, name);
      if (FileExists(from)) DF11_RETURN_IF_ERROR(CopyFile(from, JoinPath(out_dir, name)));
    }
  }
  const std::string generation_path = JoinPath(out_dir, "generation_config.json");
  if (!FileExists(generation_path)) {
    json generation = {{"_from_model_config", true},
                       {"bos_token_id", IdOrNull(bos)},
                       {"eos_token_id", IdOrNull(eos)},
                       {"transformers_version", config_json["transformers_version"]}};
    DF11_RETURN_IF_ERROR(WriteFileAtomic(generation_path, generation.dump(2) + "\n"));
  }

  uint64_t total_bytes = 0;
  DF11_ASSIGN_OR_RETURN(const std::vector<Shard> shards,
                        PlanShards(*config, o.max_shard_bytes, &total_bytes));
  DF11_RETURN_IF_ERROR(CheckFreeSpace(out_dir, total_bytes, target_dir));
  const int threads = o.threads > 0 ? o.threads : DefaultThreadCount();
  std::unique_ptr<Progress> progress;
  if (total_bytes > static_cast<uint64_t>(kProgressBytes)) {
    progress = std::make_unique<Progress>("make-tiny " + target_dir, total_bytes, "B");
  }
  std::map<std::string, std::string> weight_map;
  for (const Shard& shard : shards) {
    DF11_RETURN_IF_ERROR(WriteShard(JoinPath(out_dir, shard.file_name), shard, o, threads,
                                    progress.get()));
    for (const PlannedTensor& t : shard.tensors) weight_map[t.name] = shard.file_name;
  }
  if (progress) progress->Finish();
  if (shards.size() > 1) DF11_RETURN_IF_ERROR(WriteCheckpointIndex(out_dir, weight_map, total_bytes));
  DF11_RETURN_IF_ERROR(
      WriteFileAtomic(JoinPath(out_dir, "config.json"), config_json.dump(2) + "\n"));
  return staged.Commit();
}

}  // namespace df11
