// SPDX-License-Identifier: Apache-2.0
#include "launcher/worker/worker_agent.h"

#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

namespace df11 {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// State shared by the control loop and the heartbeat thread.
class Shared {
 public:
  void Contact() { last_contact_ns_.store(Clock::now().time_since_epoch().count()); }
  double SecondsSinceContact() const {
    return std::chrono::duration<double>(Clock::now().time_since_epoch() -
                                         Clock::duration(last_contact_ns_.load()))
        .count();
  }
  void Cancel(const std::vector<std::string>& job_ids) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& id : job_ids) {
      if (cancelled_.insert(id).second) LOG(WARNING) << "job " << id << " cancelled: dropping its items";
    }
  }
  bool Cancelled(const std::string& job_id) {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_.count(job_id) != 0;
  }
  // Sleeps up to `seconds`; false once Stop() was called.
  bool Sleep(double seconds) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return stop_; });
    return !stop_;
  }
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }

  std::atomic<int32_t> in_flight{0};
  std::atomic<int64_t> tokens{0};

 private:
  std::atomic<Clock::rep> last_contact_ns_{Clock::now().time_since_epoch().count()};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::set<std::string> cancelled_;
};

class Agent {
 public:
  Agent(const WorkerOptions& options, ItemProcessor* processor)
      : o_(options), processor_(processor), client_(options.control) {}

  StatusOr<WorkerSummary> Run() {
    const Clock::time_point start = Clock::now();
    DF11_RETURN_IF_ERROR(Register());
    summary_.group_id = group_id_;
    const double beat_s = o_.heartbeat_s > 0 ? o_.heartbeat_s : std::max(0.5, lease_s_ / 3.0);
    std::thread heartbeat([this, beat_s, start] { HeartbeatLoop(beat_s, start); });
    Status status = Loop();
    shared_.Stop();
    heartbeat.join();
    summary_.seconds = SecondsSince(start);
    if (!status.ok()) return status;
    return summary_;
  }

