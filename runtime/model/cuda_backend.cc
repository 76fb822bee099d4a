// SPDX-License-Identifier: Apache-2.0
// CudaBackend's forward steps: the host side of a step, the per-layer work on the compute and
// decode streams, the LM head, graph capture and replay (set-up is in cuda_backend_setup.cc).
#include "runtime/model/cuda_backend.h"

#include <cublas_v2.h>
#include <glog/logging.h>

#include <algorithm>

#include "kernels/activation/activation.h"
#include "kernels/attention/attention.h"
#include "kernels/common/check.h"
#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/embedding/embedding.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_gemm_tc.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/gemm/gemm.h"
#include "kernels/paged_attention/paged_attention.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/sampling/sampling.h"
#include "runtime/model/forward.h"

namespace df11 {

int64_t CudaBackend::ScratchBytes() const {
  const int64_t head = head_scratch_ != nullptr ? 2 * head_chunk_ * w_->config.hidden_size : 0;
  const int64_t ew4 = ew4_scratch_ != nullptr ? 2 * ew4_scratch_elements_ : 0;
  return 2 * 2 * scratch_elements_ + head + ew4 + 4 * ew4_workspace_floats_;
}

void CudaBackend::Synchronize() { DF11_CUDA_CHECK(cudaStreamSynchronize(compute_)); }

void CudaBackend::DestroyGraph() {
  if (graph_.exec != nullptr) DF11_CUDA_CHECK(cudaGraphExecDestroy(graph_.exec));
  graph_.exec = nullptr;
  graph_.key.clear();
  graph_.last_key.clear();
}

Status CudaBackend::Prepare(std::span<const SequenceStep> steps, bool all_tokens, bool appends) {
  DF11_CUDA_CHECK(cudaSetDevice(options_.device));
  const int64_t T = TotalTokens(steps);
  step_.rows.clear();
  int64_t t0 = 0;
  for (const SequenceStep& s : steps) {
    const KvCache& c = *s.cache;
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    DF11_RETURN_IF_ERROR(CheckKvTables(c, n, appends, kv_));
    // Every token's row, or the last drafts + 1 (speculative decoding: the drafted tokens' rows
    // too; LogitsRows counts the same).
    const int64_t want = all_tokens ? n : std::min(n, s.drafts + 1);
    for (int64_t j = n - want; j < n; ++j) step_.rows.push_back(t0 + j);
    t0 += n;
  }
  step_.rows_identity = static_cast<int64_t>(step_.rows.size()) == T;
  GrowActivations(std::max(T, static_cast<int64_t>(steps.size())),
                  static_cast<int64_t>(step_.rows.size()));
  step_.tokens = T;
  Activations& a = *act_;
  int64_t t = 0;
  const int64_t S = static_cast<int64_t>(steps.size());  // <= a.tokens (GrowActivations above)
  step_.sequences = S;
  for (int64_t i = 0; i < S; ++i) {
    const SequenceStep& s = steps[i];
    for (size_t j = 0; j < s.tokens.size(); ++j, ++t) {
      a.h_positions[t] = static_cast<int32_t>(s.cache->length + static_cast<int64_t>(j));
      a.h_ids[t] = s.tokens[j];
      a.h_seq[t] = static_cast<int32_t>(i);
    }
    const KvCache& c = *s.cache;
    int32_t* table = a.h_kv_tables + i * kv_.table_stride;
    std::fill(std::copy(c.blocks.begin(), c.blocks.end(), table), table + kv_.table_stride, 0);
    if (kv_.window == 0) continue;
    // The sliding-window layers' own table, or the full one where the cache has none; released
    // entries (-1) stay, the kernels never reach them (CheckKvTables).
    const std::vector<int32_t>& sliding = c.sliding_blocks.empty() ? c.blocks : c.sliding_blocks;
    table = a.h_kv_sliding_tables + i * kv_.table_stride;
    std::fill(std::copy(sliding.begin(), sliding.end(), table), table + kv_.table_stride, 0);
  }
  if (appends) EnqueueBlockCopies(steps);
  return Status::Ok();
}

void CudaBackend::EnqueueBlockCopies(std::span<const SequenceStep> steps) {
  // Rare (a write into a shared block), so plain device-to-device copies, before the step; each
  // group's in its own layers (a cache without a sliding table: the full ones in every layer).
  const int64_t block = 2 * kv_.block_tokens * w_->dims.kv_heads * w_->config.head_dim;  // bytes
  for (const SequenceStep& s : steps) {
    const bool apart = !s.cache->sliding_blocks.empty();
    for (size_t l = 0; l < w_->layers.size(); ++l) {
      const auto& copies =
          kv_sliding_[l] && apart ? s.cache->sliding_block_copies : s.cache->block_copies;
      for (const auto& [from, to] : copies) {
        for (uint16_t* pool : {PoolK(l), PoolV(l)}) {
          DF11_CUDA_CHECK(cudaMemcpyAsync(reinterpret_cast<uint8_t*>(pool) + to * block,
                                          reinterpret_cast<uint8_t*>(pool) + from * block, block,
                                          cudaMemcpyDeviceToDevice, compute_));
        }
      }
    }
    s.cache->block_copies.clear();
    s.cache->sliding_block_copies.clear();
  }
}

void CudaBackend::EnqueueEmbed() {
  Activations& a = *act_;
  const int64_t T = step_.tokens, h = w_->config.hidden_size;
  const int64_t lo = w_->dims.vocab_begin, rows = w_->dims.vocab_rows;
  const float scale = w_->config.embedding_multiplier;
  if (T == 0) return;
  const DeviceMatrix& embed = Device(w_->embed);
  DF11_CUDA_CHECK(cudaMemcpyAsync(a.ids, a.h_ids, 4 * T, cudaMemcpyHostToDevice, compute_));
  if (embed.plain != nullptr) {
    EmbeddingGatherCuda(embed.plain, rows, h, a.ids, T, lo, scale, a.x, compute_);
    return;
  }
  // DF11 or ew4 table: decode just each token's row, then widen them with a gather over those
  // rows.
  int* flag = flags_ + w_->layers.size();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t id = a.h_ids[t];
    if (id >= lo && id < lo + rows) {
      const int64_t b = embed.begin + (id - lo) * h;
      if (embed.ew4 != nullptr) {
        Ew4DecodeRowsCuda(*embed.ew4, id - lo, id - lo + 1, a.embed_rows + t * h, compute_);
      } else {
        Df11DecodeCuda(*embed.unit, b, b + h, a.embed_rows + t * h, flag, compute_);
      }
      a.h_gather[t] = static_cast<int32_t>(t);
    } else {
      a.h_gather[t] = -1;  // outside this shard's rows: a zero row
    }
  }
  DF11_CUDA_CHECK(cudaMemcpyAsync(a.gather, a.h_gather, 4 * T, cudaMemcpyHostToDevice, compute_));
  EmbeddingGatherCuda(a.embed_rows, T, h, a.gather, T, 0, scale, a.x, compute_);
}

