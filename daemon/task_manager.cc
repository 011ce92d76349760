// TaskManager: construction, start and stop, operations (OpLock) and the journal
// hand-off, recovery, and the workers' hellos. Submit is in task_manager_submit.cc,
// dispatch and outcomes in task_manager_run.cc, queries in task_manager_query.cc.
#include "daemon/task_manager.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/process_worker_pool.h"
#include "daemon/task_util.h"

namespace taskrt::daemon {
namespace {

std::string MakePrefix(int64_t now_us) {
  const uint64_t x = static_cast<uint64_t>(now_us) * 2654435761u ^ static_cast<uint64_t>(::getpid())
                                                                       << 20;
  return absl::StrFormat("%06x", (x >> 8) & 0xffffff);
}

std::unique_ptr<WorkerPool> MakeProcessPool(const TaskManagerOptions& o, Clock* clock) {
  ProcessWorkerPoolOptions p;
  const bool python = !o.python.empty();
  p.workers = {o.cpu_workers, o.io_workers, python ? o.python_cpu_workers : 0,
               python ? o.python_io_workers : 0};
  p.threads = {1, o.io_threads, 1, o.python_io_threads};
  p.worker_path = o.worker_path;
  p.plugins = o.plugins;
  p.python = o.python;
  p.python_path = o.python_path;
  p.python_modules = o.python_modules;
  p.cpu_memory_limit_bytes = o.cpu_memory_limit_bytes;
  p.max_output_bytes = o.max_output_bytes;
  p.worker_max_tasks = o.worker_max_tasks;
  p.worker_max_rss_kb = o.worker_max_rss_kb;
  p.kill_grace_ms = o.kill_grace_ms;
  p.clock = clock;
  return std::make_unique<ProcessWorkerPool>(std::move(p));
}

}  // namespace

TaskManager::TaskManager(TaskManagerOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : SystemClock()),
      daemon_pid_(::getpid()),
      started_us_(clock_->NowUnixMicros()),
      owned_pool_(options_.pool == nullptr ? MakeProcessPool(options_, clock_) : nullptr),
      pool_(options_.pool != nullptr ? options_.pool : owned_pool_.get()),
      table_(options_.id_prefix.empty() ? MakePrefix(started_us_) : options_.id_prefix,
             options_.max_retained) {}

TaskManager::~TaskManager() { Stop(); }

absl::Status TaskManager::Start() {
  {
    OpLock lock(this);
    python_on_ = !options_.python.empty();
    if (!python_on_) python_status_ = "off: no interpreter (taskrtd --python PATH turns it on)";
  }
  pool_->Start(this);
  std::vector<StoredTask> stored;
  LearnedMap learned;  // what the classifier learned before a restart
  if (options_.journal != nullptr) {
    auto loaded = options_.journal->LoadAll();
    if (!loaded.ok()) return loaded.status();
    stored = std::move(*loaded);
    auto classes = options_.journal->LoadLearned();
    if (!classes.ok()) return classes.status();
    learned = std::move(*classes);
  }
  if (options_.tick_ms > 0) ticker_ = std::thread([this] { TickerLoop(); });

  OpLock lock(this);
  auto all_ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!startup_error_.ok()) return true;
    for (int id = 0; id < pool_->size(); ++id) {
      const WorkerSlot& w = pool_->worker(id);
      if (IsPythonPool(w.pool) && !python_on_) continue;
      if (w.phase != WorkerPhase::kReady) return false;
    }
    return true;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&all_ready),
                            absl::Milliseconds(options_.startup_timeout_ms))) {
    return absl::DeadlineExceededError(
        absl::StrCat("workers did not start within ", options_.startup_timeout_ms,
                     " ms: check that ", options_.worker_path, " runs (it logs to this stderr)"));
  }
  if (!startup_error_.ok()) return startup_error_;
  started_ = true;
  learned_ = std::move(learned);
  RecoverLocked(std::move(stored));  // needs the handlers the workers registered
  DispatchLocked();
  return absl::OkStatus();
}

