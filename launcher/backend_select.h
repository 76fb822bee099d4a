// SPDX-License-Identifier: Apache-2.0
// Picks and builds the forward backend of one rank from the command line: the CPU CpuBackend or,
// with --device cuda, the CudaBackend on GPU local_rank % device_count, whose tensor-parallel
// all-reduce goes over NCCL (each rank on its own GPU) or over the MPI communicator staged
// through pinned host memory (ranks sharing a GPU, where NCCL cannot run): --comm auto|nccl|mpi.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "kernels/ew4/ew4_gemm_select.h"
#include "parallel/communicator.h"
#include "runtime/core/status.h"
#include "runtime/model/forward_backend.h"
#include "runtime/model/forward_options.h"

namespace df11 {

struct BackendFlags {
  std::string device = "cpu";  // --device cpu|cuda
  // --weight-codec stored|auto|ew4|bf16|df11: the codec the weights are served in (stored: as
  // the files hold them), and --min-kv-tokens, the KV cache `auto` must leave (0: one sequence
  // of the context).
  std::string weight_codec = "stored";
  int64_t min_kv_tokens = 0;
  std::string comm = "auto";   // --comm auto|nccl|mpi (tensor-parallel all-reduce on cuda)
  // --ew4-gemm-table FILE (cuda): measured times that pick each ew4 GEMM's kernel
  // (kernels/ew4/ew4_gemm_select.h; bench/ew4_gemm_tc_cuda_bench --table writes one).
  std::string ew4_gemm_table;
  ForwardOptions forward;      // --threads, --gpu-memory-fraction, --max-step-tokens, ... (handed
                               // to the backend whole)
};

// Where this rank runs and whom it sums with.
struct BackendGroup {
  Communicator* tp = nullptr;  // the tensor-parallel group over MPI, or null when tp = 1
  bool tp_leader = true;
  int local_rank = 0;  // among the processes on this host
  int local_size = 1;
  double collective_timeout_s = 120;
};

struct Backend {
  std::shared_ptr<void> keep_alive;         // communicators the backend calls (outlive it)
  std::unique_ptr<ForwardBackend> forward;
  std::string device;       // "cpu" or "cuda:N"
  std::string memory_plan;  // printed at start: the memory plan; on the CPU, also the kernel level
};

// --device, --gpu-memory-fraction and --comm on `cmd`.
void AddBackendFlags(CLI::App* cmd, BackendFlags* flags);
// Reads --ew4-gemm-table's FILE into `table`: "" or what is wrong ("cannot read FILE", or
// "FILE:LINE: ..." naming the field and what was expected).
std::string ReadEw4GemmTable(const std::string& path, Ew4GemmTable* table);
// The local rank from OMPI_COMM_WORLD_LOCAL_RANK or SLURM_LOCALID, else 0.
int LocalRankFromEnvironment();
// Re-encodes `weights` into the codec --weight-codec names (weight_transcode.h). `auto` picks the
// fastest codec (ew4, BF16, DF11) whose weights and decode scratch leave --min-kv-tokens of KV
// cache in this rank's memory (the GPU's share with --device cuda, else 90 % of the available
// host memory shared by the host's ranks); with `world` (all ranks of a sharded run, a
// collective) every rank takes the densest codec any rank picked. Returns the line to print
// ("" when the weights stay as stored).
StatusOr<std::string> ApplyWeightCodec(const BackendFlags& flags, const BackendGroup& group,
                                       Communicator* world, ModelWeights* weights);
// Builds the backend over `weights` (which must outlive it). Collective over group.tp when NCCL
// is chosen. InvalidArgument for bad flags (cuda without a CUDA build, nccl on a shared GPU).
StatusOr<Backend> MakeBackend(const BackendFlags& flags, const ModelWeights* weights,
                              const BackendGroup& group);

}  // namespace df11