void CudaBackend::EnqueueDecode(size_t layer, cudaStream_t stream) {
  int* flag = flags_ + layer;
  for (const Weight* w : w_->layers[layer].Matrices()) {
    const DeviceMatrix& m = Device(*w);
    if (m.unit == nullptr) continue;
    Df11DecodeCuda(*m.unit, m.begin, m.begin + w->numel(), scratch_[m.slot] + m.offset, flag,
                   stream, stream == decode_ ? options_.forward.decode_grid_fraction : 1.0);
  }
}

void CudaBackend::EnqueueDecodeAhead(size_t layer) {
  // The decode stream starts after everything queued so far (the previous step's reads of the
  // scratch buffers included); under capture this forks it into the graph.
  if (!layer_compressed_[layer]) return;
  if (layer >= 2) DF11_CUDA_CHECK(cudaStreamWaitEvent(decode_, consumed_[layer % 2], 0));
  EnqueueDecode(layer, decode_);
  DF11_CUDA_CHECK(cudaEventRecord(decoded_[layer % 2], decode_));
}

Status CudaBackend::BeginLayer(size_t layer) {
  if (step_.overlap) {
    if (layer + 1 < layer_compressed_.size()) EnqueueDecodeAhead(layer + 1);
    if (layer_compressed_[layer]) {
      DF11_CUDA_CHECK(cudaStreamWaitEvent(compute_, decoded_[layer % 2], 0));
    }
  } else if (layer_compressed_[layer]) {
    EnqueueDecode(layer, compute_);
  }
  return Status::Ok();  // a corrupt stream raises its layer's flag, read by Finish
}

