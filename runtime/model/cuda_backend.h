// SPDX-License-Identifier: Apache-2.0
// CudaBackend: the forward pass of one rank's slice on one GPU, behind ForwardBackend (host
// hidden states / logits at the boundary). The layer is forward.cc's; this backend implements its
// ops (LayerOps) as kernel launches on a compute stream. Weights are uploaded once: each DF11 unit
// stays compressed on the device (Df11DeviceBuffer), BF16 matrices and small tensors are copied.
// Making a layer's weights ready (BeginLayer) decodes its DF11 matrices into one of two BF16
// scratch buffers on a decode stream while the previous layer computes on the compute stream
// (events: decode of layer i+1 waits until layer i-1 stopped reading that buffer; layer i waits
// for its decode). The KV cache is paged (kv_cache.h): one device pool of BF16 blocks per rank,
// allocated once at start with the blocks the memory plan leaves, read and written through the
// step's block tables (the engine's, or NewCache's from a free list). Where the model has
// sliding-window layers the pool is two groups, as the engine's block manager splits its budget
// (KvGroupsOfBudget): each full-attention layer holds the full group's blocks and each
// sliding-window layer the sliding group's, read through KvCache::sliding_blocks (a group none
// of this rank's layers is in takes no memory). A corrupt DF11 stream sets
// a per-layer device flag, read after each step and returned as a Corruption Status naming the
// layer.
//
// CUDA graph (option cuda_graph, only when there is no tensor-parallel all-reduce): the second
// consecutive step with the same shape (same tokens per sequence, same output kind; the caches
// may differ) is captured and replayed from then on, also after steps of other shapes between.
// Captured: the upload of positions, sequence indices and the sequences' block tables (both
// groups'; from
// pinned host buffers into fixed device buffers), every layer (its DF11 decodes on the forked
// decode stream and the events that order them, norms, GEMMs, RoPE, the paged K/V append and
// attention — one launch each for all sequences, reading positions and block tables from device
// memory, so the graph stays valid as sequences take blocks and as finished sequences are
// replaced — o_proj,
// MLP, residual adds), the final norm, the LM head (chunk decodes + GEMMs) and the argmax. Not
// captured: the embedding (a DF11 table decodes per-token row ranges chosen on the host), the
// copies back to the host, the error-flag check and copy-on-write block copies (before the
// step). Without a graph the same kernels run in the
// same order, so results are identical either way.
// Not thread-safe: one CudaBackend per rank, called from one thread.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dfloat11/df11_device_unit.h"
#include "kernels/ew4/ew4_device.h"
#include "kernels/ew4/ew4_gemm_select.h"
#include "runtime/model/forward_backend.h"
#include "runtime/model/forward_options.h"
#include "runtime/model/kv_pool.h"
#include "runtime/model/kv_table_check.h"
#include "runtime/model/layer_ops.h"
#include "runtime/model/memory_plan.h"

