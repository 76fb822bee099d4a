// SPDX-License-Identifier: Apache-2.0
#include "launcher/backend_select.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "kernels/common/cpu_features.h"
#include "launcher/cli_flags.h"
#include "kernels/common/parallel_for.h"
#include "runtime/core/file_util.h"
#include "runtime/core/host_memory.h"
#include "runtime/model/cpu_backend.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/memory_plan.h"
#include "runtime/model/weight_transcode.h"

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/common/cuda_check.h"
#include "parallel/nccl_communicator.h"
#include "parallel/world.h"
#include "runtime/model/cuda_backend.h"
#endif

namespace df11 {

void AddBackendFlags(CLI::App* cmd, BackendFlags* f) {
  cmd->add_option("--device", f->device, "where the forward pass runs")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--gpu-memory-fraction", f->forward.gpu_memory_fraction,
                  "share of the GPU's memory to plan for (weights, scratch, activations, KV "
                  "cache); split between ranks that share a GPU")
      ->check(NumberIn(0.01, 1.0))->capture_default_str();
  cmd->add_option("--comm", f->comm,
                  "tensor-parallel all-reduce with --device cuda: nccl (a GPU per rank), mpi "
                  "(staged through host memory; ranks may share a GPU), auto (nccl unless ranks "
                  "share a GPU)")
      ->check(CLI::IsMember({"auto", "nccl", "mpi"}))->capture_default_str();
  cmd->add_option("--weight-codec", f->weight_codec,
                  "codec the weights are served in: stored (as the files hold them), ew4 (fused "
                  "decode-GEMV, 12 bits/weight, fastest), bf16, df11 (densest), or auto (the "
                  "fastest that leaves --min-kv-tokens of KV cache); converted at load, lossless")
      ->check(CLI::IsMember({"stored", "auto", "ew4", "bf16", "df11"}))->capture_default_str();
  cmd->add_option("--min-kv-tokens", f->min_kv_tokens,
                  "--weight-codec auto: the KV cache tokens the codec must leave (0: one sequence "
                  "of the model's context)")
      ->check(IntegerIn(0));
  cmd->add_option("--ew4-gemm-table", f->ew4_gemm_table,
                  "--device cuda: measured kernel times per ew4 GEMM shape and batch (written by "
                  "ew4_gemm_tc_cuda_bench --table); without it, the fused GEMV to 8 tokens, the "
                  "tensor-core GEMM to 256, decode + cuBLAS above")
      ->check(CLI::Validator(
          [](std::string& path) {
            Ew4GemmTable table;
            return ReadEw4GemmTable(path, &table);
          },
          "FILE"));
}

std::string ReadEw4GemmTable(const std::string& path, Ew4GemmTable* table) {
  StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status().message();
  return table->Parse(*text, path);
}

int LocalRankFromEnvironment() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') return std::atoi(v);
  }
  return 0;
}

namespace {

// Bytes the weights, their scratch and the KV cache may take together on this rank.
double RankMemoryBytes(const BackendFlags& f, const BackendGroup& g, const ModelWeights& w) {
#if DF11_WITH_CUDA
  if (f.device == "cuda") {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return 0;
    const int device = LocalDevice(g.local_rank, count);
    cudaDeviceProp prop{};
    DF11_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    const double share = f.forward.gpu_memory_fraction /
                         std::max(1, LocalDeviceSharers(g.local_size, count, device));
    // Less the activations of a full step (as the CUDA backend's plan sizes them).
    const ModelConfig& c = w.config;
    const double T = static_cast<double>(std::max<int64_t>(1, f.forward.max_step_tokens));
    const double activations =
        T * 4 * (3.0 * c.hidden_size + 2.0 * w.dims.heads * c.head_dim +
                 2.0 * w.dims.kv_heads * c.head_dim + 2.0 * w.dims.intermediate) +
        std::min(T, 256.0) * 8 * static_cast<double>(w.dims.vocab_rows) + (32 << 20);
    return share * static_cast<double>(prop.totalGlobalMem) - activations;
  }
#endif
  // The weights held now count as room: they are what a codec replaces.
  return 0.9 * static_cast<double>(AvailableHostMemoryBytes()) / std::max(1, g.local_size) +
         static_cast<double>(w.WeightBytes());
}

WeightCodec CodecNamed(const std::string& name) {
  return name == "ew4" ? WeightCodec::kEw4 : name == "df11" ? WeightCodec::kDf11 : WeightCodec::kBf16;
}

}  // namespace

