// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/activation/activation.h"
#include "kernels/attention/attention.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"
#include "kernels/embedding/embedding.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/gemm/gemm.h"
#include "kernels/paged_attention/paged_attention.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "runtime/model/forward.h"

namespace df11 {
namespace {

const uint16_t* OrNull(const Vector* v) {
  return v == nullptr || v->empty() ? nullptr : v->data();
}

}  // namespace

CpuBackend::CpuBackend(const ModelWeights* weights, const CpuBackendOptions& options)
    : w_(weights), options_(options),
      threads_(options.forward.threads > 0 ? options.forward.threads : DefaultThreadCount()) {
  const ModelConfig& c = w_->config;
  for (bool local : {false, true}) {
    inv_freq_[local] = RopeInvFreq(RopeParamsOf(c, local));
    rope_scaling_[local] = RopeAttentionScaling(RopeParamsOf(c, local));
  }
  const int64_t scratch = w_->MaxLayerScratch();
  for (auto& s : scratch_) s.resize(static_cast<size_t>(scratch));
  placed_.assign(static_cast<size_t>(w_->matrix_count), nullptr);
  std::vector<int64_t> windows;  // this rank's layers'
  for (size_t l = 0; l < w_->layers.size(); ++l) {
    windows.push_back(LayerWindow(c, w_->first_layer + static_cast<int64_t>(l)));
  }
  kv_pool_ = std::make_shared<KvPool>(windows, w_->dims.kv_heads * c.head_dim,
                                      options.forward.kv_block_tokens);
  for (const LayerWeights& l : w_->layers) {
    for (const Weight* m : l.Matrices()) {
      if (!m->decoded_to_scratch()) placed_[m->id] = m->bf16;
    }
  }
}

CpuBackend::~CpuBackend() {
  if (decoding_.valid()) decoding_.wait();
}

int64_t CpuBackend::ScratchBytes() const {
  return 2 * static_cast<int64_t>(scratch_[0].size() + scratch_[1].size() +
                                  head_scratch_.size());
}

int64_t CpuBackend::KvTokenBudget() const {
  const int64_t per_token = kv_pool_->BytesPerToken();
  if (options_.kv_memory_bytes <= 0 || per_token <= 0) return 0;
  return std::max<int64_t>(
      1, static_cast<int64_t>(static_cast<double>(options_.kv_memory_bytes) / per_token));
}

KvCache CpuBackend::NewCache(int64_t capacity) const {
  return kv_pool_->NewCache(capacity);
}

Status CpuBackend::DecodeInto(const Weight& m, int64_t row_begin, int64_t row_end,
                              uint16_t* out) {
  switch (m.codec) {
    case WeightCodec::kBf16:
      std::memcpy(out, m.bf16 + row_begin * m.cols, 2 * (row_end - row_begin) * m.cols);
      return Status::Ok();
    case WeightCodec::kEw4:
      Ew4DecodeRowsRef(m.ew4, row_begin, row_end, threads_, out);
      return Status::Ok();
    case WeightCodec::kDf11:
      break;
  }
  return DecodeDf11Unit(*m.unit, m.begin + row_begin * m.cols, m.begin + row_end * m.cols,
                        threads_, out);
}

Status CpuBackend::Materialize(size_t layer) {
  uint16_t* scratch = scratch_[layer % 2].data();
  int64_t offset = 0;
  for (const Weight* m : w_->layers[layer].Matrices()) {
    if (!m->decoded_to_scratch()) continue;
    uint16_t* dst = scratch + offset;
    offset += m->numel();
    DF11_RETURN_IF_ERROR(DecodeInto(*m, 0, m->rows, dst));
    placed_[m->id] = dst;
  }
  return Status::Ok();
}

Status CpuBackend::BeginLayer(size_t layer) {
  // Layer 0's decode is started by RunLayers; each later one by the layer before (overlapped:
  // in BeginLayer, so it runs while this layer computes; else in EndLayer).
  DF11_RETURN_IF_ERROR(decoding_.get());
  if (options_.forward.overlap_decode && layer + 1 < w_->layers.size()) {
    decoding_ = RunInBackground([this, layer] { return Materialize(layer + 1); });
  }
  return Status::Ok();
}

void CpuBackend::EndLayer(size_t layer) {
  if (!options_.forward.overlap_decode && layer + 1 < w_->layers.size()) {
    decoding_ = RunInBackground([this, layer] { return Materialize(layer + 1); });
  }
}

void CpuBackend::RmsNorm(const float* x, const Vector& w, float weight_offset, float eps,
                         int64_t rows, int64_t cols, float* out) {
  RmsNormRef(x, w.data(), weight_offset, eps, rows, cols, out);
}

void CpuBackend::Linear(const float* x, int64_t tokens, const Weight& w, const Vector* bias,
                        float* y) {
  if (w.codec != WeightCodec::kEw4) {
    GemmBf16Cpu(x, placed_[w.id], OrNull(bias), y, tokens, w.rows, w.cols, threads_);
  } else if (tokens <= kEw4GemvMaxBatch) {
    Ew4GemvCpu(x, w.ew4, OrNull(bias), y, tokens, threads_);
  } else {
    Ew4GemmCpu(x, w.ew4, OrNull(bias), y, tokens, threads_);  // tiles decoded as multiplied
  }
}

void CpuBackend::Rope(float* x, int64_t heads, bool local) {
  RopeRef(x, static_cast<int64_t>(positions_.size()), heads, w_->config.head_dim,
          positions_.data(), inv_freq_[local].data(), rope_scaling_[local]);
}

void CpuBackend::Attention(size_t layer, const float* q, const float* k, const float* v,
                           const AttentionParams& params, float* out) {
  const int64_t hd = w_->config.head_dim, nh = w_->dims.heads, nkv = w_->dims.kv_heads;
  const int64_t row = nkv * hd;
  // Each sequence's new rows go to its blocks (BF16); the rows its queries see come back as FP32
  // (kv_rows_: K then V per sequence), positions counted from the first visible one. A
  // sliding-window layer goes through its own table where the cache has one.
  std::vector<int64_t> first(steps_.size()), at(steps_.size() + 1, 0);
  for (size_t i = 0; i < steps_.size(); ++i) {
    const KvCache& cache = *steps_[i].cache;
    const int64_t n = static_cast<int64_t>(steps_[i].tokens.size());
    first[i] = FirstVisiblePosition(cache.length + n, n, params.window);
    at[i + 1] = at[i] + 2 * (cache.length + n - first[i]) * row;
  }
  kv_rows_.resize(static_cast<size_t>(at.back()));
  std::vector<AttentionSequence> sequences;
  int64_t t0 = 0;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const KvCache& cache = *steps_[i].cache;
    const int64_t n = static_cast<int64_t>(steps_[i].tokens.size());
    const int64_t visible = cache.length + n - first[i];
    const int32_t* table = kv_pool_->sliding(layer) && !cache.sliding_blocks.empty()
                               ? cache.sliding_blocks.data()
                               : cache.blocks.data();
    PagedKvAppendRef(k + t0 * row, v + t0 * row, n, row, cache.length, table, cache.block_tokens,
                     kv_pool_->k(layer), kv_pool_->v(layer));
    float* k_rows = kv_rows_.data() + at[i];
    float* v_rows = k_rows + visible * row;
    PagedKvGatherRef(kv_pool_->k(layer), kv_pool_->v(layer), table, cache.block_tokens, row,
                     first[i], cache.length + n, k_rows, v_rows);
    // The step's own rows are read back too (BF16, as the cache keeps them).
    const int64_t past = visible - n;
    const KvSource kv{k_rows, v_rows, past, k_rows + past * row, v_rows + past * row};
    sequences.push_back({q + t0 * nh * hd, kv, n, out + t0 * nh * hd});
    t0 += n;
  }
  // All sequences at once: (sequence, head, query block) items spread over the threads;
  // bit-identical to PagedAttentionRef of each.
  AttentionCpu(sequences, nh, nkv, hd, params, threads_);
}

