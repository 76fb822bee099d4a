// SPDX-License-Identifier: Apache-2.0
// `df11-coordinator`: the control plane's server. Holds jobs, items and results in one SQLite
// file (--db) and serves Df11Control over Thrift to df11-ctl and to worker groups. Restarting it
// on the same --db resumes every job: leases that lapsed meanwhile go back to the queue.
// SIGINT/SIGTERM stop it cleanly (a call being served finishes, connections close, the port is
// released); should that take longer than kStopGraceSeconds, or a second signal come, it exits
// at once: a kill -9 loses nothing that a call had confirmed either.
#include <glog/logging.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <limits>
#include <optional>
#include <thread>

#include "launcher/cli_flags.h"
#include "launcher/control/coordinator_server.h"
#include "launcher/control/job_store.h"
#include "launcher/control/token_file.h"
#include "runtime/core/file_util.h"
#include "runtime/core/logging.h"

namespace df11 {
namespace {

constexpr int kStopGraceSeconds = 10;

int Fail(const Status& s) {
  std::fprintf(stderr, "df11-coordinator: %s\n", s.ToString().c_str());
  return ExitCode(s);
}

// Takes SIGINT/SIGTERM (blocked in every thread) and stops `server`; exits the process if the
// stop does not end within kStopGraceSeconds or a second signal comes.
void HandleSignals(sigset_t signals, CoordinatorServer* server) {
  int sig = 0;
  sigwait(&signals, &sig);
  LOG(INFO) << "signal " << sig << ": stopping";
  std::thread([server] { server->Stop(); }).detach();
  const timespec grace{kStopGraceSeconds, 0};
  const int again = sigtimedwait(&signals, nullptr, &grace);
  std::fprintf(stderr,
               "df11-coordinator: %s; exiting now (every change a call confirmed is in the "
               "database)\n",
               again > 0
                   ? "second signal"
                   : ("not stopped within " + std::to_string(kStopGraceSeconds) + " s").c_str());
  _exit(1);
}

// The command line: the server's and the store's options and where files go.
struct CoordinatorFlags {
  std::string db_path, token_file, port_file, log_dir;
  bool allow_insecure_token = false;
  int verbosity = 0;
  CoordinatorOptions server;
  JobStoreOptions store;
};

void AddCoordinatorFlags(CLI::App* app, CoordinatorFlags* f) {
  CoordinatorOptions& options = f->server;
  options.port = 9190;
  app->add_option("--db", f->db_path, "SQLite database file (created when missing)")->required();
  app->add_option("--host", options.host, "address to listen on")->capture_default_str();
  app->add_option("--port", options.port, "TCP port; 0 picks a free one (see --port-file)")
      ->capture_default_str()
      ->check(IntegerIn(0, 65535));
  app->add_option("--token-file", f->token_file,
                  "file holding the shared secret every call must carry")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_flag(kAllowInsecureTokenFlag, f->allow_insecure_token, kAllowInsecureTokenHelp);
  app->add_option("--lease-seconds", options.lease_s,
                  "how long a worker group holds leased items without a heartbeat")
      ->capture_default_str()
      ->check(IntegerIn(1, std::numeric_limits<int32_t>::max()));
  app->add_option("--max-attempts", f->store.max_attempts,
                  "an item fails after this many leases expired without its result (the worker "
                  "groups serving it died: the request may crash them)")
      ->capture_default_str()
      ->check(IntegerIn(1, 1000));
  app->add_option("--max-message-bytes", options.max_message_bytes,
                  "largest request accepted; a larger one closes its connection")
      ->capture_default_str()
      ->check(IntegerIn(1, std::numeric_limits<int32_t>::max()));
  app->add_option("--idle-timeout-seconds", options.idle_timeout_s,
                  "close connections silent this long (0: never)")
      ->capture_default_str()
      ->check(IntegerIn(0, std::numeric_limits<int32_t>::max()));
  app->add_option("--handshake-timeout-seconds", options.handshake_timeout_s,
                  "close connections that have not sent a request with the token this long after "
                  "connecting")
      ->capture_default_str()
      ->check(NumberIn(0.1, 3600.0));
  app->add_option("--port-file", f->port_file, "write the port here once listening");
  app->add_option("--log-dir", f->log_dir, "glog files go here (default: stderr)");
  app->add_option("-v,--verbosity", f->verbosity, "VLOG level")->check(IntegerIn(0, 100));
}

int Main(int argc, char** argv) {
  CLI::App app{"df11-coordinator: job queue, results and worker groups of a df11 cluster"};
  CoordinatorFlags flags;
  AddCoordinatorFlags(&app, &flags);
  if (std::optional<int> exit = ParseFlags(&app, argc, argv)) return *exit;

  InitLogging(argv[0], LoggingOptions{0, -1, flags.log_dir, flags.verbosity});
  StatusOr<std::string> token = ReadTokenFile(flags.token_file, flags.allow_insecure_token);
  if (!token.ok()) return Fail(token.status());
  CoordinatorOptions& options = flags.server;
  options.token = *token;

  // Signals are taken by one thread (sigwait), so the server threads never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  flags.store.path = flags.db_path;
  StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(flags.store);
  if (!store.ok()) return Fail(store.status());
  // Leases that lapsed while the coordinator was down end right away.
  StatusOr<ExpiredLeases> expired = (*store)->ExpireLeases((*store)->NowMs());
  if (!expired.ok()) return Fail(expired.status());
  LogExpiredLeases(*expired);
  StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(options, store->get());
  if (!server.ok()) return Fail(server.status());
  if (!flags.port_file.empty()) {
    Status s = WriteFileAtomic(flags.port_file, std::to_string((*server)->port()) + "\n");
    if (!s.ok()) return Fail(s);
  }
  std::printf(
      "df11-coordinator: listening on %s:%d (db %s, %lld items of expired leases "
      "requeued)\n",
      options.host.c_str(), (*server)->port(), flags.db_path.c_str(),
      static_cast<long long>(expired->requeued));
  std::fflush(stdout);

  std::thread(HandleSignals, signals, server->get()).detach();
  Status served = (*server)->Wait();
  (*server)->Stop();
  if (!served.ok()) return Fail(served);
  LOG(INFO) << "coordinator stopped";
  return 0;
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) { return df11::Main(argc, argv); }