void CudaBackend::EndLayer(size_t layer) {
  if (step_.overlap) DF11_CUDA_CHECK(cudaEventRecord(consumed_[layer % 2], compute_));
}

void CudaBackend::RmsNorm(const float* x, const Vector& w, float weight_offset, float eps,
                          int64_t rows, int64_t cols, float* out) {
  RmsNormCuda(x, Device(&w), weight_offset, eps, rows, cols, out, compute_);
}

void CudaBackend::Linear(const float* x, int64_t tokens, const Weight& w, const Vector* bias,
                         float* y) {
  const DeviceMatrix& m = Device(w);
  if (m.ew4 == nullptr) {
    GemmBf16Cuda(x, Placed(m), Device(bias), y, tokens, w.rows, w.cols, act_->x_bf16, cublas_,
                 compute_);
    return;
  }
  // No raw BF16 copy of an ew4 matrix is kept, so cuBLAS BF16 on one is never allowed.
  switch (options_.ew4_gemm_table.Choose(w.rows, w.cols, tokens, /*bf16_copy_allowed=*/false)) {
    case Ew4GemmPath::kGemv:
      Ew4GemvCuda(x, *m.ew4, Device(bias), y, tokens, ew4_workspace_, compute_);
      break;
    case Ew4GemmPath::kTensorCore:
      Ew4GemmTcCuda(x, *m.ew4, Device(bias), y, tokens, act_->x_bf16, ew4_workspace_, compute_);
      break;
    default:
      Ew4DecodeRowsCuda(*m.ew4, 0, w.rows, ew4_scratch_, compute_);
      GemmBf16Cuda(x, ew4_scratch_, Device(bias), y, tokens, w.rows, w.cols, act_->x_bf16,
                   cublas_, compute_);
  }
}

void CudaBackend::Rope(float* x, int64_t heads, bool local) {
  RopeCuda(x, step_.tokens, heads, w_->config.head_dim, act_->positions, inv_freq_[local],
           rope_scaling_[local], compute_);
}

void CudaBackend::Attention(size_t layer, const float* q, const float* k, const float* v,
                            const AttentionParams& params, float* out) {
  // The step's K/V rows go to their blocks first (BF16), then every query reads its visible
  // positions through its table, its own step's rows included, as the CPU backend does.
  const Activations& a = *act_;
  const int64_t hd = w_->config.head_dim, nh = w_->dims.heads, nkv = w_->dims.kv_heads;
  // A sliding-window layer goes through its group's tables and blocks.
  const int32_t* tables = kv_sliding_[layer] ? a.kv_sliding_tables : a.kv_tables;
  PagedKvAppendCudaBatched(k, v, step_.tokens, nkv * hd, tables, kv_.table_stride, kv_.block_tokens,
                           a.seq, a.positions, PoolK(layer), PoolV(layer), compute_);
  PagedAttentionCudaBatched(q, PoolK(layer), PoolV(layer), tables, kv_.table_stride,
                            kv_.block_tokens, a.seq, a.positions, step_.tokens, nh, nkv, hd, params,
                            out, compute_);
}

void CudaBackend::GatedActivation(GateActivation act, float* gate, const float* up, int64_t n) {
  GatedActivationCuda(act, gate, up, gate, n, compute_);
}

void CudaBackend::Add(float* x, const float* y, int64_t n) { AddCuda(x, y, n, compute_); }

void CudaBackend::Softcap(float* x, int64_t n, float cap) { SoftcapCuda(x, n, cap, compute_); }

void CudaBackend::AllReduce(float* x, int64_t n) {
  if (options_.all_reduce) options_.all_reduce(x, n, compute_);
}

