// SPDX-License-Identifier: Apache-2.0
// CudaBackend set-up: the memory plan, the weights' upload, scratch and activation buffers, and
// the paged KV pool on the device (the forward steps are in cuda_backend.cc).
#include <cublas_v2.h>
#include <glog/logging.h>

#include <algorithm>
#include <map>

#include "kernels/common/check.h"
#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/ew4/ew4_gemm_tc.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/paged_attention/paged_attention.h"
#include "kernels/rope/rope.h"
#include "kernels/sampling/sampling.h"
#include "runtime/model/cuda_backend.h"

namespace df11 {
namespace {

// Scratch placements and chunk starts are 256-byte aligned, so a decoded matrix sits at the same
// alignment as a plain cudaMalloc'd one and cuBLAS picks the same kernel for both (DF11 and BF16
// logits stay bit-identical).
constexpr int64_t kAlignElements = 128;
constexpr size_t kCublasWorkspaceBytes = 32 << 20;

int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

}  // namespace

CudaBackend::CudaBackend(const ModelWeights* weights, const CudaBackendOptions& options)
    : w_(weights), options_(options), act_(std::make_unique<Activations>()) {}

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const ModelWeights* weights,
                                                           const CudaBackendOptions& options) {
  if (!(options.forward.decode_grid_fraction > 0 && options.forward.decode_grid_fraction <= 1)) {
    return Status::InvalidArgument("--decode-grid-fraction must be in (0, 1], got " +
                                   std::to_string(options.forward.decode_grid_fraction));
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend(weights, options));
  DF11_RETURN_IF_ERROR(b->Init());
  return b;
}

template <typename T>
T* CudaBackend::DeviceAlloc(int64_t n) {
  void* p = nullptr;
  DF11_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)));
  allocations_.push_back(p);
  return static_cast<T*>(p);
}

const uint16_t* CudaBackend::UploadSmall(const Vector& v) {
  if (v.empty()) return nullptr;
  uint16_t* d = DeviceAlloc<uint16_t>(v.size());
  DF11_CUDA_CHECK(cudaMemcpy(d, v.data(), 2 * v.size(), cudaMemcpyHostToDevice));
  return d;
}