namespace df11 {

// Sums n floats of device memory across the tensor-parallel group, ordered on `stream`.
using DeviceAllReduceFn = std::function<void(float* device_data, int64_t n, cudaStream_t stream)>;

struct CudaBackendOptions {
  ForwardOptions forward;        // as the user chose (forward_options.h)
  int device = 0;                // CUDA device ordinal
  int ranks_on_device = 1;       // ranks sharing this GPU: each plans for its share of
                                 // forward.gpu_memory_fraction
  int64_t lm_head_chunk = 32768;  // LM-head rows per decode + GEMM (rounded to 128 rows)
  DeviceAllReduceFn all_reduce;  // tensor-parallel sum; null when tp = 1
  bool tp_leader = true;         // adds row-parallel biases (only one rank may)
  // Measured times that pick each ew4 GEMM's kernel (ew4_gemm_select.h); empty: the derived rule.
  Ew4GemmTable ew4_gemm_table;
};

class CudaBackend : public ForwardBackend, private LayerOps {
 public:
  // Uploads `weights` (which must outlive the backend) to options.device. FailedPrecondition when
  // they do not fit in this rank's share of the device's memory, InvalidArgument for unsupported
  // shapes or options.
  static StatusOr<std::unique_ptr<CudaBackend>> Create(const ModelWeights* weights,
                                                       const CudaBackendOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  // A cache of `capacity` positions: blocks of the device pool, from a free list (given back with
  // the cache's last copy). A step whose tables name blocks past the pool is refused.
  KvCache NewCache(int64_t capacity) const override;
  int64_t KvBlockTokens() const override { return kv_.block_tokens; }
  bool KvSlidingGroup() const override { return true; }
  int64_t KvPlanContext() const override { return plan_.in.context; }
  int64_t KvPlanStep() const override { return plan_.in.step_tokens; }
  bool VerifiesDrafts() const override { return true; }
  Status Embed(std::span<const SequenceStep> steps, float* hidden) override;
  Status RunLayers(std::span<const SequenceStep> steps, float* hidden) override;
  Status Logits(std::span<const SequenceStep> steps, const float* hidden, bool all_tokens,
                std::vector<float>* logits) override;
  Status Forward(std::span<const SequenceStep> steps, bool all_tokens,
                 std::vector<float>* logits) override;
  Status ForwardArgmax(std::span<const SequenceStep> steps, std::vector<int32_t>* ids) override;
  // Samples on the device (SampleCuda) when this rank holds the whole vocabulary; otherwise the
  // default (host logits, SampleRef).
  Status ForwardSample(std::span<const SequenceStep> steps, std::span<const SampleSpec> specs,
                       std::vector<int32_t>* tokens, std::vector<uint64_t>* rngs) override;
  const ModelWeights& weights() const override { return *w_; }
  int64_t ScratchBytes() const override;
  void Synchronize() override;

  const DeviceMemoryPlan& memory_plan() const { return plan_; }
  int64_t KvTokenBudget() const override { return plan_.kv_tokens; }
  // The compute stream (a device all-reduce is ordered on it).
  cudaStream_t stream() const { return compute_; }
  // Steps that ran by replaying a captured graph (the tests check that graphs are used).
  int64_t graph_replays() const { return graph_.replays; }
  int64_t graph_captures() const { return graph_.captures; }

 private:
  // A Weight's device copy: plain device BF16, a resident unit's element range that
  // BeginLayer decodes into scratch_[slot] at `offset` (the embedding and the LM head decode
  // rows or chunks of their own), or a resident ew4 matrix that Linear multiplies with the kernel
  // options_.ew4_gemm_table picks for the step's tokens: the fused decode-GEMV (up to kEw4GemvMaxBatch), the
  // tensor-core decode-GEMM (up to kEw4TcMaxBatch), or decoded into ew4_scratch_ + cuBLAS.
  struct DeviceMatrix {
    const uint16_t* plain = nullptr;       // device BF16, or null
    const Ew4View* ew4 = nullptr;          // else an ew4 matrix (device pointers), or null
    const Df11DeviceUnit* unit = nullptr;  // else elements [begin, begin + rows * cols) of it
    int64_t begin = 0;
    std::string unit_name;
    int slot = 0;        // the layer's scratch buffer (layer % 2)
    int64_t offset = 0;  // where the layer decode places it in that buffer
  };

  // Activations for up to `tokens` tokens per step and logits for up to `rows` rows, plus the
  // pinned host buffers the step uploads from.
  struct Activations {
    int64_t tokens = 0, rows = 0;
    void* device = nullptr;
    void* host = nullptr;
    float *x = nullptr, *xn = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *attn = nullptr,
          *proj = nullptr, *gate = nullptr, *up = nullptr, *logits = nullptr, *chunk = nullptr;
    uint16_t *x_bf16 = nullptr, *embed_rows = nullptr;
    // positions and seq: each token's position in its sequence and the sequence's index.
    int32_t *positions = nullptr, *seq = nullptr, *ids = nullptr, *gather = nullptr,
            *argmax = nullptr;
    // The step's sequences' block tables, (sequences, kv_.table_stride) (room for `tokens`
    // sequences): the paged attention reads them, so one graph serves any sequences of the same
    // token counts.
    int32_t* kv_tables = nullptr;
    int32_t* kv_sliding_tables = nullptr;  // the sliding-window layers' tables, the same shape
    // Pinned host mirrors of the int32 arrays (same order) and of the block tables.
    int32_t *h_positions = nullptr, *h_seq = nullptr, *h_ids = nullptr, *h_gather = nullptr,
            *h_argmax = nullptr;
    int32_t *h_kv_tables = nullptr, *h_kv_sliding_tables = nullptr;
  };


  CudaBackend(const ModelWeights* weights, const CudaBackendOptions& options);
  Status Init();
  // What the memory plan needs (sets scratch_elements_ and head_chunk_).
  DeviceMemoryInputs MemoryInputs();
  // Uploads every matrix and vector (matrices_, vectors_); returns the DF11 units' device bytes.
  int64_t UploadWeights();
  const uint16_t* UploadSmall(const Vector& v);
  template <typename T>
  T* DeviceAlloc(int64_t n);

  // LayerOps as launches on the compute stream (the step's sizes come from Prepare).
  Status BeginLayer(size_t layer) override;
  void EndLayer(size_t layer) override;
  void RmsNorm(const float* x, const Vector& w, float weight_offset, float eps, int64_t rows,
               int64_t cols, float* out) override;
  void Linear(const float* x, int64_t tokens, const Weight& w, const Vector* bias,
              float* y) override;
  void Rope(float* x, int64_t heads, bool local) override;
  void Attention(size_t layer, const float* q, const float* k, const float* v,
                 const AttentionParams& params, float* out) override;
  void GatedActivation(GateActivation act, float* gate, const float* up, int64_t n) override;
  void Add(float* x, const float* y, int64_t n) override;
  void Softcap(float* x, int64_t n, float cap) override;
  void AllReduce(float* x, int64_t n) override;
  Status LmHead(const float* x, int64_t rows, const Weight& head, float* logits) override;

  // The BF16 device data Linear multiplies by (mapped, or decoded in its layer's scratch).
  const uint16_t* Placed(const DeviceMatrix& m) const {
    return m.plain != nullptr ? m.plain : scratch_[m.slot] + m.offset;
  }
  const DeviceMatrix& Device(const Weight& w) const { return matrices_[w.id]; }
  // The device copy of a vector, null when the model has none.
  const uint16_t* Device(const Vector* v) const {
    return v == nullptr || v->empty() ? nullptr : vectors_[v->id];
  }

  // Host side of a step: checks the caches (their room for the new tokens when `appends`, their
  // blocks within the pool), grows buffers, picks the logit rows, fills the pinned upload buffers
  // and, when `appends`, queues the caches' copy-on-write block copies.
  Status Prepare(std::span<const SequenceStep> steps, bool all_tokens, bool appends);
  // Each cache's block_copies in every full-attention layer's K and V and its
  // sliding_block_copies in every sliding-window layer's (then cleared), on the compute stream.
  void EnqueueBlockCopies(std::span<const SequenceStep> steps);
  void EnqueueEmbed();
  void EnqueueDecode(size_t layer, cudaStream_t stream);
  // The decode of layer `layer` on the decode stream, ordered by the events (overlap).
  void EnqueueDecodeAhead(size_t layer);
  void EnqueueLayers();
  void EnqueueHead(bool argmax);
  // Layers + head, from a captured graph when allowed (see the header).
  void EnqueueCore(std::span<const SequenceStep> steps, bool all_tokens, bool argmax);
  // Waits for the step and turns raised decode flags into a Status.
  Status Finish();
  void GrowActivations(int64_t tokens, int64_t rows);
  // Bytes of the block tables of up to `sequences` sequences a step.
  int64_t KvTableBytes(int64_t sequences) const { return 4 * sequences * kv_.table_stride; }
  // Layer `layer`'s K or V blocks in the pool: (blocks of its group, kv_.block_tokens, kv_heads,
  // head_dim).
  uint16_t* PoolK(size_t layer) const { return kv_pool_ + kv_layer_offset_[layer]; }
  uint16_t* PoolV(size_t layer) const { return PoolK(layer) + PoolLayerElements(layer); }
  int64_t PoolLayerElements(size_t layer) const {
    const int64_t blocks = kv_sliding_[layer] ? kv_.blocks.sliding : kv_.blocks.full;
    return blocks * kv_.block_tokens * w_->dims.kv_heads * w_->config.head_dim;
  }
  // Allocates the pool of plan_.groups' blocks; FailedPrecondition naming the sizes when the
  // device cannot give them.
  Status AllocateKvPool();
  void DestroyGraph();

  const ModelWeights* w_;
  CudaBackendOptions options_;
  cudaStream_t compute_ = nullptr, decode_ = nullptr;
  cudaEvent_t fork_ = nullptr, decoded_[2] = {}, consumed_[2] = {};
  cublasHandle_t cublas_ = nullptr;
  std::vector<void*> allocations_;           // weights, scratch, workspace (freed at the end)
  std::vector<Df11DeviceBuffer> units_;      // resident DF11 units, as w_->units
  std::deque<Ew4DeviceBuffer> ew4_;          // resident ew4 matrices (DeviceMatrix::ew4 views)
  uint16_t* ew4_scratch_ = nullptr;          // (ew4_scratch_elements_): an ew4 matrix decoded
  int64_t ew4_scratch_elements_ = 0;         //   for steps above kEw4GemvMaxBatch tokens
  float* ew4_workspace_ = nullptr;           // (ew4_workspace_floats_): the fused kernels' slices
  int64_t ew4_workspace_floats_ = 0;
  std::vector<DeviceMatrix> matrices_;       // by Weight::id
  std::vector<const uint16_t*> vectors_;     // by Vector::id: device copies (null when empty)
  std::vector<bool> layer_compressed_;       // per layer: has a DF11 matrix to decode
  // The rotary tables, (head_dim / 2) each: [0] global, [1] local (Gemma 3's sliding layers; the
  // global one otherwise), and their cos/sin factors (yarn's attention factor).
  float* inv_freq_[2] = {};
  float rope_scaling_[2] = {1.0f, 1.0f};
  uint16_t* scratch_[2] = {};               // (scratch_elements_) each
  int64_t scratch_elements_ = 0;
  uint16_t* head_scratch_ = nullptr;        // (head_chunk_, hidden)
  int64_t head_chunk_ = 0;
  int* flags_ = nullptr;                    // (layers + 2): layers, embedding, LM head
  int* host_flags_ = nullptr;               // pinned copy
  std::unique_ptr<Activations> act_;
  DeviceMemoryPlan plan_;
  // The paged KV cache: per layer K then V, (blocks of its group, kv_.block_tokens, kv_heads,
  // head_dim) BF16 each, one allocation (layer l's K at kv_layer_offset_[l]); block tables hold
  // at most kv_.table_stride blocks (the model's max_position_embeddings); NewCache's block ids
  // come from kv_ids_ (a KvPool of no layers: the ids only).
  uint16_t* kv_pool_ = nullptr;
  KvPoolGroups kv_;                       // block size, table stride, the groups' blocks
  std::vector<bool> kv_sliding_;          // per layer: a sliding-window layer (group 1)
  std::vector<int64_t> kv_layer_offset_;  // per layer, elements
  std::shared_ptr<KvPool> kv_ids_;

  // ForwardSample's buffers (grown on demand): device [row info | history ids | tokens + drew |
  // SampleCuda workspace] and a pinned host copy of the first three parts.
  struct SampleBuffers {
    void* device = nullptr;
    void* host = nullptr;
    size_t device_bytes = 0, host_bytes = 0;
  } sample_;

  // The current step, filled by Prepare.
  struct Step {
    bool overlap = false;  // decodes run ahead on the decode stream (EnqueueLayers)
    int64_t tokens = 0;
    int64_t sequences = 0;
    std::vector<int64_t> rows;  // rows of the hidden states whose logits are wanted
    bool rows_identity = false;
  } step_;

  // Captured steps (see the header): the key of the last step run plainly and of the graph.
  struct Graph {
    std::vector<int64_t> last_key, key;
    cudaGraphExec_t exec = nullptr;
    int64_t replays = 0;
    int64_t captures = 0;
  } graph_;
};

}  // namespace df11