StatusOr<std::string> ApplyWeightCodec(const BackendFlags& f, const BackendGroup& g,
                                       Communicator* world, ModelWeights* w) {
  if (f.weight_codec == "stored") return std::string();
  WeightCodec target = CodecNamed(f.weight_codec);
  std::string why;
  if (f.weight_codec == "auto") {
    const double memory = RankMemoryBytes(f, g, *w);
    const ModelConfig& c = w->config;
    const double per_token = static_cast<double>(
        KvBytesPerToken(static_cast<int64_t>(w->layers.size()), w->dims.kv_heads * c.head_dim));
    std::vector<CodecFit> fits;
    for (WeightCodec codec : kCodecsBySpeed) {
      const double left = memory - static_cast<double>(ServedBytes(*w, codec));
      fits.push_back({codec, left > 0 && per_token > 0 ? static_cast<int64_t>(left / per_token) : 0});
    }
    const int64_t min_tokens = f.min_kv_tokens > 0      ? f.min_kv_tokens
                               : f.forward.context > 0 ? f.forward.context
                                                       : c.max_position_embeddings;
    target = ChooseFastestCodec(fits, min_tokens);
    if (world != nullptr && world->size() > 1) {
      // Every rank serves the densest codec any rank needs.
      int32_t mine = 0;
      while (kCodecsBySpeed[mine] != target) ++mine;
      std::vector<int32_t> all(static_cast<size_t>(world->size()));
      world->AllGather(&mine, all.data(), sizeof(mine));
      target = kCodecsBySpeed[*std::max_element(all.begin(), all.end())];
    }
    char line[160];
    std::snprintf(line, sizeof(line), "auto: %s, the fastest codec that leaves %lld KV cache tokens; ",
                  WeightCodecName(target), static_cast<long long>(min_tokens));
    why = line;
  }
  TranscodeReport report;
  DF11_RETURN_IF_ERROR(TranscodeWeights(w, target, f.forward.threads > 0 ? f.forward.threads
                                                                         : DefaultThreadCount(),
                                        &report));
  if (report.transcoded == 0 && report.kept.empty()) {
    return "weights served as " + w->CodecSummary() + " (" + why + "as stored)\n";
  }
  return "weights served as " + w->CodecSummary() + " (" + why + report.Format() + ")\n";
}

#if DF11_WITH_CUDA
namespace {

// The MPI all-reduce of device data through a pinned host buffer (never under graph capture:
// the backend turns graphs off when an all-reduce is set).
struct StagedAllReduce {
  Communicator* comm = nullptr;
  float* host = nullptr;
  int64_t capacity = 0;
  ~StagedAllReduce() {
    if (host != nullptr) DF11_CUDA_CHECK(cudaFreeHost(host));
  }
  void operator()(float* data, int64_t n, cudaStream_t stream) {
    if (n > capacity) {
      DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
      if (host != nullptr) DF11_CUDA_CHECK(cudaFreeHost(host));
      DF11_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host), 4 * n));
      capacity = n;
    }
    DF11_CUDA_CHECK(cudaMemcpyAsync(host, data, 4 * n, cudaMemcpyDeviceToHost, stream));
    DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
    comm->AllReduceSum(host, n);
    DF11_CUDA_CHECK(cudaMemcpyAsync(data, host, 4 * n, cudaMemcpyHostToDevice, stream));
  }
};

struct NcclHolder {
  std::unique_ptr<NcclCommunicator> comm;
};