DeviceMemoryInputs CudaBackend::MemoryInputs() {
  const ModelConfig& c = w_->config;
  const LocalDims& d = w_->dims;
  const int64_t h = c.hidden_size, hd = c.head_dim;
  DeviceMemoryInputs in;
  size_t free_bytes = 0, total_bytes = 0;
  DF11_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  in.device_total_bytes = static_cast<int64_t>(total_bytes);
  in.memory_fraction = options_.forward.gpu_memory_fraction / std::max(1, options_.ranks_on_device);
  for (const auto& u : w_->units) {
    // Fields padded to 256 bytes, the stream to whole blocks + 16 bytes, and room for a 32 KB
    // decode table (an estimate for the fit check; the plan is redone with the real sizes).
    in.compressed_bytes += u->stored_bytes() + 6 * 256 + 4096 + 32 + 32768;
  }
  std::map<const uint16_t*, int64_t> plain;
  std::map<const uint8_t*, int64_t> ew4;  // by sign_mantissa: a tied head counts once
  ew4_scratch_elements_ = ew4_workspace_floats_ = 0;
  auto count_plain = [&](const Weight& m) {
    if (!m.compressed()) plain[m.bf16] = 2 * m.numel();
    if (m.codec != WeightCodec::kEw4) return;
    ew4[m.ew4.sign_mantissa] = m.own_bytes() + 5 * 256;  // fields on 256-byte boundaries
    // One workspace for the fused GEMV's and the tensor-core GEMM's slice sums.
    const int64_t tc_tokens = std::clamp<int64_t>(options_.forward.max_step_tokens, 1,
                                                  kEw4TcMaxBatch);
    ew4_workspace_floats_ = std::max({ew4_workspace_floats_,
                                      Ew4GemvWorkspaceFloats(kEw4GemvMaxBatch, m.rows, m.cols),
                                      Ew4GemmTcWorkspaceFloats(tc_tokens, m.rows, m.cols)});
  };
  int64_t small = 2 * w_->final_norm.size() + 2 * 4 * hd / 2;  // norms, two rotary tables
  for (const LayerWeights& l : w_->layers) {
    int64_t elements = 0;
    for (const Weight* m : l.Matrices()) {
      count_plain(*m);
      if (m->decoded_to_scratch()) elements += RoundUp(m->numel(), kAlignElements);
      if (m->codec == WeightCodec::kEw4) {
        ew4_scratch_elements_ = std::max(ew4_scratch_elements_, m->numel());
      }
    }
    for (const Vector* v : l.Vectors()) small += 2 * v->size();
    scratch_elements_ = std::max(scratch_elements_, elements);
  }
  count_plain(w_->embed);
  count_plain(w_->lm_head);
  for (const auto& [ptr, bytes] : plain) in.plain_bytes += bytes;
  for (const auto& [ptr, bytes] : ew4) in.compressed_bytes += bytes;
  in.small_bytes = small;
  in.layer_scratch_bytes = 2 * 2 * scratch_elements_;
  // A layer's ew4 matrix decoded for a step the fused kernels do not take (one at a time; the
  // LM head uses head_scratch_), and the fused kernels' slice sums.
  in.layer_scratch_bytes += 2 * ew4_scratch_elements_ + 4 * ew4_workspace_floats_;
  const int64_t V = d.vocab_rows;
  head_chunk_ = std::min(V, std::max(kAlignElements, RoundUp(options_.lm_head_chunk, kAlignElements)));
  if (options_.lm_head_chunk >= V) head_chunk_ = V;
  in.head_scratch_bytes = w_->lm_head.compressed() ? 2 * head_chunk_ * h : 0;
  const int64_t T = std::max<int64_t>(1, options_.forward.max_step_tokens), R = std::min<int64_t>(T, 256);
  const int64_t width = std::max({h, d.heads * hd, d.intermediate});
  in.activation_bytes =
      T * 4 * (3 * h + 2 * d.heads * hd + 2 * d.kv_heads * hd + 2 * d.intermediate) +
      T * 2 * width + (w_->embed.compressed() ? T * 2 * h : 0) + T * 4 * 6 + 2 * KvTableBytes(T) +
      R * 4 * (V + head_chunk_) + static_cast<int64_t>(kCublasWorkspaceBytes);
  // ForwardSample draws one row per sequence; a step holds at most R of them.
  in.sampling_bytes = V == c.vocab_size ? static_cast<int64_t>(SampleCudaWorkspaceBytes(R, V)) : 0;
  // BF16 K and V of every local layer; the sliding-window layers' blocks in their own group, as
  // the engine splits its budget (over the model's layers, for sequences of `context`:
  // KvPlanContext).
  in.kv_bytes_per_token = KvBytesPerToken(static_cast<int64_t>(w_->layers.size()), d.kv_heads * hd);
  in.kv_block_tokens = kv_.block_tokens;
  in.context = options_.forward.context > 0 ? options_.forward.context : c.max_position_embeddings;
  in.step_tokens = T;  // a prompt chunk's sliding blocks
  in.model_windows = c.layer_window;
  for (size_t l = 0; l < w_->layers.size(); ++l) {
    in.local_windows.push_back(LayerWindow(c, w_->first_layer + static_cast<int64_t>(l)));
  }
  return in;
}

