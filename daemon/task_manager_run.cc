// TaskManager: dispatch to workers and what becomes of a run — done, lost with its
// worker, timed out, retried — and the events it emits.
#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/util.h"
#include "daemon/dispatch_policy.h"
#include "daemon/task_manager.h"
#include "daemon/task_util.h"

namespace taskrt::daemon {

TaskQueue& TaskManager::QueueFor(const TaskRecord& r) {
  return queues_[static_cast<int>(r.pool)][!IsCpuPool(r.pool) && r.async ? 1 : 0];
}

int TaskManager::ThreadsOf(PoolKind pool) const {
  if (IsCpuPool(pool)) return 1;
  return pool == PoolKind::kPyIo ? options_.python_io_threads : options_.io_threads;
}

bool TaskManager::IsShortLocked(const TaskRecord& r) {
  if (options_.cpu_prefetch <= 0) return false;
  auto it = learned_.find({r.task.spec().handler(), r.task.spec().function()});
  return it != learned_.end() && it->second.runs >= 3 &&
         it->second.wall_us < static_cast<double>(options_.prefetch_below_us);
}

void TaskManager::DispatchLocked() {
  if (draining_ || stopping_) return;
  std::vector<WorkerLoad> loads;
  for (int p = 0; p < kPoolKinds; ++p) {
    const PoolKind pool = static_cast<PoolKind>(p);
    for (int async = 0; async < (IsCpuPool(pool) ? 1 : 2); ++async) {
      TaskQueue& queue = queues_[p][async];
      if (queue.empty()) continue;
      if (loads.empty()) {  // built once per dispatch, kept up to date below
        for (int id = 0; id < pool_->size(); ++id) {
          const WorkerSlot& w = pool_->worker(id);
          loads.push_back({w.pool, w.accepting(), static_cast<int>(w.runs.size()), w.long_running,
                           w.sync_running, w.async_running});
        }
      }
      const PickLimits limits{options_.cpu_prefetch, ThreadsOf(pool), options_.io_max_inflight};
      while (const std::optional<uint64_t> next = queue.Peek()) {
        const bool short_task = IsCpuPool(pool) && IsShortLocked(table_.at(*next));
        const int w = PickWorker(loads, pool, async == 1, short_task, limits);
        if (w < 0) break;
        queue.Pop();
        AssignLocked(*next, w);
        const WorkerSlot& now = pool_->worker(w);
        loads[w] = {now.pool,         now.accepting(),  static_cast<int>(now.runs.size()),
                    now.long_running, now.sync_running, now.async_running};
      }
    }
  }
}

void TaskManager::AssignLocked(uint64_t seq, int worker) {
  TaskRecord& r = table_.at(seq);
  const WorkerSlot& w = pool_->worker(worker);
  const int64_t now = clock_->NowUnixMicros();
  const uint64_t run_id = next_run_id_++;
  r.worker = worker;
  r.run_id = run_id;
  r.task.set_not_before_unix_us(0);
  // A cpu worker that is busy gets only short tasks (DispatchLocked): this one waits.
  const bool waits = IsCpuPool(w.pool) && !w.runs.empty();
  const bool short_task = IsCpuPool(w.pool) && IsShortLocked(r);
  pool_->AddRun(worker, RunSlot{run_id, seq, r.async, short_task, 0});
  v1::Task& t = r.task;
  SetStateLocked(r, v1::TASK_STATE_RUNNING);
  v1::Decision* d = t.mutable_decision();
  d->set_worker_pid(w.pid);
  d->set_worker_slot(w.slot);
  d->set_started_unix_us(now);
  d->set_queue_wait_us(now - d->submitted_unix_us());
  d->set_attempt(d->attempt() + 1);
  d->set_executor(IsCpuPool(w.pool) ? v1::EXECUTOR_PROCESS
                                    : (r.async ? v1::EXECUTOR_ASYNC : v1::EXECUTOR_THREAD));
  r.deadline_us = 0;
  if (!waits) StartDeadlineLocked(seq, now);
  v1::internal::WorkerFrame frame;
  v1::internal::RunTask* run = frame.mutable_run();
  run->set_seq(run_id);
  run->set_task_id(t.id());
  run->set_handler(t.spec().handler());
  run->set_input(t.spec().input());
  run->set_deadline_unix_us(r.deadline_us);
  run->set_attempt(d->attempt());
  // The RUNNING record (with its attempt count) reaches the journal before the frame
  // reaches the worker: staged frames wait for the journal (EndOperation).
  PersistLocked(seq);
  SendLocked(worker, frame);
  EmitLocked(r);
}

void TaskManager::StartDeadlineLocked(uint64_t seq, int64_t now) {
  TaskRecord& r = table_.at(seq);
  if (r.deadline_us > 0 || r.task.spec().timeout_ms() == 0) return;
  r.deadline_us = now + static_cast<int64_t>(r.task.spec().timeout_ms()) * 1000;
  deadlines_.emplace(r.deadline_us, seq);
}

void TaskManager::RequeueUnstartedLocked(uint64_t seq) {
  TaskRecord& r = table_.at(seq);
  if (r.deadline_us > 0) deadlines_.erase({r.deadline_us, seq});
  r.deadline_us = 0;
  r.worker = -1;
  r.run_id = 0;
  v1::Decision* d = r.task.mutable_decision();
  const int attempt = d->attempt() - 1;
  ResetRunFields(d);
  d->set_attempt(std::max(0, attempt));
  SetStateLocked(r, v1::TASK_STATE_QUEUED);
  QueueFor(r).Push(seq, r.task.spec().priority());
  PersistLocked(seq);
  EmitLocked(r);
}

void TaskManager::OnDone(int worker, const RunSlot& run, const v1::internal::TaskDone& done) {
  mu_.AssertHeld();
  const WorkerSlot& w = pool_->worker(worker);
  if (IsCpuPool(w.pool)) {  // the next task it holds starts now
    if (const uint64_t head = w.head_run(); head != 0) {
      const TaskRecord* next = table_.find(w.runs.at(head).seq);
      if (next != nullptr && next->run_id == head) {
        StartDeadlineLocked(w.runs.at(head).seq, clock_->NowUnixMicros());
      }
    }
  }
  TaskRecord* r = table_.find(run.seq);
  // Evicted meanwhile, or a stale run: the task timed out and is being tried again.
  if (r == nullptr || r->run_id != done.seq()) return;
  const uint64_t seq = run.seq;
  r->worker = -1;
  RecordRunLocked(*r, done);
  if (IsFinal(r->task.state())) {  // cancelled or timed out meanwhile
    PersistLocked(seq);
    return;
  }
  // A failed Python call leaves its pickled exception in the output (the SDK re-raises it).
  r->task.set_output(done.output());
  if (done.ok() && !(r->deadline_us > 0 && done.finished_unix_us() >= r->deadline_us)) {
    FinishLocked(seq, v1::TASK_STATE_SUCCEEDED, v1::TaskError());
  } else if ((done.ok() || done.failure() == v1::FAILURE_KIND_CANCELLED) && r->deadline_us > 0 &&
             done.finished_unix_us() >= r->deadline_us) {
    // The worker's own deadline fired before the daemon's tick (and the handler gave
    // up, or returned OK regardless): still a timeout.
    FailOrRetryLocked(
        seq, v1::TASK_STATE_TIMED_OUT,
        MakeError(v1::FAILURE_KIND_TIMEOUT,
                  absl::StrCat("ran past its timeout of ", r->task.spec().timeout_ms(),
                               " ms; it was cancelled through its context"),
                  /*retryable=*/true));
  } else if (done.failure() == v1::FAILURE_KIND_CANCELLED) {
    FinishLocked(seq, v1::TASK_STATE_CANCELLED,
                 MakeError(v1::FAILURE_KIND_CANCELLED, done.error()));
  } else {
    FailOrRetryLocked(seq, v1::TASK_STATE_FAILED,
                      MakeError(done.failure(), done.error(), done.retryable()));
  }
}

void TaskManager::RecordRunLocked(TaskRecord& r, const v1::internal::TaskDone& done) {
  v1::Decision* d = r.task.mutable_decision();
  if (done.executor() != v1::EXECUTOR_UNSPECIFIED) d->set_executor(done.executor());
  d->set_started_unix_us(done.started_unix_us());
  d->set_queue_wait_us(std::max<int64_t>(0, done.started_unix_us() - d->submitted_unix_us()));
  d->set_finished_unix_us(done.finished_unix_us());
  d->set_run_time_us(done.finished_unix_us() - done.started_unix_us());
  d->set_cpu_time_us(done.cpu_time_us());
  if (done.has_exit_code()) {
    d->set_exit_code(done.exit_code());
    d->set_exit_signal(done.exit_signal());
  } else {
    d->clear_exit_code();
    d->set_exit_signal(0);
  }
  d->set_peak_rss_kb(done.peak_rss_kb());
  d->set_gil_wait_us(done.gil_wait_us());
  d->set_gil_measured(done.gil_measured());
  d->set_peers(done.peers());
  // Asynchronous handlers spend their wait on a timer or a child: what they teach the
  // classifier is the CPU they caused (the child's, for sys.exec). A Python run's wait
  // for the GIL is not a wait for I/O: it is taken out of the wall time.
  LearnedStats& learned = learned_[{r.task.spec().handler(), r.task.spec().function()}];
  Learn(learned, done.cpu_time_us(), d->run_time_us(), options_.classifier,
        done.gil_measured() ? done.gil_wait_us() : -1);
  // Kept across restarts; coalesced per handler by the journal, never fsync'd alone.
  if (options_.journal != nullptr) {
    options_.journal->PutLearned(r.task.spec().handler(), r.task.spec().function(), learned);
  }
  d->set_hint(MismatchHint(*d, options_.classifier));
  if (std::string gil = GilEvidence(*d); !gil.empty()) {
    d->set_evidence(absl::StrCat(d->evidence(), kThisRun, gil));
  }
}

void TaskManager::OnLost(int worker, const WorkerSlot& was, const WorkerLoss& loss,
                         const std::vector<RunSlot>& runs) {
  mu_.AssertHeld();
  if (options_.metrics != nullptr) options_.metrics->WorkerExited(was.pool, loss.exit);
  const uint64_t head = IsCpuPool(was.pool) ? was.head_run() : 0;
  for (const RunSlot& run : runs) {
    TaskRecord* r = table_.find(run.seq);
    if (r == nullptr || r->run_id != run.run_id) continue;
    r->worker = -1;
    if (IsFinal(r->task.state())) continue;
    if (head != 0 && run.run_id != head) {  // it waited behind the one that was running
      RequeueUnstartedLocked(run.seq);
      continue;
    }
    v1::TaskError e = MakeError(
        v1::FAILURE_KIND_WORKER_CRASHED,
        absl::StrCat("worker pid ", was.pid, " (", PoolName(was.pool), " pool, slot ", was.slot,
                     ") ", loss.how, " while running this task; the worker was replaced"));
    e.set_signal(loss.signal);
    e.set_signal_name(loss.signal ? internal::SignalName(loss.signal) : "");
    e.set_exit_code(loss.signal ? 0 : loss.exit_code);
    e.set_retryable(true);
    r->task.mutable_decision()->set_finished_unix_us(clock_->NowUnixMicros());
    FailOrRetryLocked(run.seq, v1::TASK_STATE_FAILED, std::move(e));
  }
  if (loss.before_hello && IsPythonPool(was.pool) && !options_.python_required && !started_) {
    TurnPythonOffLocked(absl::StrCat("Python worker pid ", was.pid, " ", loss.how,
                                     " before it said hello (its stderr is above)"));
  }
}

void TaskManager::CancelRunLocked(int worker, uint64_t run_id) {
  if (pool_->worker(worker).runs.count(run_id) == 0) return;
  pool_->MarkCancelled(worker, run_id, clock_->NowUnixMicros());
  v1::internal::WorkerFrame frame;
  frame.mutable_cancel()->set_seq(run_id);
  SendLocked(worker, frame);
}

void TaskManager::FailOrRetryLocked(uint64_t seq, v1::TaskState state, v1::TaskError error) {
  TaskRecord& r = table_.at(seq);
  v1::Decision* d = r.task.mutable_decision();
  const int allowed = std::max<int>(1, static_cast<int>(r.task.spec().max_attempts()));
  if (!error.retryable() || d->attempt() >= allowed || stopping_) {
    if (error.retryable() && allowed > 1) {
      error.set_message(absl::StrCat(error.message(), " (attempt ", d->attempt(), " of ", allowed,
                                     ", none left)"));
    }
    return FinishLocked(seq, state, std::move(error));
  }
  if (r.deadline_us > 0) deadlines_.erase({r.deadline_us, seq});
  r.deadline_us = 0;
  r.worker = -1;
  r.run_id = 0;  // whatever the old run reports from now on is stale
  const int64_t now = clock_->NowUnixMicros();
  if (d->finished_unix_us() == 0) d->set_finished_unix_us(now);
  if (d->run_time_us() == 0 && d->started_unix_us() > 0) {
    d->set_run_time_us(std::max<int64_t>(0, d->finished_unix_us() - d->started_unix_us()));
  }
  v1::Attempt* past = r.task.add_attempts();
  past->set_attempt(d->attempt());
  *past->mutable_decision() = *d;
  *past->mutable_error() = std::move(error);
  ResetRunFields(d);
  const int64_t due = now + BackoffUs(r.task.spec(), d->attempt());
  SetStateLocked(r, v1::TASK_STATE_QUEUED);
  r.task.set_not_before_unix_us(due);
  delayed_.emplace(due, seq);
  PersistLocked(seq);
  EmitLocked(r);
}

void TaskManager::PromoteDueLocked() {
  const int64_t now = clock_->NowUnixMicros();
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    const uint64_t seq = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    TaskRecord* r = table_.find(seq);
    if (r == nullptr || r->task.state() != v1::TASK_STATE_QUEUED) continue;
    QueueFor(*r).Push(seq, r->task.spec().priority());
  }
}