Status CudaBackend::LmHead(const float* x, int64_t rows, const Weight& head, float* logits) {
  // The same chunks for BF16 and DF11 heads (and ew4 when decoded), so they multiply
  // identically; an ew4 head the fused kernels take (Linear's choice) is multiplied whole.
  const Activations& a = *act_;
  const DeviceMatrix& m = Device(head);
  const int64_t h = head.cols, V = head.rows;
  if (m.ew4 != nullptr) {
    switch (options_.ew4_gemm_table.Choose(V, h, rows, /*bf16_copy_allowed=*/false)) {
      case Ew4GemmPath::kGemv:
        Ew4GemvCuda(x, *m.ew4, nullptr, logits, rows, ew4_workspace_, compute_);
        return Status::Ok();
      case Ew4GemmPath::kTensorCore:
        Ew4GemmTcCuda(x, *m.ew4, nullptr, logits, rows, a.x_bf16, ew4_workspace_, compute_);
        return Status::Ok();
      default:
        break;
    }
  }
  int* flag = flags_ + w_->layers.size() + 1;
  for (int64_t r0 = 0; r0 < V; r0 += head_chunk_) {
    const int64_t r1 = std::min(V, r0 + head_chunk_), n = r1 - r0;
    const uint16_t* weight = m.plain != nullptr ? m.plain + r0 * h : head_scratch_;
    if (m.ew4 != nullptr) {
      Ew4DecodeRowsCuda(*m.ew4, r0, r1, head_scratch_, compute_);
    } else if (m.plain == nullptr) {
      Df11DecodeCuda(*m.unit, m.begin + r0 * h, m.begin + r1 * h, head_scratch_, flag, compute_);
    }
    if (n == V) {
      GemmBf16Cuda(x, weight, nullptr, logits, rows, V, h, a.x_bf16, cublas_, compute_);
    } else {
      GemmBf16Cuda(x, weight, nullptr, a.chunk, rows, n, h, a.x_bf16, cublas_, compute_);
      DF11_CUDA_CHECK(cudaMemcpy2DAsync(logits + r0, 4 * V, a.chunk, 4 * n, 4 * n, rows,
                                        cudaMemcpyDeviceToDevice, compute_));
    }
  }
  return Status::Ok();  // a corrupt stream raises the LM head's flag, read by Finish
}

void CudaBackend::EnqueueLayers() {
  Activations& a = *act_;
  const int64_t T = step_.tokens;
  DF11_CUDA_CHECK(cudaMemcpyAsync(a.positions, a.h_positions, 4 * T, cudaMemcpyHostToDevice,
                                  compute_));
  DF11_CUDA_CHECK(cudaMemcpyAsync(a.seq, a.h_seq, 4 * T, cudaMemcpyHostToDevice, compute_));
  DF11_CUDA_CHECK(cudaMemcpyAsync(a.kv_tables, a.h_kv_tables, KvTableBytes(step_.sequences),
                                  cudaMemcpyHostToDevice, compute_));
  if (kv_.window > 0) {
    DF11_CUDA_CHECK(cudaMemcpyAsync(a.kv_sliding_tables, a.h_kv_sliding_tables,
                                    KvTableBytes(step_.sequences), cudaMemcpyHostToDevice,
                                    compute_));
  }
  step_.overlap = options_.forward.overlap_decode &&
             std::find(layer_compressed_.begin(), layer_compressed_.end(), true) !=
                 layer_compressed_.end();
  if (step_.overlap) {
    DF11_CUDA_CHECK(cudaEventRecord(fork_, compute_));
    DF11_CUDA_CHECK(cudaStreamWaitEvent(decode_, fork_, 0));
    if (!layer_compressed_.empty()) EnqueueDecodeAhead(0);
  }
  StepActivations step{a.x, a.xn, a.q, a.k, a.v, a.attn, a.proj, a.gate, a.up};
  // This backend's ops report corrupt streams through the flags (Finish), never as a Status.
  const Status layers = df11::RunLayers(LayerContext{w_, options_.tp_leader}, T, *this, step);
  DF11_CHECK_MSG(layers.ok(), layers.ToString());
  if (step_.overlap) {
    // Join the decode stream back (a capture must end with every forked stream joined).
    DF11_CUDA_CHECK(cudaEventRecord(fork_, decode_));
    DF11_CUDA_CHECK(cudaStreamWaitEvent(compute_, fork_, 0));
  }
}

void CudaBackend::EnqueueHead(bool argmax) {
  Activations& a = *act_;
  const int64_t h = w_->config.hidden_size, V = w_->dims.vocab_rows;
  const int64_t R = static_cast<int64_t>(step_.rows.size());
  if (R == 0) return;
  const float* src = a.x;
  if (!step_.rows_identity) {
    for (int64_t r = 0; r < R; ++r) {
      DF11_CUDA_CHECK(cudaMemcpyAsync(a.proj + r * h, a.x + step_.rows[r] * h, 4 * h,
                                      cudaMemcpyDeviceToDevice, compute_));
    }
    src = a.proj;
  }
  const Status head = RunHead(*w_, src, R, *this, a.xn, a.logits);
  DF11_CHECK_MSG(head.ok(), head.ToString());
  if (argmax) {
    for (int64_t r = 0; r < R; ++r) ArgmaxCuda(a.logits + r * V, V, a.argmax + r, compute_);
  }
}