int64_t CudaBackend::UploadWeights() {
  const ModelConfig& c = w_->config;
  int64_t unit_bytes = 0;
  units_.reserve(w_->units.size());
  for (const auto& u : w_->units) {
    units_.emplace_back(u->view);
    unit_bytes += static_cast<int64_t>(units_.back().device_bytes());
  }
  // Every matrix and vector by its id; BF16 data shared by two matrices (a tied head) once.
  matrices_.assign(static_cast<size_t>(w_->matrix_count), DeviceMatrix{});
  vectors_.assign(static_cast<size_t>(w_->vector_count), nullptr);
  std::map<const uint16_t*, const uint16_t*> uploaded;  // host BF16 -> device copy
  std::map<const uint8_t*, const Ew4View*> uploaded_ew4;  // host sign_mantissa -> device view
  auto upload = [&](const Weight& m) {
    DeviceMatrix& dm = matrices_[m.id];
    if (m.codec == WeightCodec::kEw4) {
      auto it = uploaded_ew4.find(m.ew4.sign_mantissa);
      if (it == uploaded_ew4.end()) {
        ew4_.emplace_back(m.ew4);
        unit_bytes += static_cast<int64_t>(ew4_.back().device_bytes());
        it = uploaded_ew4.emplace(m.ew4.sign_mantissa, &ew4_.back().view()).first;
      }
      dm.ew4 = it->second;
      return;
    }
    if (!m.compressed()) {
      auto it = uploaded.find(m.bf16);
      if (it == uploaded.end()) {
        uint16_t* p = DeviceAlloc<uint16_t>(m.numel());
        DF11_CUDA_CHECK(cudaMemcpy(p, m.bf16, 2 * m.numel(), cudaMemcpyHostToDevice));
        it = uploaded.emplace(m.bf16, p).first;
      }
      dm.plain = it->second;
      return;
    }
    for (size_t i = 0; i < w_->units.size(); ++i) {
      if (w_->units[i].get() == m.unit) dm.unit = &units_[i].unit();
    }
    DF11_CHECK_MSG(dm.unit != nullptr, "a matrix names a DF11 unit the weights do not own");
    dm.begin = m.begin;
    dm.unit_name = m.unit->name;
  };
  for (size_t li = 0; li < w_->layers.size(); ++li) {
    const LayerWeights& l = w_->layers[li];
    int64_t offset = 0;
    bool compressed = false;
    for (const Weight* m : l.Matrices()) {
      upload(*m);
      if (!m->decoded_to_scratch()) continue;
      matrices_[m->id].slot = static_cast<int>(li % 2);
      matrices_[m->id].offset = offset;
      offset += RoundUp(m->numel(), kAlignElements);
      compressed = true;
    }
    layer_compressed_.push_back(compressed);
    for (const Vector* v : l.Vectors()) vectors_[v->id] = UploadSmall(*v);
  }
  upload(w_->embed);
  upload(w_->lm_head);
  vectors_[w_->final_norm.id] = UploadSmall(w_->final_norm);
  for (bool local : {false, true}) {
    const std::vector<float> inv_freq = RopeInvFreq(RopeParamsOf(c, local));
    rope_scaling_[local] = RopeAttentionScaling(RopeParamsOf(c, local));
    inv_freq_[local] = DeviceAlloc<float>(static_cast<int64_t>(inv_freq.size()));
    DF11_CUDA_CHECK(cudaMemcpy(inv_freq_[local], inv_freq.data(), 4 * inv_freq.size(),
                               cudaMemcpyHostToDevice));
  }

  return unit_bytes;
}