void TaskManager::SetStateLocked(TaskRecord& r, v1::TaskState state) { table_.SetState(r, state); }

void TaskManager::FinishLocked(uint64_t seq, v1::TaskState state, v1::TaskError error) {
  TaskRecord& r = table_.at(seq);
  SetStateLocked(r, state);
  if (error.kind() != v1::FAILURE_KIND_UNSPECIFIED) *r.task.mutable_error() = std::move(error);
  if (r.deadline_us > 0) deadlines_.erase({r.deadline_us, seq});
  v1::Decision* d = r.task.mutable_decision();
  if (d->finished_unix_us() == 0) d->set_finished_unix_us(clock_->NowUnixMicros());
  if (d->run_time_us() == 0 && d->started_unix_us() > 0) {
    // Killed, timed out or cancelled: the run lasted until now as far as anyone knows.
    d->set_run_time_us(std::max<int64_t>(0, d->finished_unix_us() - d->started_unix_us()));
  }
  PersistLocked(seq);
  EmitLocked(r);
  if (options_.metrics != nullptr) options_.metrics->TaskFinished(r.task);
  EndOutputLocked(seq);
  for (uint64_t handle : std::exchange(r.waiters, {})) {
    Waiter* w = waiters_.find(handle);
    if (w == nullptr) continue;
    if (w->each) {
      op_.DeferResult(w->each, MakeResult(r.task));
      if (--w->remaining == 0) waiters_.Take(handle);
      continue;
    }
    if (--w->remaining == 0) CompleteWaiterLocked(handle, absl::OkStatus());
  }
  table_.Retain(seq, &op_.erased());
}

