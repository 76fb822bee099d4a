// SPDX-License-Identifier: Apache-2.0
#include "parallel/mpi_bootstrap.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "parallel/mpi_communicator.h"

namespace df11 {
namespace {

void AbortJob(const std::string& message) {
  std::fprintf(stderr, "FATAL %s\n", message.c_str());
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

}  // namespace

bool LaunchedByMpiLauncher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

[[noreturn]] void MpiFatal(const char* file, int line, const char* statement, int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  FatalError(file, line, statement, std::string("MPI error: ") + text);
}

World MpiInit(int* argc, char*** argv) {
  int provided = 0;
  DF11_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  // Errors come back as codes, so DF11_MPI_CHECK can report them with file:line.
  DF11_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  World w;
  DF11_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank));
  DF11_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w.size));
  MPI_Comm local;
  DF11_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL,
                                     &local));
  DF11_MPI_CHECK(MPI_Comm_rank(local, &w.local_rank));
  DF11_MPI_CHECK(MPI_Comm_size(local, &w.local_size));
  // Node index: the hosts' leaders (local rank 0) numbered in world-rank order.
  MPI_Comm leaders;
  DF11_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, w.local_rank == 0 ? 0 : MPI_UNDEFINED, w.rank,
                                &leaders));
  int node = 0;
  if (w.local_rank == 0) {
    DF11_MPI_CHECK(MPI_Comm_rank(leaders, &node));
    DF11_MPI_CHECK(MPI_Comm_free(&leaders));
  }
  DF11_MPI_CHECK(MPI_Bcast(&node, 1, MPI_INT, 0, local));
  DF11_MPI_CHECK(MPI_Comm_free(&local));
  w.node = node;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  w.host = host;
  SetFatalHandler(&AbortJob);
  return w;
}

void MpiFinalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::unique_ptr<Communicator> MpiWorldCommunicator(double timeout_s) {
  MPI_Comm comm;
  DF11_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  return std::make_unique<MpiCommunicator>(comm, timeout_s);
}

std::unique_ptr<Communicator> MpiSplitCommunicator(int color, double timeout_s) {
  int rank = 0;
  DF11_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  MPI_Comm comm;
  DF11_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, rank, &comm));
  return std::make_unique<MpiCommunicator>(comm, timeout_s);
}

}  // namespace df11