void TaskManager::Stop() {
  {
    OpLock lock(this);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [handle, waiter] : waiters_.TakeAll()) {
      if (!waiter.done) continue;  // per-task waits end with their calls
      op_.Defer([done = std::move(waiter.done)] {
        done(absl::UnavailableError("taskrtd is shutting down"));
      });
    }
  }
  if (ticker_.joinable()) ticker_.join();
  pool_->Stop();
}

size_t TaskManager::Drain(absl::Duration timeout) {
  OpLock lock(this);
  draining_ = true;
  auto running = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t n = 0;
    for (int id = 0; id < pool_->size(); ++id) n += pool_->worker(id).runs.size();
    return n;
  };
  auto idle = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running() == 0; };
  mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
  return running();
}

void TaskManager::TickerLoop() {
  int64_t last_report_us = 0;
  while (true) {
    std::optional<QueueDepths> report;
    {
      OpLock lock(this);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(options_.tick_ms))) {
        return;
      }
      TickLocked();
      // The wall clock may step back: report then too, or the watchdog would starve.
      const int64_t now = clock_->NowUnixMicros();
      if (options_.on_tick &&
          (now < last_report_us || now - last_report_us >= options_.on_tick_ms * 1000)) {
        last_report_us = now;
        report = DepthsLocked();
      }
    }
    if (report) options_.on_tick(*report);  // without mu_: it may block on a socket
  }
}

QueueDepths TaskManager::Depths() {
  OpLock lock(this);
  return DepthsLocked();
}

QueueDepths TaskManager::DepthsLocked() {
  QueueDepths d;
  d.queued = table_.by_state()[v1::TASK_STATE_QUEUED];
  d.running = table_.by_state()[v1::TASK_STATE_RUNNING];
  d.draining = draining_;
  return d;
}

void TaskManager::Tick() {
  OpLock lock(this);
  TickLocked();
}

void TaskManager::TickLocked() {
  const int64_t now = clock_->NowUnixMicros();
  CheckDeadlinesLocked();
  pool_->CheckStuck(now, options_.stuck_grace_ms * 1000);
  PromoteDueLocked();
  // Retention looks at a bounded number of tasks per tick.
  table_.Evict(now - options_.retain_for_ms * 1000, 1000, &op_.erased());
  DispatchLocked();
}

// ---------------------------------------------------------------------------------
// Operations and the journal hand-off.

void TaskManager::InOperation(absl::FunctionRef<void()> fn) {
  OpLock lock(this);
  fn();
  DispatchLocked();
}

void TaskManager::PersistLocked(uint64_t seq) {
  if (options_.journal == nullptr) return;
  TaskRecord& r = table_.at(seq);
  if (r.dirty) return;
  r.dirty = true;
  op_.Persist(seq);
}

void TaskManager::SendLocked(int worker, const v1::internal::WorkerFrame& frame) {
  op_.Stage(worker, pool_->worker(worker).pid, frame);
}

void TaskManager::FlushRowsLocked() {
  const bool relaxed = op_.TakeRelaxed();
  if (options_.journal == nullptr) {
    op_.TakeErased();
    return;
  }
  if (!op_.has_rows()) return;
  std::vector<Journal::Change> changes;
  for (uint64_t seq : op_.TakeDirty()) {
    TaskRecord* r = table_.find(seq);
    if (r == nullptr) continue;  // retired within the operation: erased below
    r->dirty = false;
    changes.push_back({seq, &r->task});
  }
  for (uint64_t seq : op_.TakeErased()) changes.push_back({seq, nullptr});
  options_.journal->Apply(changes, /*sync=*/!relaxed);
}

