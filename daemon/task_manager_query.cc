// TaskManager: waits, cancellation, and what callers read (Get, List, Watch, stats,
// handlers).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/task_manager.h"
#include "daemon/task_util.h"

namespace taskrt::daemon {

void TaskManager::CompleteWaiterLocked(uint64_t handle, absl::Status error) {
  std::optional<Waiter> waiter = waiters_.Take(handle);
  if (!waiter.has_value()) return;
  if (!waiter->done || !error.ok()) {  // the tasks no longer name this wait
    for (uint64_t seq : waiter->seqs) {
      TaskRecord* t = table_.find(seq);
      if (t == nullptr) continue;
      auto& v = t->waiters;
      v.erase(std::remove(v.begin(), v.end(), handle), v.end());
    }
  }
  if (!waiter->done) return;  // a per-task wait: nothing more to report
  absl::StatusOr<std::vector<v1::Task>> result;
  if (error.ok()) {
    std::vector<v1::Task> tasks;
    tasks.reserve(waiter->seqs.size());
    for (uint64_t seq : waiter->seqs) tasks.push_back(table_.at(seq).task);
    result = std::move(tasks);
  } else {
    result = std::move(error);
  }
  op_.Defer([done = std::move(waiter->done), result = std::move(result)]() mutable {
    done(std::move(result));
  });
}

void TaskManager::ExpireWaiterLocked(uint64_t handle) {
  const Waiter* w = waiters_.find(handle);
  if (w == nullptr) return;
  std::vector<std::string> pending;
  for (uint64_t seq : w->seqs) {
    const v1::Task& t = table_.at(seq).task;
    if (!IsFinal(t.state()) && pending.size() < 5) pending.push_back(t.id());
  }
  CompleteWaiterLocked(handle, absl::DeadlineExceededError(absl::StrCat(
                                   w->remaining, " of ", w->seqs.size(),
                                   " tasks are not final yet (e.g. ", absl::StrJoin(pending, ", "),
                                   "); they keep running: wait again or cancel them")));
}

uint64_t TaskManager::Wait(const Caller& caller,
                           const google::protobuf::RepeatedPtrField<std::string>& ids,
                           uint64_t timeout_ms, WaitCallback done) {
  OpLock lock(this);
  auto [handle, w] = waiters_.Add();
  if (stopping_) {
    waiters_.Take(handle);
    op_.Defer([done] { done(absl::UnavailableError("taskrtd is shutting down")); });
    return handle;
  }
  if (absl::Status s = ValidateTaskIds(ids, LimitsOf(options_)); !s.ok()) {
    waiters_.Take(handle);
    op_.Defer([done, s] { done(s); });
    return handle;
  }
  w->done = std::move(done);
  absl::Status error;
  for (const auto& id : ids) {
    auto seq = FindOwnedLocked(caller, id);
    if (!seq.ok()) {
      error = seq.status();
      break;
    }
    w->seqs.push_back(*seq);
    TaskRecord& r = table_.at(*seq);
    if (!IsFinal(r.task.state())) {
      ++w->remaining;
      r.waiters.push_back(handle);
    }
  }
  if (!error.ok() || w->remaining == 0) {
    CompleteWaiterLocked(handle, error);
  } else if (timeout_ms > 0) {
    const uint64_t ms = ClampWaitTimeoutMs(timeout_ms, LimitsOf(options_));
    waiters_.SetDeadline(handle, clock_->NowUnixMicros() + static_cast<int64_t>(ms) * 1000);
  }
  return handle;
}

void TaskManager::CancelWait(uint64_t handle) {
  OpLock lock(this);
  Waiter* w = waiters_.find(handle);
  if (w == nullptr) return;
  if (w->done) w->done = [](absl::StatusOr<std::vector<v1::Task>>) {};
  CompleteWaiterLocked(handle, absl::CancelledError("wait abandoned"));
}

absl::StatusOr<std::vector<v1::Task>> TaskManager::Get(
    const Caller& caller, const google::protobuf::RepeatedPtrField<std::string>& ids) {
  if (absl::Status s = ValidateTaskIds(ids, LimitsOf(options_)); !s.ok()) return s;
  OpLock lock(this);
  std::vector<v1::Task> out;
  for (const auto& id : ids) {
    auto seq = FindOwnedLocked(caller, id);
    if (!seq.ok()) return seq.status();
    out.push_back(table_.at(*seq).task);
  }
  return out;
}

absl::StatusOr<std::vector<v1::Task>> TaskManager::Cancel(
    const Caller& caller, const google::protobuf::RepeatedPtrField<std::string>& ids) {
  if (absl::Status s = ValidateTaskIds(ids, LimitsOf(options_)); !s.ok()) return s;
  OpLock lock(this);
  std::vector<uint64_t> seqs;
  for (const auto& id : ids) {  // all ids must exist before anything changes
    auto seq = FindOwnedLocked(caller, id);
    if (!seq.ok()) return seq.status();
    seqs.push_back(*seq);
  }
  std::vector<v1::Task> out;
  for (uint64_t seq : seqs) {
    CancelOneLocked(seq);
    out.push_back(table_.at(seq).task);
  }
  DispatchLocked();
  return out;
}

void TaskManager::CancelOneLocked(uint64_t seq) {
  TaskRecord& r = table_.at(seq);
  if (r.task.state() == v1::TASK_STATE_QUEUED) {
    if (!QueueFor(r).Remove(seq)) delayed_.erase({r.task.not_before_unix_us(), seq});
    FinishLocked(seq, v1::TASK_STATE_CANCELLED,
                 MakeError(v1::FAILURE_KIND_CANCELLED, "cancelled while queued"));
    return;
  }
  if (r.task.state() != v1::TASK_STATE_RUNNING || r.worker < 0) return;
  const WorkerSlot& w = pool_->worker(r.worker);
  std::string how;
  if (IsCpuPool(w.pool) && w.head_run() != r.run_id) {
    // Not started yet: it waits in the worker behind another task, which goes on.
    CancelRunLocked(r.worker, r.run_id);
    how = absl::StrCat("it had not started; its ", PoolName(w.pool), " worker pid ", w.pid,
                       " skips it");
  } else if (IsCpuPool(w.pool)) {
    how = absl::StrCat("its ", PoolName(w.pool), " worker pid ", w.pid,
                       " was stopped (SIGTERM, then SIGKILL after ", options_.kill_grace_ms,
                       " ms) and will be replaced");
    pool_->Terminate(r.worker, WorkerExit::kKilled);
  } else {
    CancelRunLocked(r.worker, r.run_id);
    how = "its context on the io worker was cancelled";
  }
  FinishLocked(
      seq, v1::TASK_STATE_CANCELLED,
      MakeError(v1::FAILURE_KIND_CANCELLED, absl::StrCat("cancelled while running; ", how)));
}

// Whether `spec` carries every label of `wanted` with the same value.
static bool HasLabels(const v1::TaskSpec& spec,
                      const google::protobuf::Map<std::string, std::string>& wanted) {
  for (const auto& [key, value] : wanted) {
    auto it = spec.labels().find(key);
    if (it == spec.labels().end() || it->second != value) return false;
  }
  return true;
}

std::vector<v1::Task> TaskManager::List(const Caller& caller, const v1::ListRequest& request) {
  const size_t limit = ListLimit(request, LimitsOf(options_));
  std::vector<v1::Task> out;
  OpLock lock(this);
  const auto& tasks = table_.tasks();
  for (auto it = tasks.rbegin(); it != tasks.rend() && out.size() < limit; ++it) {
    const v1::Task& t = it->second.task;
    if (!caller.admin && t.owner() != caller.name) continue;
    if (!request.handler().empty() && t.spec().handler() != request.handler()) continue;
    if (!HasLabels(t.spec(), request.labels())) continue;
    if (!request.states().empty() && std::find(request.states().begin(), request.states().end(),
                                               t.state()) == request.states().end()) {
      continue;
    }
    out.push_back(t);
  }
  return out;
}

absl::StatusOr<uint64_t> TaskManager::Watch(
    const Caller& caller, const google::protobuf::RepeatedPtrField<std::string>& ids,
    EventSink sink) {
  OpLock lock(this);
  size_t& mine = watchers_by_owner_[caller.name];
  if (subscribers_.size() >= options_.max_watchers || mine >= options_.max_watchers_per_owner) {
    const bool all = subscribers_.size() >= options_.max_watchers;
    const size_t open = all ? subscribers_.size() : mine;
    if (mine == 0) watchers_by_owner_.erase(caller.name);
    return absl::ResourceExhaustedError(absl::StrCat(
        all ? "the daemon" : caller.name, " has ", open, " Watch calls open, the limit (taskrtd ",
        all ? "--max-watchers" : "--max-watchers-per-owner", "); close one and retry"));
  }
  ++mine;
  const uint64_t handle = next_watch_++;
  Subscriber& sub = subscribers_[handle];
  sub.ids.insert(ids.begin(), ids.end());
  if (!caller.admin) sub.owner = caller.name;
  sub.watcher = caller.name;
  sub.sink = std::move(sink);
  return handle;
}

void TaskManager::Unwatch(uint64_t handle) {
  OpLock lock(this);
  auto it = subscribers_.find(handle);
  if (it == subscribers_.end()) return;
  auto n = watchers_by_owner_.find(it->second.watcher);
  if (n != watchers_by_owner_.end() && --n->second == 0) watchers_by_owner_.erase(n);
  subscribers_.erase(it);
}

v1::Stats TaskManager::GetStats(const Caller& caller) {
  OpLock lock(this);
  v1::Stats stats;
  stats.set_caller(caller.name);
  stats.set_caller_is_admin(caller.admin);
  stats.set_daemon(table_.id_prefix());
  if (caller.admin) {
    for (const auto& [owner, counts] : table_.owners()) {
      v1::OwnerCount* o = stats.add_owners();
      o->set_owner(owner);
      o->set_queued(counts[v1::TASK_STATE_QUEUED]);
      o->set_running(counts[v1::TASK_STATE_RUNNING]);
      for (v1::TaskState st : {v1::TASK_STATE_SUCCEEDED, v1::TASK_STATE_FAILED,
                               v1::TASK_STATE_CANCELLED, v1::TASK_STATE_TIMED_OUT}) {
        o->set_finished(o->finished() + counts[st]);
      }
    }
    std::sort(
        stats.mutable_owners()->begin(), stats.mutable_owners()->end(),
        [](const v1::OwnerCount& a, const v1::OwnerCount& b) { return a.owner() < b.owner(); });
  }
  stats.set_daemon_pid(daemon_pid_);
  stats.set_started_unix_us(started_us_);
  stats.set_tasks_submitted(submitted_);
  stats.set_python(python_status_);
  AddPoolStatsLocked(stats);
  for (const auto& [key, learned] : learned_) {
    v1::LearnedClass* lc = stats.add_learned();
    lc->set_handler(key.first);
    lc->set_function(key.second);
    lc->set_gil_corrected(learned.samples > 0 && learned.gil_samples == learned.samples);
    lc->set_cpu_ratio(learned.cpu_ratio);
    lc->set_samples(learned.samples);
    lc->set_runs(learned.runs);
    lc->set_mean_wall_us(learned.wall_us);
    lc->set_learned_class(LearnedClass(learned, options_.classifier));
  }
  auto& by_state = *stats.mutable_tasks_by_state();
  for (size_t state = 0; state < table_.by_state().size(); ++state) {
    if (const uint64_t n = table_.by_state()[state]; n > 0) {
      by_state[v1::TaskState_Name(static_cast<v1::TaskState>(state))] = n;
    }
  }
  return stats;
}

void TaskManager::AddPoolStatsLocked(v1::Stats& stats) {
  for (int i = 0; i < kPoolKinds; ++i) {
    const PoolKind pool = static_cast<PoolKind>(i);
    if (IsPythonPool(pool) && !python_on_) continue;
    const PoolCounters c = pool_->counters(pool);
    v1::PoolInfo* p = stats.add_pools();
    p->set_name(PoolName(pool));
    p->set_queued(queues_[i][0].size() + queues_[i][1].size());
    p->set_queued_async(queues_[i][1].size());
    p->set_completed(c.completed);
    p->set_respawns(c.respawns);
    p->set_recycled(c.recycled);
    for (int id = 0; id < pool_->size(); ++id) {
      const WorkerSlot& w = pool_->worker(id);
      if (w.pool != pool) continue;
      p->set_workers(p->workers() + 1);
      p->set_running(p->running() + w.runs.size());
      v1::WorkerInfo* wi = stats.add_workers();
      wi->set_pool(p->name());
      wi->set_slot(w.slot);
      wi->set_pid(w.pid);
      wi->set_state(w.phase == WorkerPhase::kStarting ? "starting"
                    : w.phase == WorkerPhase::kDead   ? "restarting"
                    : w.runs.empty()                  ? "idle"
                                                      : "busy");
      wi->set_tasks_run(w.tasks_run);
      wi->set_running(w.runs.size());
      wi->set_threads(ThreadsOf(pool));
      wi->set_started_unix_us(w.started_us);
    }
  }
}

std::vector<v1::HandlerInfo> TaskManager::Handlers(const Caller& caller) {
  OpLock lock(this);
  std::vector<v1::HandlerInfo> out;
  for (const auto& [name, info] : handlers_) {
    out.push_back(info);
    out.back().set_allowed(!info.privileged() || caller.may_exec);
  }
  return out;
}

}  // namespace taskrt::daemon