void CudaBackend::EnqueueCore(std::span<const SequenceStep> steps, bool all_tokens, bool argmax) {
  auto enqueue = [&] {
    EnqueueLayers();
    EnqueueHead(argmax);
  };
  if (step_.tokens == 0) return;
  if (!options_.forward.cuda_graph || options_.all_reduce) {
    enqueue();
    return;
  }
  // The graph depends on the buffers (fixed until they grow, which drops it) and each sequence's
  // token and draft counts (the logit rows); positions, sequence indices and cache pointers are
  // uploaded inside it, so sequences that finish and are replaced keep the graph.
  std::vector<int64_t> key = {all_tokens ? 1 : 0, argmax ? 1 : 0, step_.tokens};
  for (const SequenceStep& s : steps) {
    key.push_back(static_cast<int64_t>(s.tokens.size()));
    key.push_back(s.drafts);
  }
  if (graph_.exec == nullptr || key != graph_.key) {
    if (key != graph_.last_key) {  // first sight of this composition: run it plainly
      graph_.last_key = key;
      enqueue();
      return;
    }
    if (graph_.exec != nullptr) DF11_CUDA_CHECK(cudaGraphExecDestroy(graph_.exec));
    graph_.exec = nullptr;
    cudaGraph_t graph = nullptr;
    DF11_CUDA_CHECK(cudaStreamBeginCapture(compute_, cudaStreamCaptureModeThreadLocal));
    enqueue();
    DF11_CUDA_CHECK(cudaStreamEndCapture(compute_, &graph));
    DF11_CUDA_CHECK(cudaGraphInstantiate(&graph_.exec, graph, 0));
    DF11_CUDA_CHECK(cudaGraphDestroy(graph));
    graph_.key = key;
    ++graph_.captures;
    VLOG(1) << "captured a CUDA graph for " << steps.size() << " sequences, " << step_.tokens
            << " tokens";
  }
  DF11_CUDA_CHECK(cudaGraphLaunch(graph_.exec, compute_));
  ++graph_.replays;
}

Status CudaBackend::Finish() {
  const int64_t n_flags = static_cast<int64_t>(w_->layers.size()) + 2;
  DF11_CUDA_CHECK(cudaMemcpyAsync(host_flags_, flags_, 4 * n_flags, cudaMemcpyDeviceToHost,
                                  compute_));
  DF11_CUDA_CHECK(cudaStreamSynchronize(compute_));
  for (int64_t i = 0; i < n_flags; ++i) {
    if (host_flags_[i] == 0) continue;
    const int bits = host_flags_[i];
    DF11_CUDA_CHECK(cudaMemsetAsync(flags_, 0, 4 * n_flags, compute_));
    DF11_CUDA_CHECK(cudaStreamSynchronize(compute_));
    std::string where;
    const int64_t layers = static_cast<int64_t>(w_->layers.size());
    if (i < layers) {
      where = "layer " + std::to_string(w_->first_layer + i);
      for (const Weight* m : w_->layers[i].Matrices()) {
        if (m->unit != nullptr) {
          where += " (unit " + m->unit->name + ")";
          break;
        }
      }
    } else {
      const Weight& m = i == layers ? w_->embed : w_->lm_head;
      where = std::string(i == layers ? "the embedding" : "the LM head") + " (unit " +
              (m.unit != nullptr ? m.unit->name : std::string("?")) + ")";
    }
    return Status::Corruption("DF11 stream corrupt while decoding " + where +
                              " on the GPU: error bits " + std::to_string(bits) +
                              " (1 bad code, 2 gap mismatch, 4 count mismatch, 8 past the end)");
  }
  return Status::Ok();
}