void TaskManager::EndOperation() {
  FlushRowsLocked();
  std::vector<StagedFrames> staged = op_.TakeStaged();
  std::vector<std::function<void()>> callbacks = op_.TakeCallbacks();
  Journal* const journal = options_.journal;
  if (!staged.empty() && journal == nullptr) {
    for (const StagedFrames& s : staged) pool_->Send(s.worker, s.pid, s.bytes);
  } else if (!staged.empty()) {
    // Frames go out only after the journal holds the state changes they follow from
    // (a RUNNING record with its attempt count before the task reaches a worker).
    journal->AfterCommit(journal->last_ticket(), [this, staged = std::move(staged)](absl::Status) {
      OpLock lock(this);
      for (const StagedFrames& s : staged) {
        pool_->Send(s.worker, s.pid, s.bytes);
      }
    });
  }
  mu_.Unlock();
  if (callbacks.empty()) return;
  if (journal == nullptr) {
    for (auto& fn : callbacks) fn();
    return;
  }
  // Answer waiters only once what they are told is on disk.
  journal->AfterCommit(journal->last_ticket(), [fns = std::move(callbacks)](absl::Status) {
    for (auto& fn : fns) fn();
  });
}

void TaskManager::WhenDurable(uint64_t ticket, std::vector<std::string> ids,
                              std::function<void(absl::Status)> done) {
  if (options_.journal == nullptr) return done(absl::OkStatus());
  options_.journal->AfterCommit(ticket, [this, ids = std::move(ids),
                                         done = std::move(done)](absl::Status status) {
    if (!status.ok()) {
      // Not durable, so not accepted: withdraw what has not started.
      OpLock lock(this);
      for (const auto& id : ids) {
        absl::StatusOr<uint64_t> seq = table_.Find(id);
        if (!seq.ok()) continue;
        TaskRecord& r = table_.at(*seq);
        if (r.task.state() != v1::TASK_STATE_QUEUED || !QueueFor(r).Remove(*seq)) continue;
        table_.Withdraw(*seq);
      }
      status = absl::UnavailableError(absl::StrCat(
          "the journal could not record the tasks, so they were not accepted: ", status.message()));
    }
    done(status);
  });
}

// ---------------------------------------------------------------------------------
// Recovery.

TaskManager::Recovery TaskManager::recovery() {
  OpLock lock(this);
  return recovery_;
}

void TaskManager::RecoverLocked(std::vector<StoredTask> stored) {
  const int64_t now = clock_->NowUnixMicros();
  for (StoredTask& st : stored) {
    const uint64_t seq = st.seq;
    if (st.task.owner().empty()) st.task.set_owner(UidOwner(options_.daemon_uid));  // older journal
    TaskRecord& r = table_.Restore(seq, std::move(st.task));
    auto h = handlers_.find(r.task.spec().handler());
    r.async = h != handlers_.end() && h->second.async();
    r.python = r.task.decision().runtime() == "python";
    r.pool = PoolOf(r.task.decision().resolved_class(), r.python);
    const v1::TaskState state = r.task.state();
    if (IsFinal(state)) {
      ++recovery_.finished;
      continue;
    }
    v1::Decision* d = r.task.mutable_decision();
    d->set_recovered(true);
    if (state == v1::TASK_STATE_RUNNING) {
      RecoverRunningLocked(seq, now);
      if (IsFinal(r.task.state())) continue;
    } else {
      ++recovery_.requeued;
    }
    if (d->evidence().find("recovered after daemon restart") == std::string::npos) {
      d->set_evidence(absl::StrCat(d->evidence(), "; recovered after daemon restart"));
    }
    if (r.task.not_before_unix_us() > now) {
      delayed_.emplace(r.task.not_before_unix_us(), seq);
    } else {
      QueueFor(r).Push(seq, r.task.spec().priority());
    }
    PersistLocked(seq);
  }
  table_.Trim(&op_.erased());
}