Status CudaBackend::Init() {
  const int64_t h = w_->config.hidden_size, hd = w_->config.head_dim;
  if (hd > kPagedAttentionCudaMaxHeadDim) {
    return Status::InvalidArgument("head_dim " + std::to_string(hd) + " exceeds the CUDA "
                                   "attention kernel's " +
                                   std::to_string(kPagedAttentionCudaMaxHeadDim));
  }
  if (w_->embed.compressed() && h % 8 != 0) {
    return Status::InvalidArgument("a DF11 embedding needs hidden_size divisible by 8 on the GPU");
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    return Status::FailedPrecondition("--device cuda: no CUDA device is available");
  }
  if (options_.device < 0 || options_.device >= count) {
    return Status::InvalidArgument("CUDA device " + std::to_string(options_.device) +
                                   " does not exist (" + std::to_string(count) + " present)");
  }
  DF11_CUDA_CHECK(cudaSetDevice(options_.device));
  if (options_.forward.kv_block_tokens < 1 || options_.forward.kv_block_tokens > 4096) {
    return Status::InvalidArgument("--kv-block-tokens must be in [1, 4096], got " +
                                   std::to_string(options_.forward.kv_block_tokens));
  }
  kv_.block_tokens = options_.forward.kv_block_tokens;
  // A table holds the blocks of the longest sequence the model takes.
  kv_.table_stride = std::max<int64_t>(
      1, (w_->config.max_position_embeddings + kv_.block_tokens - 1) / kv_.block_tokens);

  // Sizes first, so a model that does not fit fails before anything is allocated.
  DeviceMemoryInputs in = MemoryInputs();
  DF11_ASSIGN_OR_RETURN(plan_, PlanDeviceMemory(in));

  // Streams, events, cuBLAS with a fixed workspace (graph capture must not allocate).
  DF11_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
  DF11_CUDA_CHECK(cudaStreamCreateWithFlags(&decode_, cudaStreamNonBlocking));
  DF11_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
  for (int i = 0; i < 2; ++i) {
    DF11_CUDA_CHECK(cudaEventCreateWithFlags(&decoded_[i], cudaEventDisableTiming));
    DF11_CUDA_CHECK(cudaEventCreateWithFlags(&consumed_[i], cudaEventDisableTiming));
  }
  DF11_CUBLAS_CHECK(cublasCreate(&cublas_));
  DF11_CUBLAS_CHECK(cublasSetStream(cublas_, compute_));  // before the workspace: it resets it
  void* workspace = DeviceAlloc<uint8_t>(kCublasWorkspaceBytes);
  DF11_CUBLAS_CHECK(cublasSetWorkspace(cublas_, workspace, kCublasWorkspaceBytes));

  const int64_t unit_bytes = UploadWeights();

  // Scratch, flags, activations.
  if (scratch_elements_ > 0) {
    for (auto& s : scratch_) s = DeviceAlloc<uint16_t>(scratch_elements_);
  }
  if (w_->lm_head.compressed()) head_scratch_ = DeviceAlloc<uint16_t>(head_chunk_ * h);
  if (ew4_scratch_elements_ > 0) ew4_scratch_ = DeviceAlloc<uint16_t>(ew4_scratch_elements_);
  if (ew4_workspace_floats_ > 0) ew4_workspace_ = DeviceAlloc<float>(ew4_workspace_floats_);
  const int64_t n_flags = static_cast<int64_t>(w_->layers.size()) + 2;
  flags_ = DeviceAlloc<int>(n_flags);
  DF11_CUDA_CHECK(cudaMemset(flags_, 0, 4 * n_flags));
  DF11_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_flags_), 4 * n_flags));
  const int64_t T = std::max<int64_t>(1, options_.forward.max_step_tokens), R = std::min<int64_t>(T, 256);
  GrowActivations(T, R);
  DF11_CUDA_CHECK(cudaDeviceSynchronize());

  // The plan again with what was actually allocated for the units; the KV pool takes the rest,
  // at most what the device has free now.
  in.compressed_bytes = unit_bytes;
  size_t free_now = 0, total_now = 0;
  DF11_CUDA_CHECK(cudaMemGetInfo(&free_now, &total_now));
  in.device_free_bytes = static_cast<int64_t>(free_now);
  DF11_ASSIGN_OR_RETURN(plan_, PlanDeviceMemory(in));
  DF11_RETURN_IF_ERROR(AllocateKvPool());
  LOG(INFO) << "CUDA backend on device " << options_.device << ": " << units_.size()
            << " DF11 units and " << ew4_.size() << " ew4 matrices resident (" << unit_bytes
            << " bytes), layer scratch 2 x " << scratch_elements_ << " elements, LM-head chunk "
            << head_chunk_ << " rows, KV pool " << kv_.blocks.full << " blocks of "
            << kv_.block_tokens << " positions per full-attention layer, " << kv_.blocks.sliding
            << " per sliding-window layer";
  return Status::Ok();
}

