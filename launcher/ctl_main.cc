// SPDX-License-Identifier: Apache-2.0
// `df11-ctl`: submits batch jobs to df11-coordinator and reads them back.
//   submit --input batch.jsonl [--wait [--output results.jsonl]]   status JOB   list
//   cancel JOB   results JOB [--output F]   cluster
// Invalid input lines are reported on stderr and recorded as failed items; the valid ones run.
// Jobs and the cluster print as JSON; results as JSON lines (see control/result_output.h).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "launcher/control/batch_input.h"
#include "launcher/control/control_client.h"
#include "launcher/control/result_output.h"

namespace df11 {
namespace {

constexpr int kMaxErrorsShown = 20;

int Fail(const Status& s) {
  std::fprintf(stderr, "df11-ctl: %s\n", s.ToString().c_str());
  return ExitCode(s);
}

void PrintJson(const nlohmann::json& j) {
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

bool Finished(const rpc::Job& job) {
  return job.state == rpc::JobState::DONE || job.state == rpc::JobState::CANCELLED ||
         job.state == rpc::JobState::FAILED;
}

// Writes every result of `job_id` to `path`, or to stdout when `path` is empty.
int WriteResults(ControlClient& client, const std::string& job_id, const std::string& path) {
  std::ofstream file;
  if (!path.empty()) {
    file.open(path, std::ios::out | std::ios::trunc);
    if (!file) return Fail(Status::IoError("cannot write " + path));
  }
  std::ostream& out = path.empty() ? std::cout : file;
  StatusOr<int64_t> n = WriteJobResults(client, job_id, out);
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
};

int Submit(ControlClient& client, const SubmitFlags& f) {
  std::ifstream in(f.input);
  if (!in) return Fail(Status::NotFound("cannot read batch file " + f.input));
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
  while (!Finished(current)) {
    std::this_thread::sleep_for(std::chrono::duration<double>(f.poll_s));
    StatusOr<rpc::Job> polled = client.GetJob(current.id);
    if (!polled.ok()) return Fail(polled.status());
    current = *polled;
    std::fprintf(stderr, "job %s: %s %lld/%lld done, %lld failed, %.1f tok/s, eta %.0f s\n",
                 current.id.c_str(), rpc::to_string(current.state).c_str(),
                 static_cast<long long>(current.items_done),
                 static_cast<long long>(current.items_total),
                 static_cast<long long>(current.items_failed), current.tokens_per_s, current.eta_s);
  }
  if (int rc = WriteResults(client, current.id, f.output); rc != 0) return rc;
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
  app.add_option("--timeout", timeout_s, "seconds to wait for each call")->capture_default_str();

  SubmitFlags submit;
  CLI::App* submit_cmd = app.add_subcommand("submit", "submit a batch JSONL file as a job");
  submit_cmd->add_option("--input", submit.input, "batch file (OpenAI batch or plain JSONL)")
      ->required();
  submit_cmd->add_flag("--wait", submit.wait, "wait for the job to finish, then write its results");
  submit_cmd->add_option("--output", submit.output, "results file for --wait (default: stdout)");
  submit_cmd->add_option("--label", submit.label, "a name for the job (default: the input path)");
  submit_cmd->add_option("--poll-seconds", submit.poll_s, "status poll period for --wait")
      ->capture_default_str();
  std::string job_id;
  std::string results_output;
  CLI::App* status_cmd = app.add_subcommand("status", "print a job");
  status_cmd->add_option("JOB", job_id, "job id")->required();
  int32_t list_limit = 0;
  CLI::App* list_cmd = app.add_subcommand("list", "print jobs, newest first, one per line");
  list_cmd->add_option("--limit", list_limit, "at most this many (0: all)");
  CLI::App* cancel_cmd = app.add_subcommand("cancel", "cancel a job");
  cancel_cmd->add_option("JOB", job_id, "job id")->required();
  CLI::App* results_cmd = app.add_subcommand("results", "write a job's results as JSON lines");
  results_cmd->add_option("JOB", job_id, "job id")->required();
  results_cmd->add_option("--output", results_output, "results file (default: stdout)");
  CLI::App* cluster_cmd = app.add_subcommand("cluster", "print worker groups and queue depth");
  CLI11_PARSE(app, argc, argv);

  ControlClientOptions options;
  if (Status s = ParseHostPort(address, &options.host, &options.port); !s.ok()) return Fail(s);
  StatusOr<std::string> token = ReadTokenFile(token_file);
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
