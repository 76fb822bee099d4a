// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/activation/activation.h"
#include "kernels/attention/attention.h"
#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"

namespace df11 {

struct Transformer::LayerView {
  const uint16_t* q;     // (heads * head_dim, hidden)
  const uint16_t* k;     // (kv_heads * head_dim, hidden)
  const uint16_t* v;     // (kv_heads * head_dim, hidden)
  const uint16_t* o;     // (hidden, heads * head_dim)
  const uint16_t* gate;  // (intermediate, hidden)
  const uint16_t* up;    // (intermediate, hidden)
  const uint16_t* down;  // (hidden, intermediate)
};

namespace {

const uint16_t* OrNull(const std::vector<uint16_t>& v) { return v.empty() ? nullptr : v.data(); }

}  // namespace

Transformer::Transformer(const ModelWeights* weights, const TransformerOptions& options)
    : w_(weights), options_(options),
      threads_(options.threads > 0 ? options.threads : DefaultThreadCount()) {
  const ModelConfig& c = w_->config;
  inv_freq_ = RopeInvFreq(RopeParamsOf(c));
  rope_scaling_ = RopeAttentionScaling(RopeParamsOf(c));
  const int64_t scratch = w_->MaxLayerScratch();
  for (auto& s : scratch_) s.resize(static_cast<size_t>(scratch));
}

Transformer::~Transformer() = default;

int64_t Transformer::ScratchBytes() const {
  return 2 * static_cast<int64_t>(scratch_[0].size() + scratch_[1].size() + head_scratch_.size());
}

int64_t Transformer::KvTokenBudget() const {
  const int64_t per_token = 2 * static_cast<int64_t>(w_->layers.size()) * w_->dims.kv_heads *
                            w_->config.head_dim * static_cast<int64_t>(sizeof(float));
  if (options_.kv_memory_bytes <= 0 || per_token <= 0) return 0;
  return std::max<int64_t>(1, options_.kv_memory_bytes / per_token);
}

KvCache Transformer::NewCache(int64_t capacity) const {
  return KvCache(static_cast<int64_t>(w_->layers.size()), capacity, w_->dims.kv_heads,
                 w_->config.head_dim);
}

Status Transformer::DecodeInto(const MatrixRef& m, int64_t row_begin, int64_t row_end,
                               uint16_t* out) {
  if (!m.compressed()) {
    std::memcpy(out, m.bf16 + row_begin * m.cols, 2 * (row_end - row_begin) * m.cols);
    return Status::Ok();
  }
  return DecodeDf11Unit(*m.unit, m.begin + row_begin * m.cols, m.begin + row_end * m.cols,
                        threads_, out);
}

Status Transformer::Materialize(size_t layer, std::vector<uint16_t>* scratch, LayerView* view) {
  const LayerWeights& l = w_->layers[layer];
  int64_t offset = 0;
  auto place = [&](const MatrixRef& m, const uint16_t** out) -> Status {
    if (!m.compressed()) {
      *out = m.bf16;
      return Status::Ok();
    }
    uint16_t* dst = scratch->data() + offset;
    offset += m.numel();
    *out = dst;
    return DecodeInto(m, 0, m.rows, dst);
  };
  DF11_RETURN_IF_ERROR(place(l.q, &view->q));
  DF11_RETURN_IF_ERROR(place(l.k, &view->k));
  DF11_RETURN_IF_ERROR(place(l.v, &view->v));
  DF11_RETURN_IF_ERROR(place(l.o, &view->o));
  DF11_RETURN_IF_ERROR(place(l.gate, &view->gate));
  DF11_RETURN_IF_ERROR(place(l.up, &view->up));
  return place(l.down, &view->down);
}

Status Transformer::Embed(std::span<const SequenceStep> steps, float* hidden) {
  const int64_t h = w_->config.hidden_size;
  const MatrixRef& e = w_->embed;
  const int64_t lo = w_->dims.vocab_begin, rows = w_->dims.vocab_rows;
  std::vector<uint16_t> row(static_cast<size_t>(h));
  int64_t t = 0;
  for (const SequenceStep& s : steps) {
    for (int32_t id : s.tokens) {
      float* out = hidden + t * h;
      if (!e.compressed()) {
        EmbeddingGatherRef(e.bf16, rows, h, &id, 1, lo, out);
      } else if (id >= lo && id < lo + rows) {
        // Only the blocks holding this row are decoded.
        DF11_RETURN_IF_ERROR(DecodeInto(e, id - lo, id - lo + 1, row.data()));
        for (int64_t j = 0; j < h; ++j) out[j] = Bf16ToFloat(row[j]);
      } else {
        std::fill(out, out + h, 0.0f);
      }
      ++t;
    }
  }
  return Status::Ok();
}

Status Transformer::RunLayers(std::span<const SequenceStep> steps, float* x) {
  const ModelConfig& c = w_->config;
  const int64_t T = TotalTokens(steps), h = c.hidden_size, hd = c.head_dim;
  const int64_t nh = w_->dims.heads, nkv = w_->dims.kv_heads, inter = w_->dims.intermediate;
  const float eps = static_cast<float>(c.rms_norm_eps);
  std::vector<int32_t> positions;
  for (const SequenceStep& s : steps) {
    DF11_CHECK(s.cache->length + static_cast<int64_t>(s.tokens.size()) <= s.cache->capacity);
    for (size_t j = 0; j < s.tokens.size(); ++j) {
      positions.push_back(static_cast<int32_t>(s.cache->length + static_cast<int64_t>(j)));
    }
  }
  std::vector<float> xn(T * h), q(T * nh * hd), k(T * nkv * hd), v(T * nkv * hd),
      attn(T * nh * hd), proj(T * h), gate(T * inter), up(T * inter);

  const size_t n_layers = w_->layers.size();
  std::future<Status> next;
  LayerView views[2];
  auto start = [&](size_t layer) {
    return std::async(std::launch::async, [this, layer, &views] {
      return Materialize(layer, &scratch_[layer % 2], &views[layer % 2]);
    });
  };
  if (n_layers > 0) next = start(0);
  for (size_t li = 0; li < n_layers; ++li) {
    DF11_RETURN_IF_ERROR(next.get());
    if (li + 1 < n_layers) {
      if (options_.overlap_decode) {
        next = start(li + 1);
      }
    }
    const LayerView& W = views[li % 2];
    const LayerWeights& L = w_->layers[li];

    // Attention block.
    RmsNormRef(x, L.input_norm.data(), eps, T, h, xn.data());
    GemmBf16Ref(xn.data(), W.q, OrNull(L.q_bias), q.data(), T, nh * hd, h, threads_);
    GemmBf16Ref(xn.data(), W.k, OrNull(L.k_bias), k.data(), T, nkv * hd, h, threads_);
    GemmBf16Ref(xn.data(), W.v, OrNull(L.v_bias), v.data(), T, nkv * hd, h, threads_);
    if (!L.q_norm.empty()) {
      RmsNormRef(q.data(), L.q_norm.data(), eps, T * nh, hd, q.data());
      RmsNormRef(k.data(), L.k_norm.data(), eps, T * nkv, hd, k.data());
    }
    RopeRef(q.data(), T, nh, hd, positions.data(), inv_freq_.data(), rope_scaling_);
    RopeRef(k.data(), T, nkv, hd, positions.data(), inv_freq_.data(), rope_scaling_);
    const int64_t window = LayerWindow(c, w_->first_layer + static_cast<int64_t>(li));
    int64_t t0 = 0;
    for (const SequenceStep& s : steps) {
      const int64_t n = static_cast<int64_t>(s.tokens.size()), row = nkv * hd;
      KvCache& cache = *s.cache;
      std::memcpy(cache.k[li].data() + cache.length * row, k.data() + t0 * row, 4 * n * row);
      std::memcpy(cache.v[li].data() + cache.length * row, v.data() + t0 * row, 4 * n * row);
      AttentionRef(q.data() + t0 * nh * hd, cache.k[li].data(), cache.v[li].data(), n,
                   cache.length + n, nh, nkv, hd, window, attn.data() + t0 * nh * hd, threads_);
      t0 += n;
    }
    GemmBf16Ref(attn.data(), W.o, options_.tp_leader ? OrNull(L.o_bias) : nullptr, proj.data(),
                T, h, nh * hd, threads_);
    if (options_.all_reduce) options_.all_reduce(proj.data(), T * h);
    AddRef(x, proj.data(), T * h);

    // MLP block.
    RmsNormRef(x, L.post_attention_norm.data(), eps, T, h, xn.data());
    GemmBf16Ref(xn.data(), W.gate, nullptr, gate.data(), T, inter, h, threads_);
    GemmBf16Ref(xn.data(), W.up, nullptr, up.data(), T, inter, h, threads_);
    GatedActivationRef(c.hidden_act, gate.data(), up.data(), gate.data(), T * inter);
    GemmBf16Ref(gate.data(), W.down, nullptr, proj.data(), T, h, inter, threads_);
    if (options_.all_reduce) options_.all_reduce(proj.data(), T * h);
    AddRef(x, proj.data(), T * h);

    if (li + 1 < n_layers && !options_.overlap_decode) next = start(li + 1);
  }
  for (const SequenceStep& s : steps) s.cache->length += static_cast<int64_t>(s.tokens.size());
  return Status::Ok();
}

Status Transformer::Logits(std::span<const SequenceStep> steps, const float* hidden,
                           bool all_tokens, std::vector<float>* logits) {
  const int64_t h = w_->config.hidden_size;
  const float eps = static_cast<float>(w_->config.rms_norm_eps);
  // The rows whose logits are wanted.
  std::vector<int64_t> rows;
  int64_t t0 = 0;
  for (const SequenceStep& s : steps) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    if (all_tokens) {
      for (int64_t j = 0; j < n; ++j) rows.push_back(t0 + j);
    } else if (n > 0) {
      rows.push_back(t0 + n - 1);
    }
    t0 += n;
  }
  const int64_t R = static_cast<int64_t>(rows.size());
  std::vector<float> xs(R * h);
  for (int64_t r = 0; r < R; ++r) std::memcpy(&xs[r * h], hidden + rows[r] * h, 4 * h);
  RmsNormRef(xs.data(), w_->final_norm.data(), eps, R, h, xs.data());

