// SPDX-License-Identifier: Apache-2.0
// `df11-coordinator`: the control plane's server. Holds jobs, items and results in one SQLite
// file (--db) and serves Df11Control over Thrift to df11-ctl and to worker groups. Restarting it
// on the same --db resumes every job: leases that lapsed meanwhile go back to the queue.
// SIGINT/SIGTERM stop it cleanly; a kill -9 loses nothing that a call had confirmed.
#include <glog/logging.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "launcher/control/control_client.h"
#include "launcher/control/coordinator_server.h"
#include "launcher/control/job_store.h"
#include "runtime/core/file_util.h"
#include "runtime/core/logging.h"

namespace df11 {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "df11-coordinator: %s\n", s.ToString().c_str());
  return ExitCode(s);
}

int Main(int argc, char** argv) {
  CLI::App app{"df11-coordinator: job queue, results and worker groups of a df11 cluster"};
  std::string db_path;
  std::string token_file;
  std::string port_file;
  std::string log_dir;
  CoordinatorOptions options;
  options.port = 9190;
  int verbosity = 0;
  app.add_option("--db", db_path, "SQLite database file (created when missing)")->required();
  app.add_option("--host", options.host, "address to listen on")->capture_default_str();
  app.add_option("--port", options.port, "TCP port; 0 picks a free one (see --port-file)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--token-file", token_file, "file holding the shared secret every call must carry")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--lease-seconds", options.lease_s,
                 "how long a worker group holds leased items without a heartbeat")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-message-bytes", options.max_message_bytes,
                 "largest request accepted; a larger one closes its connection")
      ->capture_default_str();
  app.add_option("--idle-timeout-seconds", options.idle_timeout_s,
                 "close connections silent this long (0: never)")
      ->capture_default_str();
  app.add_option("--port-file", port_file, "write the port here once listening");
  app.add_option("--log-dir", log_dir, "glog files go here (default: stderr)");
  app.add_option("-v,--verbosity", verbosity, "VLOG level");
  CLI11_PARSE(app, argc, argv);

  InitLogging(argv[0], LoggingOptions{0, -1, log_dir, verbosity});
  StatusOr<std::string> token = ReadTokenFile(token_file);
  if (!token.ok()) return Fail(token.status());
  options.token = *token;

  // Signals are taken by one thread (sigwait), so the server threads never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(JobStoreOptions{db_path, {}});
  if (!store.ok()) return Fail(store.status());
  // Leases that lapsed while the coordinator was down go back to the queue right away.
  StatusOr<int64_t> expired = (*store)->ExpireLeases((*store)->NowMs());
  if (!expired.ok()) return Fail(expired.status());
  StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(options, store->get());
  if (!server.ok()) return Fail(server.status());
  if (!port_file.empty()) {
    Status s = WriteFileAtomic(port_file, std::to_string((*server)->port()) + "\n");
    if (!s.ok()) return Fail(s);
  }
  std::printf("df11-coordinator: listening on %s:%d (db %s, %lld expired leases requeued)\n",
              options.host.c_str(), (*server)->port(), db_path.c_str(),
              static_cast<long long>(*expired));
  std::fflush(stdout);

  CoordinatorServer* raw = server->get();
  std::thread([signals, raw] {
    int sig = 0;
    sigwait(&signals, &sig);
    LOG(INFO) << "signal " << sig << ": stopping";
    raw->Stop();
  }).detach();
  raw->Wait();
  (*server)->Stop();
  LOG(INFO) << "coordinator stopped";
  return 0;
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) { return df11::Main(argc, argv); }
