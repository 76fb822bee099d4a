// SPDX-License-Identifier: Apache-2.0
#include "launcher/backend_select.h"

#include <glog/logging.h>

#include <cstdio>
#include <cstdlib>

#include "kernels/common/cpu_features.h"
#include "launcher/cli_flags.h"
#include "runtime/core/host_memory.h"
#include "runtime/model/cpu_backend.h"

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
}

int LocalRankFromEnvironment() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') return std::atoi(v);
  }
  return 0;
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
  CudaBackendOptions o;
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