Status CudaBackend::AllocateKvPool() {
  // Each layer holds its group's blocks; a group no local layer is in takes nothing.
  kv_.blocks = plan_.groups;
  kv_.full_layers = false;
  int64_t elements = 0;
  for (size_t l = 0; l < w_->layers.size(); ++l) {
    const int64_t window = LayerWindow(w_->config, w_->first_layer + static_cast<int64_t>(l));
    kv_sliding_.push_back(window > 0);
    kv_.full_layers = kv_.full_layers || window == 0;
    kv_.window = std::max(kv_.window, window);
    kv_layer_offset_.push_back(elements);
    elements += 2 * PoolLayerElements(l);
  }
  void* p = nullptr;
  if (cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(2 * elements, 2))) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the allocation error
    kv_.blocks = {};
    return Status::FailedPrecondition(
        "could not allocate the KV cache pool of " + std::to_string(plan_.groups.full) +
        " full-attention and " + std::to_string(plan_.groups.sliding) +
        " sliding-window blocks per layer (" + std::to_string(2 * elements / 1000000) +
        " MB, the memory plan's KV share) on CUDA device " + std::to_string(options_.device) +
        ": lower --gpu-memory-fraction or free the device");
  }
  allocations_.push_back(p);
  kv_pool_ = static_cast<uint16_t*>(p);
  kv_ids_ = std::make_shared<KvPool>(std::span<const int64_t>(),
                                     w_->dims.kv_heads * w_->config.head_dim, kv_.block_tokens);
  return Status::Ok();
}

CudaBackend::~CudaBackend() {
  if (compute_ != nullptr) {
    DF11_CUDA_CHECK(cudaSetDevice(options_.device));
    DF11_CUDA_CHECK(cudaDeviceSynchronize());
  }
  DestroyGraph();
  if (act_->device != nullptr) DF11_CUDA_CHECK(cudaFree(act_->device));
  if (act_->host != nullptr) DF11_CUDA_CHECK(cudaFreeHost(act_->host));
  if (host_flags_ != nullptr) DF11_CUDA_CHECK(cudaFreeHost(host_flags_));
  if (sample_.device != nullptr) DF11_CUDA_CHECK(cudaFree(sample_.device));
  if (sample_.host != nullptr) DF11_CUDA_CHECK(cudaFreeHost(sample_.host));
  units_.clear();
  ew4_.clear();
  for (void* p : allocations_) DF11_CUDA_CHECK(cudaFree(p));
  if (cublas_ != nullptr) DF11_CUBLAS_CHECK(cublasDestroy(cublas_));
  for (cudaEvent_t e : {fork_, decoded_[0], decoded_[1], consumed_[0], consumed_[1]}) {
    if (e != nullptr) DF11_CUDA_CHECK(cudaEventDestroy(e));
  }
  if (decode_ != nullptr) DF11_CUDA_CHECK(cudaStreamDestroy(decode_));
  if (compute_ != nullptr) DF11_CUDA_CHECK(cudaStreamDestroy(compute_));
}

