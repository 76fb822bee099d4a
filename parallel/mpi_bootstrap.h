// SPDX-License-Identifier: Apache-2.0
// MPI start-up and shutdown: initializes MPI, works out the World (local rank per host, node),
// routes fatal errors to MPI_Abort so no rank is left waiting, and offers DF11_MPI_CHECK.
#pragma once

#include <memory>
#include <string>

#include "kernels/common/check.h"
#include "parallel/communicator.h"
#include "parallel/world.h"

namespace df11 {

// True when this process was started by mpirun/srun (an MPI launcher's environment is present).
bool LaunchedByMpiLauncher();

// MPI_Init_thread (FUNNELED) and the World. Call once, first thing in main().
World MpiInit(int* argc, char*** argv);
void MpiFinalize();

// Communicators over MPI: the whole job, and sub-groups of ranks sharing `color` (ordered by
// world rank). `timeout_s` bounds every blocking call.
std::unique_ptr<Communicator> MpiWorldCommunicator(double timeout_s);
std::unique_ptr<Communicator> MpiSplitCommunicator(int color, double timeout_s);

[[noreturn]] void MpiFatal(const char* file, int line, const char* statement, int code);

}  // namespace df11

#define DF11_MPI_CHECK(expr)                                                   \
  do {                                                                         \
    int df11_mpi_rc_ = (expr);                                                 \
    if (df11_mpi_rc_ != 0) [[unlikely]]                                        \
      ::df11::MpiFatal(__FILE__, __LINE__, #expr, df11_mpi_rc_);               \
  } while (0)