void TaskManager::RecoverRunningLocked(uint64_t seq, int64_t now) {
  TaskRecord& r = table_.at(seq);
  v1::Decision* d = r.task.mutable_decision();
  const int attempt = d->attempt();
  const int allowed = std::max<int>(1, static_cast<int>(r.task.spec().max_attempts()));
  v1::TaskError e = MakeError(
      v1::FAILURE_KIND_DAEMON_RESTART,
      absl::StrCat("the daemon stopped while attempt ", attempt, " of ", allowed, " was running"),
      /*retryable=*/true);
  if (attempt >= allowed) {
    e.set_message(absl::StrCat(e.message(), "; no attempt was left to re-run it"));
    d->set_finished_unix_us(now);
    FinishLocked(seq, v1::TASK_STATE_FAILED, std::move(e));
    ++recovery_.failed;
    return;
  }
  v1::Attempt* past = r.task.add_attempts();
  past->set_attempt(attempt);
  *past->mutable_decision() = *d;
  *past->mutable_error() = e;
  ResetRunFields(d);
  SetStateLocked(r, v1::TASK_STATE_QUEUED);
  ++recovery_.rerun;
}

// ---------------------------------------------------------------------------------
// Workers starting.

bool TaskManager::OnHello(int worker, const v1::internal::WorkerHello& hello) {
  mu_.AssertHeld();
  const bool python = IsPythonPool(pool_->worker(worker).pool);
  std::string error = hello.error();
  const auto& privileged = options_.privileged_handlers;
  for (const auto& h : hello.handlers()) {
    auto known = handlers_.find(h.name());
    if (error.empty() && known != handlers_.end() &&
        (known->second.runtime() == "python") != python) {
      error = absl::StrCat("handler ", QuoteInput(h.name()), " is registered by ",
                           python ? "a Python module" : "a plugin", " and by ",
                           python ? "a native worker" : "a Python module",
                           ": handler names must be unique");
    }
  }
  if (!error.empty()) {
    const auto err = absl::FailedPreconditionError(absl::StrCat(
        python ? "Python worker pid " : "worker pid ", hello.pid(), " could not start: ", error));
    std::fprintf(stderr, "taskrtd: %s\n", std::string(err.message()).c_str());
    if (python && !options_.python_required && !started_) {
      TurnPythonOffLocked(std::string(err.message()));
    } else if (startup_error_.ok()) {
      startup_error_ = err;
    }
    return false;
  }
  for (const auto& h : hello.handlers()) {
    v1::HandlerInfo& info = handlers_[h.name()];
    info = h;
    info.set_runtime(python ? "python" : "native");
    info.set_privileged(std::find(privileged.begin(), privileged.end(), h.name()) !=
                        privileged.end());
  }
  if (python && !hello.runtime().empty()) python_status_ = hello.runtime();
  return true;
}

void TaskManager::OnSpawnFailed(int worker, PoolKind pool, const absl::Status& error) {
  mu_.AssertHeld();
  if (options_.metrics != nullptr) options_.metrics->SpawnFailed(pool);
  if (IsPythonPool(pool) && !options_.python_required && !started_) {
    TurnPythonOffLocked(std::string(error.message()));
    return;
  }
  // Before Start returns, the first error is what Start reports (and its caller logs).
  if (started_) std::fprintf(stderr, "taskrtd: %s\n", std::string(error.message()).c_str());
  if (startup_error_.ok()) startup_error_ = error;
}

void TaskManager::TurnPythonOffLocked(const std::string& why) {
  if (!python_on_) return;
  python_on_ = false;
  python_status_ = absl::StrCat("off: ", why);
  std::fprintf(stderr,
               "taskrtd: Python workers are off: %s; native handlers are unaffected (pass "
               "--python PATH to require them, --python '' to silence this)\n",
               why.c_str());
  pool_->DisablePython();
  for (auto it = handlers_.begin(); it != handlers_.end();) {
    it = it->second.runtime() == "python" ? handlers_.erase(it) : std::next(it);
  }
}

std::string TaskManager::PythonOffHintLocked(absl::string_view handler) {
  if (python_on_ || !absl::StartsWith(handler, "py.")) return "";
  return absl::StrCat("handler ", QuoteInput(std::string_view(handler.data(), handler.size())),
                      " runs Python, and this taskrtd has no ", "Python workers: Python is ",
                      python_status_);
}

}  // namespace taskrt::daemon