 private:
  // Waits `seconds`, keeping followers alive meanwhile.
  void Pause(double seconds) {
    const Clock::time_point until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                       std::chrono::duration<double>(seconds));
    for (;;) {
      MaybeKeepAlive();
      const double left = std::chrono::duration<double>(until - Clock::now()).count();
      if (left <= 0) return;
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(left, o_.keepalive_s)));
    }
  }
  void MaybeKeepAlive() {
    if (SecondsSince(last_keepalive_) < o_.keepalive_s * 0.5) return;
    processor_->KeepAlive();
    last_keepalive_ = Clock::now();
  }

  // An RPC failed with `s`: transport trouble is retried until the coordinator has been out of
  // reach longer than a lease; anything else (a wrong token, an unknown group) ends the worker.
  Status CheckReachable(const Status& s, const char* what) {
    if (s.code() != StatusCode::kIoError) return s.WithContext(what);
    const double out = shared_.SecondsSinceContact();
    if (out > lease_s_) {
      return Status::IoError("coordinator " + o_.control.host + ":" +
                             std::to_string(o_.control.port) + " unreachable for " +
                             std::to_string(static_cast<int>(out)) + " s, longer than the lease (" +
                             std::to_string(lease_s_) +
                             " s): exiting so its leases go back to the queue; last error: " +
                             s.ToString());
    }
    LOG_EVERY_N(WARNING, 10) << what << ": " << s.ToString() << " (retrying)";
    return Status::Ok();
  }

  Status Register() {
    const Clock::time_point start = Clock::now();
    double backoff = 0.2;
    for (;;) {
      StatusOr<rpc::Registration> reg = client_.RegisterWorkerGroup(o_.group);
      if (reg.ok()) {
        group_id_ = reg->group_id;
        lease_s_ = std::max(1, reg->lease_s);
        shared_.Contact();
        LOG(INFO) << "registered worker group " << group_id_ << " (" << o_.group.ranks
                  << " ranks, lease " << lease_s_ << " s) with " << o_.control.host << ":"
                  << o_.control.port;
        return Status::Ok();
      }
      if (reg.status().code() != StatusCode::kIoError ||
          SecondsSince(start) > o_.register_timeout_s) {
        return reg.status().WithContext("registering the worker group");
      }
      Pause(backoff);
      backoff = std::min(backoff * 2, o_.max_poll_s);
    }
  }

  void HeartbeatLoop(double beat_s, Clock::time_point start) {
    ControlClient client(o_.control);
    while (shared_.Sleep(beat_s)) {
      rpc::GroupProgress p;
      p.items_in_flight = shared_.in_flight.load();
      p.tokens_generated = shared_.tokens.load();
      const double t = SecondsSince(start);
      p.tokens_per_s = t > 0 ? static_cast<double>(p.tokens_generated) / t : 0;
      StatusOr<rpc::HeartbeatReply> reply = client.Heartbeat(group_id_, p);
      if (!reply.ok()) {
        LOG_EVERY_N(WARNING, 5) << "heartbeat: " << reply.status().ToString();
        continue;
      }
      shared_.Contact();
      if (!reply->ok) {
        LOG(WARNING) << "the coordinator had declared group " << group_id_
                     << " dead; some of its leases may have been requeued";
      }
      shared_.Cancel(reply->cancel_job_ids);
    }
  }

  Status Loop() {
    Clock::time_point last_work = Clock::now();
    double backoff = 0.1;
    // One id per lease request, kept until a reply arrives: a retry after a lost reply (the
    // coordinator restarted mid-call) gets that request's items instead of stranding them.
    int64_t lease_requests = 0;
    for (;;) {
      MaybeKeepAlive();
      int32_t want = o_.lease_items;
      if (o_.max_items > 0) {
        const int64_t left = o_.max_items - summary_.items - summary_.dropped;
        if (left <= 0) {
          LOG(INFO) << "served --max-items " << o_.max_items << " items: exiting";
          return Status::Ok();
        }
        want = static_cast<int32_t>(std::min<int64_t>(want, left));
      }
      StatusOr<std::vector<rpc::Item>> items =
          client_.LeaseWork(group_id_, want, "lease-" + std::to_string(lease_requests));
      if (items.ok()) ++lease_requests;
      if (!items.ok()) {
        DF11_RETURN_IF_ERROR(CheckReachable(items.status(), "leasing work"));
        Pause(backoff);
        backoff = std::min(backoff * 2, o_.max_poll_s);
        continue;
      }
      shared_.Contact();
      if (items->empty()) {
        if (o_.idle_exit_s > 0 && SecondsSince(last_work) >= o_.idle_exit_s) {
          LOG(INFO) << "no work for " << o_.idle_exit_s << " s: exiting";
          return Status::Ok();
        }
        Pause(backoff);
        backoff = std::min(backoff * 2, o_.max_poll_s);
        continue;
      }
      backoff = 0.1;
      DF11_RETURN_IF_ERROR(Serve(std::move(items).value()));
      last_work = Clock::now();
    }
  }

  Status Serve(std::vector<rpc::Item> items) {
    const size_t leased = items.size();
    std::erase_if(items, [&](const rpc::Item& it) { return shared_.Cancelled(it.job_id); });
    summary_.dropped += static_cast<int64_t>(leased - items.size());
    if (items.empty()) return Status::Ok();
    shared_.in_flight = static_cast<int32_t>(items.size());
    std::map<int64_t, std::string> job_of;
    for (const rpc::Item& it : items) job_of[it.item_id] = it.job_id;
    // Finished outcomes not yet stored; reported a few at a time while the others run (a report
    // that fails for want of the coordinator is retried with the next ones), the rest at the end.
    std::map<int64_t, rpc::ItemOutcome> ready;
    const size_t chunk = std::max<size_t>(1, items.size() / 4);
    Clock::time_point last_report = Clock::now();
    // A partial report runs between steps; after one fails (the coordinator unreachable: each
    // try can take the connect timeout) the next waits kPartialHold, so a network partition
    // slows generation by at most one timeout per hold instead of one per finished chunk.
    constexpr std::chrono::seconds kPartialHold(30);
    Clock::time_point next_partial = last_report;
    auto done = [&](int64_t item_id, rpc::ItemOutcome outcome) -> Status {
      --shared_.in_flight;
      // A job cancelled while its items ran: their results are not reported.
      if (shared_.Cancelled(job_of[item_id])) {
        ++summary_.dropped;
        return Status::Ok();
      }
      shared_.tokens += outcome.completion_tokens;
      ready[item_id] = std::move(outcome);
      if (ready.size() < chunk && SecondsSince(last_report) < 2.0) return Status::Ok();
      if (Clock::now() < next_partial) return Status::Ok();
      last_report = Clock::now();
      DF11_RETURN_IF_ERROR(Report(&ready, /*retry=*/false));
      if (!ready.empty()) {  // not stored: keep them for the next report
        next_partial = Clock::now() + kPartialHold;
        LOG(WARNING) << "could not report " << ready.size() << " finished items; holding them for "
                     << kPartialHold.count() << " s or the end of the lease";
      }
      return Status::Ok();
    };
    DF11_RETURN_IF_ERROR(processor_->Process(items, done));
    last_keepalive_ = Clock::now();
    for (auto it = ready.begin(); it != ready.end();) {  // cancelled since they finished
      if (shared_.Cancelled(job_of[it->first])) {
        ++summary_.dropped;
        it = ready.erase(it);
      } else {
        ++it;
      }
    }
    DF11_RETURN_IF_ERROR(Report(&ready, /*retry=*/true));
    shared_.in_flight = 0;
    return Status::Ok();
  }

  // Reports `outcomes` and clears them once stored. retry: until stored (or the coordinator has
  // been away longer than a lease); otherwise one attempt, keeping them on a transport failure.
  Status Report(std::map<int64_t, rpc::ItemOutcome>* outcomes, bool retry) {
    double backoff = 0.2;
    while (!outcomes->empty()) {
      StatusOr<rpc::ReportReply> reply = client_.ReportResults(group_id_, *outcomes);
      if (reply.ok()) {
        shared_.Contact();
        if (reply->duplicates > 0) {
          LOG(INFO) << reply->duplicates << " of " << outcomes->size()
                    << " results were already stored (another group or a retried report)";
        }
        int64_t failed = 0, tokens = 0;
        for (const auto& [id, outcome] : *outcomes) {
          if (!outcome.error.empty()) ++failed;
          tokens += outcome.completion_tokens;
        }
        summary_.items += static_cast<int64_t>(outcomes->size());
        summary_.failed += failed;
        summary_.tokens += tokens;
        LOG(INFO) << "reported " << outcomes->size() << " items (" << failed << " failed, "
                  << tokens << " tokens); " << summary_.items << " so far";
        outcomes->clear();
        return Status::Ok();
      }
      DF11_RETURN_IF_ERROR(CheckReachable(reply.status(), "reporting results"));
      if (!retry) return Status::Ok();
      Pause(backoff);
      backoff = std::min(backoff * 2, o_.max_poll_s);
    }
    return Status::Ok();
  }

  const WorkerOptions& o_;
  ItemProcessor* processor_;
  ControlClient client_;
  Shared shared_;
  std::string group_id_;
  int32_t lease_s_ = 300;
  Clock::time_point last_keepalive_ = Clock::now();
  WorkerSummary summary_;
};

}  // namespace

StatusOr<WorkerSummary> RunWorker(const WorkerOptions& options, ItemProcessor* processor) {
  Agent agent(options, processor);
  return agent.Run();
}

}  // namespace df11
