// SPDX-License-Identifier: Apache-2.0
// `df11-ctl`: submits batch jobs to df11-coordinator and reads them back.
//   submit --input batch.jsonl [--wait [--output results.jsonl]]   status JOB   list
//   cancel JOB   results JOB [--output F]   cluster
// Invalid input lines are reported on stderr and recorded as failed items; the valid ones run.
// Jobs and the cluster print as JSON; results as JSON lines (see control/result_output.h).
// `submit --wait` outlasts a coordinator restart: an unreachable coordinator is polled again with
// backoff for up to --reconnect-seconds before it gives up (the job stays on the coordinator).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

#include "launcher/cli_flags.h"
#include "launcher/control/batch_input.h"
#include "launcher/control/control_client.h"
#include "launcher/control/result_output.h"
#include "launcher/control/token_file.h"
#include "runtime/core/file_util.h"

namespace df11 {
namespace {

constexpr int kMaxErrorsShown = 20;

int Fail(const Status& s) {
  std::fprintf(stderr, "df11-ctl: %s\n", s.ToString().c_str());
  return ExitCode(s);
}

using Clock = std::chrono::steady_clock;

// Decides, for one job being waited for, whether a failed call is tried again: only when the
// coordinator was out of reach (kIoError: it may be restarting), with backoff, until it has been
// out of reach for `limit_s`. Says on stderr what it waits for.
class Reconnect {
 public:
  Reconnect(const ControlClientOptions& client, std::string job_id, double limit_s)
      : coordinator_(client.host + ":" + std::to_string(client.port)),
        job_id_(std::move(job_id)),
        limit_s_(limit_s) {}

  // After a failed call: sleeps and returns OK to retry, else the Status to give up with.
  Status Retry(const Status& failure) {
    if (failure.code() != StatusCode::kIoError) return failure;
    const Clock::time_point now = Clock::now();
    if (!out_of_reach_) {
      out_of_reach_ = true;
      since_ = now;
      backoff_s_ = 0.25;
      std::fprintf(stderr,
                   "job %s: coordinator %s out of reach (%s); waiting for it to come back, up "
                   "to %.0f s (--reconnect-seconds)\n",
                   job_id_.c_str(), coordinator_.c_str(), failure.message().c_str(), limit_s_);
    }
    const double out_s = std::chrono::duration<double>(now - since_).count();
    if (out_s >= limit_s_) {
      return Status::IoError("coordinator " + coordinator_ + " out of reach for " +
                             std::to_string(static_cast<int>(out_s)) + " s (--reconnect-seconds " +
                             std::to_string(static_cast<int>(limit_s_)) +
                             "): stopped waiting for job " + job_id_ +
                             ", which stays on the coordinator (df11-ctl status|results " +
                             job_id_ + "); last error: " + failure.message());
    }
    std::this_thread::sleep_for(
        std::chrono::duration<double>(std::min(backoff_s_, limit_s_ - out_s)));
    backoff_s_ = std::min(backoff_s_ * 2, 5.0);
    return Status::Ok();
  }
  // After a successful call.
  void Reached() {
    if (!out_of_reach_) return;
    out_of_reach_ = false;
    std::fprintf(stderr, "job %s: coordinator %s back after %.1f s\n", job_id_.c_str(),
                 coordinator_.c_str(),
                 std::chrono::duration<double>(Clock::now() - since_).count());
  }