  // The LM head in chunks of rows, the same for BF16 and DF11 so both compute identically.
  const MatrixRef& head = w_->lm_head;
  const int64_t V = w_->dims.vocab_rows, C = std::min(options_.lm_head_chunk, V);
  logits->assign(static_cast<size_t>(R * V), 0.0f);
  if (head.compressed()) head_scratch_.resize(static_cast<size_t>(C * h));
  std::vector<float> y(R * C);
  for (int64_t r0 = 0; r0 < V; r0 += C) {
    const int64_t r1 = std::min(V, r0 + C);
    const uint16_t* w = head.bf16 + r0 * h;
    if (head.compressed()) {
      DF11_RETURN_IF_ERROR(DecodeInto(head, r0, r1, head_scratch_.data()));
      w = head_scratch_.data();
    }
    GemmBf16Ref(xs.data(), w, nullptr, y.data(), R, r1 - r0, h, threads_);
    for (int64_t r = 0; r < R; ++r) {
      std::memcpy(logits->data() + r * V + r0, y.data() + r * (r1 - r0), 4 * (r1 - r0));
    }
  }
  return Status::Ok();
}

Status Transformer::Forward(std::span<const SequenceStep> steps, bool all_tokens,
                            std::vector<float>* logits) {
  std::vector<float> hidden(TotalTokens(steps) * w_->config.hidden_size);
  DF11_RETURN_IF_ERROR(Embed(steps, hidden.data()));
  DF11_RETURN_IF_ERROR(RunLayers(steps, hidden.data()));
  return Logits(steps, hidden.data(), all_tokens, logits);
}

}  // namespace df11