Status CudaBackend::Embed(std::span<const SequenceStep> steps, float* hidden) {
  DF11_RETURN_IF_ERROR(Prepare(steps, false, false));
  EnqueueEmbed();
  const int64_t bytes = 4 * step_.tokens * w_->config.hidden_size;
  if (bytes > 0) {
    DF11_CUDA_CHECK(cudaMemcpyAsync(hidden, act_->x, bytes, cudaMemcpyDeviceToHost, compute_));
  }
  return Finish();
}

Status CudaBackend::RunLayers(std::span<const SequenceStep> steps, float* hidden) {
  DF11_RETURN_IF_ERROR(Prepare(steps, false, true));
  const int64_t bytes = 4 * step_.tokens * w_->config.hidden_size;
  if (bytes > 0) {
    DF11_CUDA_CHECK(cudaMemcpyAsync(act_->x, hidden, bytes, cudaMemcpyHostToDevice, compute_));
    EnqueueLayers();
    DF11_CUDA_CHECK(cudaMemcpyAsync(hidden, act_->x, bytes, cudaMemcpyDeviceToHost, compute_));
  }
  DF11_RETURN_IF_ERROR(Finish());
  for (const SequenceStep& s : steps) s.cache->length += static_cast<int64_t>(s.tokens.size());
  return Status::Ok();
}

Status CudaBackend::Logits(std::span<const SequenceStep> steps, const float* hidden,
                           bool all_tokens, std::vector<float>* logits) {
  // The caches already hold these tokens (RunLayers appended them).
  DF11_RETURN_IF_ERROR(Prepare(steps, all_tokens, false));
  const int64_t V = w_->dims.vocab_rows, R = static_cast<int64_t>(step_.rows.size());
  const int64_t bytes = 4 * step_.tokens * w_->config.hidden_size;
  logits->assign(static_cast<size_t>(R * V), 0.0f);
  if (bytes > 0) {
    DF11_CUDA_CHECK(cudaMemcpyAsync(act_->x, hidden, bytes, cudaMemcpyHostToDevice, compute_));
  }
  EnqueueHead(false);
  if (R > 0) {
    DF11_CUDA_CHECK(cudaMemcpyAsync(logits->data(), act_->logits, 4 * R * V,
                                    cudaMemcpyDeviceToHost, compute_));
  }
  return Finish();
}

Status CudaBackend::Forward(std::span<const SequenceStep> steps, bool all_tokens,
                            std::vector<float>* logits) {
  DF11_RETURN_IF_ERROR(Prepare(steps, all_tokens, true));
  const int64_t V = w_->dims.vocab_rows, R = static_cast<int64_t>(step_.rows.size());
  logits->assign(static_cast<size_t>(R * V), 0.0f);
  EnqueueEmbed();
  EnqueueCore(steps, all_tokens, false);
  if (R > 0) {
    DF11_CUDA_CHECK(cudaMemcpyAsync(logits->data(), act_->logits, 4 * R * V,
                                    cudaMemcpyDeviceToHost, compute_));
  }
  DF11_RETURN_IF_ERROR(Finish());
  for (const SequenceStep& s : steps) s.cache->length += static_cast<int64_t>(s.tokens.size());
  return Status::Ok();
}

Status CudaBackend::ForwardArgmax(std::span<const SequenceStep> steps, std::vector<int32_t>* ids) {
  DF11_RETURN_IF_ERROR(Prepare(steps, false, true));
  const int64_t R = static_cast<int64_t>(step_.rows.size());
  EnqueueEmbed();
  EnqueueCore(steps, false, true);
  if (R > 0) {
    DF11_CUDA_CHECK(cudaMemcpyAsync(act_->h_argmax, act_->argmax, 4 * R, cudaMemcpyDeviceToHost,
                                    compute_));
  }
  DF11_RETURN_IF_ERROR(Finish());
  ids->assign(act_->h_argmax, act_->h_argmax + R);
  for (const SequenceStep& s : steps) s.cache->length += static_cast<int64_t>(s.tokens.size());
  return Status::Ok();
}