StatusOr<Backend> MakeCudaBackend(const BackendFlags& f, const ModelWeights* w,
                                  const BackendGroup& g) {
  CudaBackendOptions o;
  if (!f.ew4_gemm_table.empty()) {
    if (std::string err = ReadEw4GemmTable(f.ew4_gemm_table, &o.ew4_gemm_table); !err.empty()) {
      return Status::InvalidArgument("--ew4-gemm-table: " + err);
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    return Status::FailedPrecondition("--device cuda: no CUDA device is visible to this process");
  }
  const int device = LocalDevice(g.local_rank, count);
  const int sharing = LocalDeviceSharers(g.local_size, count, device);
  std::string comm = f.comm;
  if (comm == "auto") comm = sharing > 1 ? "mpi" : "nccl";
  if (comm == "nccl" && sharing > 1 && g.tp != nullptr) {
    return Status::InvalidArgument("--comm nccl: " + std::to_string(sharing) +
                                   " ranks share GPU " + std::to_string(device) +
                                   " and NCCL needs one GPU per rank; use --comm mpi");
  }
  o.forward = f.forward;
  o.device = device;
  o.ranks_on_device = sharing;
  o.tp_leader = g.tp_leader;
  Backend b;
  std::shared_ptr<NcclHolder> nccl;
  if (g.tp != nullptr && g.tp->size() > 1) {
    if (comm == "nccl") {
      nccl = std::make_shared<NcclHolder>();
      o.all_reduce = [h = nccl.get()](float* d, int64_t n, cudaStream_t) {
        h->comm->AllReduceSum(d, n);
      };
      b.keep_alive = nccl;
    } else {
      auto staged = std::make_shared<StagedAllReduce>();
      staged->comm = g.tp;
      o.all_reduce = [s = staged.get()](float* d, int64_t n, cudaStream_t stream) {
        (*s)(d, n, stream);
      };
      b.keep_alive = staged;
    }
  }
  auto created = CudaBackend::Create(w, o);
  if (nccl != nullptr) {
    // NCCL set-up is collective: every rank of the group learns first whether all can join.
    float failed = created.ok() ? 0.0f : 1.0f;
    g.tp->AllReduceSum(&failed, 1);
    if (created.ok() && failed > 0) {
      return Status::FailedPrecondition("another tensor-parallel rank could not set up its GPU");
    }
  }
  if (!created.ok()) return created.status();
  std::unique_ptr<CudaBackend> cuda = std::move(created).value();
  if (nccl != nullptr) {
    // On the backend's compute stream, so each all-reduce is ordered with the layer's kernels.
    nccl->comm = std::make_unique<NcclCommunicator>(g.tp, device, cuda->stream(),
                                                    g.collective_timeout_s);
  }
  b.device = "cuda:" + std::to_string(device);
  b.memory_plan = cuda->memory_plan().Format();
  if (sharing > 1) {
    b.memory_plan += "  (" + std::to_string(sharing) + " ranks share this GPU: each plans for " +
                     std::to_string(f.forward.gpu_memory_fraction / sharing) + " of it)\n";
  }
  if (o.all_reduce) b.memory_plan += "  tensor-parallel all-reduce: " + comm + "\n";
  b.forward = std::move(cuda);
  return b;
}

}  // namespace
#endif

StatusOr<Backend> MakeBackend(const BackendFlags& f, const ModelWeights* w,
                              const BackendGroup& g) {
  if (f.device == "cuda") {
#if DF11_WITH_CUDA
    return MakeCudaBackend(f, w, g);
#else
    return Status::InvalidArgument("--device cuda: this df11-run was built without CUDA");
#endif
  }
  if (f.device != "cpu") return Status::InvalidArgument("--device must be cpu or cuda");
  if (std::string e = CpuLevelEnvironmentError(); !e.empty()) return Status::InvalidArgument(e);
  CpuBackendOptions o;
  o.forward = f.forward;
  o.tp_leader = g.tp_leader;
  if (g.tp != nullptr && g.tp->size() > 1) {
    o.all_reduce = [c = g.tp](float* d, int64_t n) { c->AllReduceSum(d, n); };
  }
  // The KV caches live in host memory: by default they may take 90 % of what is available now,
  // shared with the other ranks on this host.
  const int64_t available = AvailableHostMemoryBytes();
  o.kv_memory_bytes = static_cast<int64_t>(0.9 * static_cast<double>(available)) /
                      std::max(1, g.local_size);
  Backend b;
  b.device = "cpu";
  b.forward = std::make_unique<CpuBackend>(w, o);
  if (const int64_t tokens = b.forward->KvTokenBudget(); tokens > 0) {
    char line[256];
    std::snprintf(line, sizeof(line),
                  "host memory plan: %.1f MB available, %.1f MB for KV caches = %lld tokens "
                  "(the default --kv-tokens)\n",
                  static_cast<double>(available) / 1e6, static_cast<double>(o.kv_memory_bytes) / 1e6,
                  static_cast<long long>(tokens));
    b.memory_plan = line;
  }
  b.memory_plan += std::string("cpu kernels: ") + CpuLevelName(ActiveCpuLevel()) + " (this CPU: " +
                   CpuLevelName(DetectedCpuLevel()) + "; " + kCpuLevelVariable + " lowers it)\n";
  return b;
}

}  // namespace df11