void CudaBackend::GrowActivations(int64_t tokens, int64_t rows) {
  Activations& a = *act_;
  if (tokens <= a.tokens && rows <= a.rows) return;
  tokens = std::max(tokens, a.tokens);
  rows = std::max(rows, a.rows);
  // A captured graph points at the old buffers.
  DF11_CUDA_CHECK(cudaDeviceSynchronize());
  DestroyGraph();
  if (a.device != nullptr) DF11_CUDA_CHECK(cudaFree(a.device));
  if (a.host != nullptr) DF11_CUDA_CHECK(cudaFreeHost(a.host));
  const ModelConfig& c = w_->config;
  const LocalDims& d = w_->dims;
  const int64_t h = c.hidden_size, hd = c.head_dim, V = d.vocab_rows;
  const int64_t width = std::max({h, d.heads * hd, d.intermediate});
  // One device allocation carved into 256-byte aligned pieces.
  int64_t offset = 0;
  std::vector<std::pair<void**, int64_t>> pieces = {
      {reinterpret_cast<void**>(&a.x), 4 * tokens * h},
      {reinterpret_cast<void**>(&a.xn), 4 * tokens * h},
      {reinterpret_cast<void**>(&a.q), 4 * tokens * d.heads * hd},
      {reinterpret_cast<void**>(&a.k), 4 * tokens * d.kv_heads * hd},
      {reinterpret_cast<void**>(&a.v), 4 * tokens * d.kv_heads * hd},
      {reinterpret_cast<void**>(&a.attn), 4 * tokens * d.heads * hd},
      {reinterpret_cast<void**>(&a.proj), 4 * tokens * h},
      {reinterpret_cast<void**>(&a.gate), 4 * tokens * d.intermediate},
      {reinterpret_cast<void**>(&a.up), 4 * tokens * d.intermediate},
      {reinterpret_cast<void**>(&a.logits), 4 * rows * V},
      {reinterpret_cast<void**>(&a.chunk), 4 * rows * head_chunk_},
      {reinterpret_cast<void**>(&a.x_bf16), 2 * tokens * width},
      {reinterpret_cast<void**>(&a.embed_rows), w_->embed.compressed() ? 2 * tokens * h : 0},
      {reinterpret_cast<void**>(&a.positions), 4 * tokens},
      {reinterpret_cast<void**>(&a.seq), 4 * tokens},
      {reinterpret_cast<void**>(&a.ids), 4 * tokens},
      {reinterpret_cast<void**>(&a.gather), 4 * tokens},
      {reinterpret_cast<void**>(&a.argmax), 4 * rows},
      {reinterpret_cast<void**>(&a.kv_tables), KvTableBytes(tokens)},
      {reinterpret_cast<void**>(&a.kv_sliding_tables), KvTableBytes(tokens)},
  };
  std::vector<int64_t> offsets;
  for (const auto& [ptr, bytes] : pieces) {
    offsets.push_back(offset);
    offset += RoundUp(std::max<int64_t>(bytes, 1), 256);
  }
  DF11_CUDA_CHECK(cudaMalloc(&a.device, static_cast<size_t>(offset)));
  for (size_t i = 0; i < pieces.size(); ++i) {
    *pieces[i].first = static_cast<uint8_t*>(a.device) + offsets[i];
  }
  // Pinned host mirrors: the block tables of both groups, then positions, seq, ids, gather
  // (tokens each), argmax (rows).
  const int64_t tables = 2 * KvTableBytes(tokens);
  DF11_CUDA_CHECK(cudaMallocHost(&a.host, static_cast<size_t>(tables + 4 * (4 * tokens + rows))));
  a.h_kv_tables = static_cast<int32_t*>(a.host);
  a.h_kv_sliding_tables = a.h_kv_tables + tables / 8;
  int32_t* hp = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(a.host) + tables);
  a.h_positions = hp;
  a.h_seq = hp + tokens;
  a.h_ids = hp + 2 * tokens;
  a.h_gather = hp + 3 * tokens;
  a.h_argmax = hp + 4 * tokens;
  a.tokens = tokens;
  a.rows = rows;
}

KvCache CudaBackend::NewCache(int64_t capacity) const {
  // Ids only: the blocks' memory is the pool's (Prepare refuses ids past it).
  return kv_ids_->NewCache(capacity);
}

}  // namespace df11