Status CudaBackend::ForwardSample(std::span<const SequenceStep> steps,
                                  std::span<const SampleSpec> specs, std::vector<int32_t>* tokens,
                                  std::vector<uint64_t>* rngs) {
  const int64_t V = w_->dims.vocab_rows;
  const bool one_row_each = std::all_of(steps.begin(), steps.end(),
                                        [](const SequenceStep& s) { return !s.tokens.empty(); });
  if (V != w_->config.vocab_size || specs.size() != steps.size() || !one_row_each) {
    return ForwardBackend::ForwardSample(steps, specs, tokens, rngs);
  }
  DF11_RETURN_IF_ERROR(Prepare(steps, false, true));
  const int64_t R = static_cast<int64_t>(step_.rows.size());
  EnqueueEmbed();
  EnqueueCore(steps, false, false);
  // Rows, history and outputs travel through one pinned buffer; the uniform each row may use is
  // its request's next draw, committed below only where the row drew.
  int64_t n_history = 0;
  for (const SampleSpec& s : specs) n_history += static_cast<int64_t>(s.history.size());
  auto align = [](size_t n) { return (n + 255) & ~size_t{255}; };
  const size_t info_bytes = align(sizeof(SampleCudaRow) * static_cast<size_t>(std::max<int64_t>(R, 1)));
  const size_t history_bytes = align(4 * static_cast<size_t>(std::max<int64_t>(n_history, 1)));
  const size_t out_bytes = align(8 * static_cast<size_t>(std::max<int64_t>(R, 1)));
  const size_t host_bytes = info_bytes + history_bytes + out_bytes;
  const size_t device_bytes = host_bytes + SampleCudaWorkspaceBytes(R, V);
  if (device_bytes > sample_.device_bytes) {
    DF11_CUDA_CHECK(cudaStreamSynchronize(compute_));
    if (sample_.device != nullptr) DF11_CUDA_CHECK(cudaFree(sample_.device));
    DF11_CUDA_CHECK(cudaMalloc(&sample_.device, device_bytes));
    sample_.device_bytes = device_bytes;
  }
  if (host_bytes > sample_.host_bytes) {
    DF11_CUDA_CHECK(cudaStreamSynchronize(compute_));
    if (sample_.host != nullptr) DF11_CUDA_CHECK(cudaFreeHost(sample_.host));
    DF11_CUDA_CHECK(cudaMallocHost(&sample_.host, host_bytes));
    sample_.host_bytes = host_bytes;
  }
  uint8_t* host = static_cast<uint8_t*>(sample_.host);
  uint8_t* device = static_cast<uint8_t*>(sample_.device);
  auto* info = reinterpret_cast<SampleCudaRow*>(host);
  auto* history = reinterpret_cast<int32_t*>(host + info_bytes);
  auto* out = reinterpret_cast<int32_t*>(host + info_bytes + history_bytes);  // tokens, drew
  std::vector<uint64_t> after(static_cast<size_t>(R));
  int64_t h = 0;
  for (int64_t r = 0; r < R; ++r) {
    const SampleSpec& s = specs[static_cast<size_t>(r)];
    DF11_CHECK(InvalidSamplingField(s.params, nullptr) == SamplingField::kNone);  // the engine's
    info[r] = SampleCudaRow{};
    info[r].params = s.params;
    info[r].history_begin = h;
    for (int32_t id : s.history) history[h++] = id;
    info[r].history_end = h;
    after[static_cast<size_t>(r)] = s.rng;
    info[r].uniform = SampleUniform(&after[static_cast<size_t>(r)]);
  }
  if (R > 0) {
    DF11_CUDA_CHECK(cudaMemcpyAsync(device, host, info_bytes + history_bytes,
                                    cudaMemcpyHostToDevice, compute_));
    auto* d_out = reinterpret_cast<int32_t*>(device + info_bytes + history_bytes);
    SampleCuda(act_->logits, R, V, reinterpret_cast<const SampleCudaRow*>(device),
               reinterpret_cast<const int32_t*>(device + info_bytes), device + host_bytes, d_out,
               d_out + R, compute_);
    DF11_CUDA_CHECK(cudaMemcpyAsync(out, d_out, 8 * R, cudaMemcpyDeviceToHost, compute_));
  }
  DF11_RETURN_IF_ERROR(Finish());
  tokens->assign(out, out + R);
  rngs->clear();
  for (int64_t r = 0; r < R; ++r) {
    rngs->push_back(out[R + r] != 0 ? after[static_cast<size_t>(r)]
                                    : specs[static_cast<size_t>(r)].rng);
  }
  for (const SequenceStep& s : steps) s.cache->length += static_cast<int64_t>(s.tokens.size());
  return Status::Ok();
}

}  // namespace df11