void TaskManager::CheckDeadlinesLocked() {
  const int64_t now = clock_->NowUnixMicros();
  for (uint64_t handle : waiters_.Due(now)) ExpireWaiterLocked(handle);
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const uint64_t seq = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    TimeOutLocked(seq);
  }
}

void TaskManager::TimeOutLocked(uint64_t seq) {
  TaskRecord* r = table_.find(seq);
  if (r == nullptr || r->task.state() != v1::TASK_STATE_RUNNING) return;
  const std::string limit = absl::StrCat(r->task.spec().timeout_ms());
  std::string how;
  if (r->worker >= 0 && IsCpuPool(pool_->worker(r->worker).pool)) {
    const WorkerSlot& w = pool_->worker(r->worker);
    how = absl::StrCat("its ", PoolName(w.pool), " worker pid ", w.pid,
                       " was killed and will be replaced");
    pool_->Kill(r->worker, WorkerExit::kKilled);
  } else if (r->worker >= 0) {
    CancelRunLocked(r->worker, r->run_id);
    how = "it was cancelled through its context on its io worker";
  }
  r->deadline_us = 0;
  FailOrRetryLocked(seq, v1::TASK_STATE_TIMED_OUT,
                    MakeError(v1::FAILURE_KIND_TIMEOUT,
                              absl::StrCat("ran past its timeout of ", limit, " ms; ", how),
                              /*retryable=*/true));
}

void TaskManager::EmitLocked(const TaskRecord& r) {
  if (subscribers_.empty()) return;
  v1::TaskEvent event;
  event.set_unix_us(clock_->NowUnixMicros());
  event.set_task_id(r.task.id());
  event.set_handler(r.task.spec().handler());
  event.set_state(r.task.state());
  *event.mutable_decision() = r.task.decision();
  if (r.task.has_error()) *event.mutable_error() = r.task.error();
  for (auto& [handle, sub] : subscribers_) {
    if (!sub.owner.empty() && sub.owner != r.task.owner()) continue;
    if (sub.ids.empty() || sub.ids.count(r.task.id()) != 0) sub.sink(event);
  }
}

}  // namespace taskrt::daemon