void CpuBackend::GatedActivation(GateActivation act, float* gate, const float* up, int64_t n) {
  GatedActivationRef(act, gate, up, gate, n);
}

void CpuBackend::Add(float* x, const float* y, int64_t n) { AddRef(x, y, n); }

void CpuBackend::Softcap(float* x, int64_t n, float cap) { SoftcapRef(x, n, cap); }

void CpuBackend::AllReduce(float* x, int64_t n) {
  if (options_.all_reduce) options_.all_reduce(x, n);
}

Status CpuBackend::LmHead(const float* x, int64_t rows, const Weight& head, float* logits) {
  if (head.codec == WeightCodec::kEw4) {  // (rows, V) written in place, as the chunks below
    if (rows <= kEw4GemvMaxBatch) {
      Ew4GemvCpu(x, head.ew4, nullptr, logits, rows, threads_);
    } else {
      Ew4GemmCpu(x, head.ew4, nullptr, logits, rows, threads_);
    }
    return Status::Ok();
  }
  // In chunks of rows, the same for every codec so all compute identically.
  const int64_t h = head.cols, V = head.rows, C = std::min(options_.lm_head_chunk, V);
  if (head.compressed()) head_scratch_.resize(static_cast<size_t>(C * h));
  std::vector<float> y(rows * C);
  for (int64_t r0 = 0; r0 < V; r0 += C) {
    const int64_t r1 = std::min(V, r0 + C);
    const uint16_t* w = head.bf16 + r0 * h;
    if (head.compressed()) {
      DF11_RETURN_IF_ERROR(DecodeInto(head, r0, r1, head_scratch_.data()));
      w = head_scratch_.data();
    }
    GemmBf16Cpu(x, w, nullptr, y.data(), rows, r1 - r0, h, threads_);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(logits + r * V + r0, y.data() + r * (r1 - r0), 4 * (r1 - r0));
    }
  }
  return Status::Ok();
}

