#include "tests/testing/fake_worker_pool.h"

#include <signal.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/frame.h"
#include "common/util.h"

namespace taskrt::testing {

using daemon::WorkerExit;
using daemon::WorkerPhase;

FakeWorkerPool::FakeWorkerPool(FakeWorkerPoolOptions options) : options_(std::move(options)) {
  for (int p = 0; p < daemon::kPoolKinds; ++p) {
    for (int slot = 0; slot < options_.workers[p]; ++slot) {
      daemon::WorkerSlot w;
      w.pool = static_cast<daemon::PoolKind>(p);
      w.slot = slot;
      workers_.push_back(w);
      kill_exit_.push_back(WorkerExit::kKilled);
    }
  }
}

void FakeWorkerPool::Start(daemon::WorkerPoolObserver* observer) {
  observer_ = observer;
  for (int id = 0; id < size(); ++id) {
    observer_->InOperation([&] { Hello(id); });
  }
}

void FakeWorkerPool::Hello(int id) {
  daemon::WorkerSlot& w = workers_[id];
  w.pid = next_pid_++;
  w.phase = WorkerPhase::kStarting;
  w.killed = w.retiring = false;
  w.tasks_run = 0;
  w.started_us = options_.clock != nullptr ? options_.clock->NowUnixMicros() : 0;
  v1::internal::WorkerHello hello;
  hello.set_pid(w.pid);
  for (const auto& h : options_.handlers) *hello.add_handlers() = h;
  if (observer_->OnHello(id, hello)) w.phase = WorkerPhase::kReady;
}

void FakeWorkerPool::Stop() {
  if (observer_ == nullptr) return;
  observer_->InOperation([&] {
    for (auto& w : workers_) w.phase = WorkerPhase::kDead;
  });
  observer_ = nullptr;
}

void FakeWorkerPool::AddRun(int id, const daemon::RunSlot& run) {
  daemon::WorkerSlot& w = workers_[id];
  w.runs.emplace(run.run_id, run);
  (run.async ? w.async_running : w.sync_running)++;
  if (!run.short_task) ++w.long_running;
}

void FakeWorkerPool::MarkCancelled(int id, uint64_t run_id, int64_t now_us) {
  auto it = workers_[id].runs.find(run_id);
  if (it != workers_[id].runs.end() && it->second.cancelled_us == 0)
    it->second.cancelled_us = now_us;
}

void FakeWorkerPool::Send(int id, pid_t pid, std::string_view frames) {
  if (workers_[id].pid != pid) return;
  internal::FrameDecoder decoder;
  decoder.Append(frames);
  v1::internal::WorkerFrame frame;
  std::lock_guard<std::mutex> lock(sent_mu_);
  while (true) {
    absl::StatusOr<bool> next = decoder.Next(&frame);
    if (!next.ok() || !*next) break;
    sent_.push_back({id, pid, frame});
  }
}

void FakeWorkerPool::Kill(int id, WorkerExit why, std::string reason) {
  daemon::WorkerSlot& w = workers_[id];
  if (w.pid <= 0 || w.killed) return;
  w.killed = true;
  kill_exit_[id] = why;
}

void FakeWorkerPool::Terminate(int id, WorkerExit why) { Kill(id, why); }

void FakeWorkerPool::MaybeRecycle(int id, const v1::internal::TaskDone& done) {
  daemon::WorkerSlot& w = workers_[id];
  if (options_.max_tasks > 0 && w.tasks_run >= options_.max_tasks) w.retiring = true;
  if (w.retiring && w.runs.empty()) Terminate(id, WorkerExit::kRecycled);
}

void FakeWorkerPool::CheckStuck(int64_t now_us, int64_t grace_us) {
  for (int id = 0; id < size(); ++id) {
    const daemon::WorkerSlot& w = workers_[id];
    if (daemon::IsCpuPool(w.pool) || w.killed) continue;
    for (const auto& [run_id, run] : w.runs) {
      if (run.cancelled_us != 0 && now_us - run.cancelled_us >= grace_us) {
        Kill(id, WorkerExit::kStuck);
        break;
      }
    }
  }
}

std::vector<v1::internal::RunTask> FakeWorkerPool::Runs(size_t n, absl::Duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  while (true) {
    std::vector<v1::internal::RunTask> runs;
    {
      std::lock_guard<std::mutex> lock(sent_mu_);
      for (const SentFrame& s : sent_) {
        if (s.frame.has_run()) runs.push_back(s.frame.run());
      }
    }
    if (runs.size() >= n || std::chrono::steady_clock::now() >= deadline) return runs;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the journal's thread sends
  }
}

std::vector<uint64_t> FakeWorkerPool::Cancels() {
  std::lock_guard<std::mutex> lock(sent_mu_);
  std::vector<uint64_t> out;
  for (const SentFrame& s : sent_) {
    if (s.frame.has_cancel()) out.push_back(s.frame.cancel().seq());
  }
  return out;
}

int FakeWorkerPool::WorkerOf(uint64_t run_id) {
  std::lock_guard<std::mutex> lock(sent_mu_);
  for (const SentFrame& s : sent_) {
    if (s.frame.has_run() && s.frame.run().seq() == run_id) return s.worker;
  }
  return -1;
}

void FakeWorkerPool::Finish(uint64_t run_id, bool ok, std::string output, v1::FailureKind failure,
                            bool retryable, int64_t cpu_us, int64_t wall_us) {
  const int id = WorkerOf(run_id);
  if (id < 0) return;
  observer_->InOperation([&] {
    daemon::WorkerSlot& w = workers_[id];
    auto it = w.runs.find(run_id);
    if (it == w.runs.end()) return;
    const daemon::RunSlot run = it->second;
    w.runs.erase(it);
    (run.async ? w.async_running : w.sync_running)--;
    if (!run.short_task) --w.long_running;
    ++w.tasks_run;
    ++counters_[static_cast<int>(w.pool)].completed;
    v1::internal::TaskDone done;
    done.set_seq(run_id);
    done.set_ok(ok);
    done.set_output(std::move(output));
    done.set_failure(failure);
    done.set_retryable(retryable);
    if (!ok) done.set_error("it failed");
    const int64_t now = options_.clock != nullptr ? options_.clock->NowUnixMicros() : 0;
    done.set_started_unix_us(now - wall_us);
    done.set_finished_unix_us(now);
    done.set_cpu_time_us(cpu_us);
    observer_->OnDone(id, run, done);
    MaybeRecycle(id, done);
  });
}

void FakeWorkerPool::Die(int id, int signal, WorkerExit why) {
  observer_->InOperation([&] {
    daemon::WorkerSlot& w = workers_[id];
    daemon::WorkerLoss loss;
    loss.exit = why;
    loss.signal = signal;
    loss.how = absl::StrCat("was killed by ", internal::SignalName(signal));
    daemon::PoolCounters& c = counters_[static_cast<int>(w.pool)];
    ++(why == WorkerExit::kRecycled ? c.recycled : c.respawns);
    const daemon::WorkerSlot was = w;
    std::vector<daemon::RunSlot> runs;
    for (const auto& [run_id, run] : w.runs) runs.push_back(run);
    w.runs.clear();
    w.sync_running = w.async_running = w.long_running = 0;
    w.phase = WorkerPhase::kDead;
    w.pid = -1;
    observer_->OnLost(id, was, loss, runs);
    Hello(id);  // respawned at once
  });
}

void FakeWorkerPool::ReapKilled() {
  for (int id = 0; id < size(); ++id) {
    WorkerExit why;
    if (killed(id, &why)) Die(id, SIGKILL, why);
  }
}

bool FakeWorkerPool::killed(int id, WorkerExit* why) {
  bool k = false;
  observer_->InOperation([&] {
    k = workers_[id].killed;
    if (why != nullptr) *why = kill_exit_[id];
  });
  return k;
}

}  // namespace taskrt::testing