 private:
  std::string coordinator_;
  std::string job_id_;
  double limit_s_;
  bool out_of_reach_ = false;
  Clock::time_point since_;
  double backoff_s_ = 0.25;
};

void PrintJson(const nlohmann::json& j) {
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

bool Finished(const rpc::Job& job) {
  return job.state == rpc::JobState::DONE || job.state == rpc::JobState::CANCELLED ||
         job.state == rpc::JobState::FAILED;
}

// Writes every result of `job_id` to `path`, or to stdout when `path` is empty.
int WriteResults(ControlClient& client, const std::string& job_id, const std::string& path,
                 Reconnect* reconnect = nullptr) {
  std::ofstream file;
  if (!path.empty()) {
    file.open(path, std::ios::out | std::ios::trunc);
    if (!file) return Fail(Status::IoError("cannot write " + path));
  }
  std::ostream& out = path.empty() ? std::cout : file;
  RetryPolicy retry;
  if (reconnect != nullptr) retry = [reconnect](const Status& s) { return reconnect->Retry(s); };
  StatusOr<int64_t> n = WriteJobResults(client, job_id, out, 1000, retry);
  if (!n.ok()) return Fail(n.status());
  out.flush();
  if (!path.empty())
    std::fprintf(stderr, "wrote %lld results to %s\n", static_cast<long long>(*n), path.c_str());
  return 0;
}

struct SubmitFlags {
  std::string input;
  std::string output;
  std::string label;
  bool wait = false;
  double poll_s = 1.0;
  double reconnect_s = 600;
};

int Submit(ControlClient& client, const SubmitFlags& f) {
  // "-": standard input (a pipe or a redirected file).
  StatusOr<std::string> text = ReadFileToString(f.input == "-" ? "/dev/stdin" : f.input);
  if (!text.ok()) {
    return Fail(f.input == "-" ? text.status().WithContext("--input - (standard input)")
                               : text.status());
  }
  std::istringstream in(*text);
  std::vector<BatchInputLine> lines = ReadBatchInput(in);
  if (lines.empty()) return Fail(Status::InvalidArgument(f.input + ": no request lines"));
  std::vector<rpc::ItemInput> items;
  int64_t invalid = 0;
  for (BatchInputLine& line : lines) {
    if (!line.error.empty()) {
      if (invalid++ < kMaxErrorsShown)
        std::fprintf(stderr, "%s: %s\n", f.input.c_str(), line.error.c_str());
    }
    rpc::ItemInput item;
    item.custom_id = std::move(line.custom_id);
    item.request_json = std::move(line.request_json);
    item.error = std::move(line.error);
    items.push_back(std::move(item));
  }
  if (invalid > kMaxErrorsShown) {
    std::fprintf(stderr, "%s: ... and %lld more invalid lines\n", f.input.c_str(),
                 static_cast<long long>(invalid - kMaxErrorsShown));
  }
  StatusOr<rpc::Job> job = client.SubmitJob(items, f.label.empty() ? f.input : f.label);
  if (!job.ok()) {
    return Fail(job.status().code() == StatusCode::kIoError
                    ? job.status().WithContext("submit (a batch larger than the coordinator's "
                                               "--max-message-bytes is refused)")
                    : job.status());
  }
  std::fprintf(stderr, "submitted job %s: %lld items, %lld invalid lines recorded as failed\n",
               job->id.c_str(), static_cast<long long>(job->items_total),
               static_cast<long long>(invalid));
  if (!f.wait) {
    PrintJson(JobToJson(*job));
    return 0;
  }
  rpc::Job current = *job;
  Reconnect reconnect(client.options(), current.id, f.reconnect_s);
  while (!Finished(current)) {
    std::this_thread::sleep_for(std::chrono::duration<double>(f.poll_s));
    StatusOr<rpc::Job> polled = client.GetJob(current.id);
    if (!polled.ok()) {
      if (Status s = reconnect.Retry(polled.status()); !s.ok()) return Fail(s);
      continue;
    }
    reconnect.Reached();
    current = *polled;
    std::fprintf(stderr, "job %s: %s %lld/%lld done, %lld failed, %.1f tok/s, eta %.0f s\n",
                 current.id.c_str(), rpc::to_string(current.state).c_str(),
                 static_cast<long long>(current.items_done),
                 static_cast<long long>(current.items_total),
                 static_cast<long long>(current.items_failed), current.tokens_per_s, current.eta_s);
  }
  if (int rc = WriteResults(client, current.id, f.output, &reconnect); rc != 0) return rc;
  return current.state == rpc::JobState::DONE ? 0 : 1;
}

int Main(int argc, char** argv) {
  CLI::App app{"df11-ctl: submit and follow batch jobs on a df11-coordinator"};
  app.require_subcommand(1);
  std::string address = "127.0.0.1:9190";
  std::string token_file;
  double timeout_s = 60;
  app.add_option("--coordinator", address, "HOST:PORT of df11-coordinator")->capture_default_str();
  app.add_option("--token-file", token_file, "file holding the coordinator's token")
      ->required()
      ->check(CLI::ExistingFile);
  bool allow_insecure_token = false;
  app.add_flag(kAllowInsecureTokenFlag, allow_insecure_token, kAllowInsecureTokenHelp);
  app.add_option("--timeout", timeout_s, "seconds to wait for each call")
      ->check(NumberIn(0.001, 86400))->capture_default_str();

  SubmitFlags submit;
  CLI::App* submit_cmd = app.add_subcommand("submit", "submit a batch JSONL file as a job");
  submit_cmd
      ->add_option("--input", submit.input,
                   "batch file (OpenAI batch or plain JSONL; - reads standard input)")
      ->required();
  submit_cmd->add_flag("--wait", submit.wait, "wait for the job to finish, then write its results");
  submit_cmd->add_option("--output", submit.output, "results file for --wait (default: stdout)");
  submit_cmd->add_option("--label", submit.label, "a name for the job (default: the input path)");
  submit_cmd->add_option("--poll-seconds", submit.poll_s, "status poll period for --wait")
      ->check(NumberIn(0.001, 86400))->capture_default_str();
  submit_cmd
      ->add_option("--reconnect-seconds", submit.reconnect_s,
                   "with --wait: how long to keep polling a coordinator that is out of "
                   "reach (restarting) before giving up")
      ->capture_default_str()
      ->check(NumberIn(0.0, 1e6));
  std::string job_id;
  std::string results_output;
  CLI::App* status_cmd = app.add_subcommand("status", "print a job");
  status_cmd->add_option("JOB", job_id, "job id")->required();
  int32_t list_limit = 0;
  CLI::App* list_cmd = app.add_subcommand("list", "print jobs, newest first, one per line");
  list_cmd->add_option("--limit", list_limit, "at most this many (0: all)")
      ->check(IntegerIn(0, std::numeric_limits<int32_t>::max()));
  CLI::App* cancel_cmd = app.add_subcommand("cancel", "cancel a job");
  cancel_cmd->add_option("JOB", job_id, "job id")->required();
  CLI::App* results_cmd = app.add_subcommand("results", "write a job's results as JSON lines");
  results_cmd->add_option("JOB", job_id, "job id")->required();
  results_cmd->add_option("--output", results_output, "results file (default: stdout)");
  CLI::App* cluster_cmd = app.add_subcommand("cluster", "print worker groups and queue depth");
  if (std::optional<int> exit = ParseFlags(&app, argc, argv)) return *exit;

  ControlClientOptions options;
  if (Status s = ParseHostPort(address, &options.host, &options.port); !s.ok()) return Fail(s);
  StatusOr<std::string> token = ReadTokenFile(token_file, allow_insecure_token);
  if (!token.ok()) return Fail(token.status());
  options.token = *token;
  options.rpc_timeout_ms = static_cast<int32_t>(timeout_s * 1000);
  ControlClient client(options);

  if (submit_cmd->parsed()) return Submit(client, submit);
  if (status_cmd->parsed() || cancel_cmd->parsed()) {
    StatusOr<rpc::Job> job =
        status_cmd->parsed() ? client.GetJob(job_id) : client.CancelJob(job_id);
    if (!job.ok()) return Fail(job.status());
    PrintJson(JobToJson(*job));
    return 0;
  }
  if (list_cmd->parsed()) {
    StatusOr<std::vector<rpc::Job>> jobs = client.ListJobs(list_limit);
    if (!jobs.ok()) return Fail(jobs.status());
    for (const rpc::Job& job : *jobs) PrintJson(JobToJson(job));
    return 0;
  }
  if (results_cmd->parsed()) return WriteResults(client, job_id, results_output);
  if (cluster_cmd->parsed()) {
    StatusOr<rpc::ClusterState> cluster = client.ClusterStatus();
    if (!cluster.ok()) return Fail(cluster.status());
    PrintJson(ClusterToJson(*cluster));
    return 0;
  }
  return 0;
}

}  // namespace
}  // namespace df11

int main(int argc, char** argv) { return df11::Main(argc, argv); }