Status CpuBackend::Embed(std::span<const SequenceStep> steps, float* hidden) {
  const int64_t h = w_->config.hidden_size;
  const float scale = w_->config.embedding_multiplier;
  const Weight& e = w_->embed;
  const int64_t lo = w_->dims.vocab_begin, rows = w_->dims.vocab_rows;
  std::vector<uint16_t> row(static_cast<size_t>(h));
  int64_t t = 0;
  for (const SequenceStep& s : steps) {
    for (int32_t id : s.tokens) {
      float* out = hidden + t * h;
      if (!e.compressed()) {
        EmbeddingGatherRef(e.bf16, rows, h, &id, 1, lo, scale, out);
      } else if (id >= lo && id < lo + rows) {
        // Only the blocks holding this row are decoded.
        DF11_RETURN_IF_ERROR(DecodeInto(e, id - lo, id - lo + 1, row.data()));
        EmbeddingGatherRef(row.data(), 1, h, &id, 1, id, scale, out);
      } else {
        std::fill(out, out + h, 0.0f);
      }
      ++t;
    }
  }
  return Status::Ok();
}

Status CpuBackend::RunLayers(std::span<const SequenceStep> steps, float* x) {
  const int64_t T = TotalTokens(steps), h = w_->config.hidden_size, hd = w_->config.head_dim;
  const int64_t nh = w_->dims.heads, nkv = w_->dims.kv_heads, inter = w_->dims.intermediate;
  steps_ = steps;
  positions_.clear();
  for (const SequenceStep& s : steps) {
    DF11_CHECK(s.cache->length + static_cast<int64_t>(s.tokens.size()) <= s.cache->capacity);
    DF11_CHECK(s.cache->block_tokens == kv_pool_->block_tokens());  // one of this pool's caches
    // The sliding-window layers' blocks: their own table's, or the same as the others'.
    const bool apart = !s.cache->sliding_blocks.empty();
    for (int group : {0, 1}) {
      const std::vector<int32_t>& table =
          group == 1 && apart ? s.cache->sliding_blocks : s.cache->blocks;
      if (!table.empty()) {
        const int32_t top = *std::max_element(table.begin(), table.end());
        kv_pool_->EnsureBlocks(static_cast<int64_t>(top) + 1, group);
      }
    }
    for (const auto& [from, to] : s.cache->block_copies) {
      kv_pool_->CopyBlock(from, to, 0);
      if (!apart) kv_pool_->CopyBlock(from, to, 1);
    }
    for (const auto& [from, to] : s.cache->sliding_block_copies) kv_pool_->CopyBlock(from, to, 1);
    s.cache->block_copies.clear();
    s.cache->sliding_block_copies.clear();
    for (size_t j = 0; j < s.tokens.size(); ++j) {
      positions_.push_back(static_cast<int32_t>(s.cache->length + static_cast<int64_t>(j)));
    }
  }
  std::vector<float> xn(T * h), q(T * nh * hd), k(T * nkv * hd), v(T * nkv * hd),
      attn(T * nh * hd), proj(T * h), gate(T * inter), up(T * inter);
  StepActivations a{x, xn.data(), q.data(), k.data(), v.data(), attn.data(), proj.data(),
                    gate.data(), up.data()};
  if (!w_->layers.empty()) {
    decoding_ = RunInBackground([this] { return Materialize(0); });
  }
  const Status status = df11::RunLayers({w_, options_.tp_leader}, T, *this, a);
  if (decoding_.valid()) decoding_.wait();  // an error stopped the layers early
  if (!status.ok()) return status;
  for (const SequenceStep& s : steps) s.cache->length += static_cast<int64_t>(s.tokens.size());
  return Status::Ok();
}

Status CpuBackend::Logits(std::span<const SequenceStep> steps, const float* hidden,
                          bool all_tokens, std::vector<float>* logits) {
  const int64_t h = w_->config.hidden_size;
  // The rows whose logits are wanted.
  std::vector<int64_t> rows;
  int64_t t0 = 0;
  for (const SequenceStep& s : steps) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    // Drafted tokens (speculative decoding) need their rows too; other sequences only the last.
    const int64_t want = all_tokens ? n : std::min(n, s.drafts + 1);
    for (int64_t j = n - want; j < n; ++j) rows.push_back(t0 + j);
    t0 += n;
  }
  const int64_t R = static_cast<int64_t>(rows.size()), V = w_->dims.vocab_rows;
  std::vector<float> xs(R * h), xn(R * h);
  for (int64_t r = 0; r < R; ++r) std::memcpy(&xs[r * h], hidden + rows[r] * h, 4 * h);
  logits->assign(static_cast<size_t>(R * V), 0.0f);
  return RunHead(*w_, xs.data(), R, *this, xn.data(), logits->data());
}

Status CpuBackend::Forward(std::span<const SequenceStep> steps, bool all_tokens,
                           std::vector<float>* logits) {
  std::vector<float> hidden(TotalTokens(steps) * w_->config.hidden_size);
  DF11_RETURN_IF_ERROR(Embed(steps, hidden.data()));
  DF11_RETURN_IF_ERROR(RunLayers(steps, hidden.data()));
  return Logits(steps, hidden.data(), all_tokens, logits);
}

}  // namespace df11
