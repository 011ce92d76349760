#include "daemon/task_manager.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "asio/post.hpp"
#include "asio/write.hpp"
#include "common/status_macros.h"
#include "common/util.h"
#include "daemon/validation.h"
#include "google/protobuf/util/message_differencer.h"

namespace taskrt::daemon {
namespace {

using internal::NowUnixMicros;
constexpr int kTickMs = 10;
// Separates the routing evidence from what a Python run added (GilEvidence).
constexpr char kThisRun[] = "; this run: ";

// The key of by_key_: idempotency keys are per owner.
std::string KeyIndex(absl::string_view owner, absl::string_view key) {
  return absl::StrCat(owner, "\n", key);
}

bool IsFinalState(v1::TaskState s) {
  return s == v1::TASK_STATE_SUCCEEDED || s == v1::TASK_STATE_FAILED ||
         s == v1::TASK_STATE_CANCELLED || s == v1::TASK_STATE_TIMED_OUT;
}

std::string MakePrefix() {
  const uint64_t x = static_cast<uint64_t>(NowUnixMicros()) * 2654435761u ^
                     static_cast<uint64_t>(::getpid()) << 20;
  return absl::StrFormat("%06x", (x >> 8) & 0xffffff);
}

v1::TaskError MakeError(v1::FailureKind kind, std::string message, bool retryable = false) {
  v1::TaskError e;
  e.set_kind(kind);
  e.set_message(std::move(message));
  e.set_retryable(retryable);
  return e;
}

// Forgets where and how the previous attempt ran; keeps why the task went where it went.
void ResetRunFields(v1::Decision* d) {
  v1::Decision kept;
  kept.set_requested_class(d->requested_class());
  kept.set_resolved_class(d->resolved_class());
  kept.set_reason(d->reason());
  // The routing evidence, without what the last run added.
  kept.set_evidence(std::string(d->evidence().substr(0, d->evidence().find(kThisRun))));
  kept.set_runtime(d->runtime());
  kept.set_pool(d->pool());
  kept.set_submitted_unix_us(d->submitted_unix_us());
  kept.set_attempt(d->attempt());
  kept.set_daemon_pid(d->daemon_pid());
  kept.set_recovered(d->recovered());
  *d = std::move(kept);
}

v1::TaskResult MakeResult(const v1::Task& t) {
  v1::TaskResult r;
  r.set_id(t.id());
  r.set_state(t.state());
  r.set_output(t.output());
  if (t.has_error()) *r.mutable_error() = t.error();
  *r.mutable_decision() = t.decision();
  *r.mutable_attempts() = t.attempts();
  return r;
}

int64_t BackoffUs(const v1::TaskSpec& spec, int attempt) {
  const int64_t base_ms = spec.retry_backoff_ms() == 0 ? 500 : spec.retry_backoff_ms();
  int64_t ms = base_ms;
  for (int i = 1; i < attempt && ms < 60'000; ++i) ms *= 2;
  return std::min<int64_t>(ms, 60'000) * 1000;
}

// What callers may send, from the daemon's options (daemon/validation.h).
ValidationLimits LimitsOf(const TaskManagerOptions& o) {
  ValidationLimits limits;
  limits.max_input_bytes = o.max_input_bytes;
  limits.max_batch = o.max_batch;
  limits.max_timeout_ms = o.max_timeout_ms;
  limits.max_attempts = o.max_attempts_limit;
  return limits;
}

}  // namespace

TaskManager::TaskManager(TaskManagerOptions options)
    : options_(std::move(options)),
      daemon_pid_(::getpid()),
      started_us_(NowUnixMicros()),
      id_prefix_(MakePrefix()),
      tick_(io_) {}

TaskManager::~TaskManager() { Stop(); }

absl::Status TaskManager::Start() {
  {
    OpLock lock(this);
    python_on_ = !options_.python.empty();
    if (!python_on_) python_status_ = "off: no interpreter (taskrtd --python PATH turns it on)";
    for (int p = 0; p < kPools; ++p) {
      const Pool pool = static_cast<Pool>(p);
      pool_base_[p] = static_cast<int>(workers_.size());
      for (int slot = 0; slot < PoolSize(pool); ++slot) {
        auto w = std::make_unique<Worker>(io_);
        w->pool = pool;
        w->slot = slot;
        w->state = WorkerState::kDead;
        workers_.push_back(std::move(w));
      }
    }
    for (auto& w : workers_) {
      asio::post(io_, [this, pool = w->pool, slot = w->slot] { SpawnOnLoop(pool, slot); });
    }
  }
  std::vector<StoredTask> stored;
  if (options_.journal != nullptr) {
    auto loaded = options_.journal->LoadAll();
    if (!loaded.ok()) return loaded.status();
    stored = std::move(*loaded);
  }
  TickOnLoop();
  loop_thread_ = std::thread([this] { io_.run(); });

  OpLock lock(this);
  auto all_ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!startup_error_.ok()) return true;
    for (auto& w : workers_) {
      if (IsPythonPool(w->pool) && !python_on_) continue;
      if (w->state != WorkerState::kReady) return false;
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
  RecoverLocked(std::move(stored));  // needs the handlers the workers registered
  DispatchLocked();
  return absl::OkStatus();
}

void TaskManager::RecoverLocked(std::vector<StoredTask> stored) {
  const int64_t now = NowUnixMicros();
  for (StoredTask& st : stored) {
    const uint64_t seq = st.seq;
    next_seq_ = std::max(next_seq_, seq + 1);
    TaskRecord& r = tasks_[seq];
    r.task = std::move(st.task);
    if (r.task.owner().empty()) r.task.set_owner(UidOwner(options_.daemon_uid));  // older journal
    CountLocked(r.task, +1);
    auto h = handlers_.find(r.task.spec().handler());
    r.async = h != handlers_.end() && h->second.async();
    r.python = r.task.decision().runtime() == "python";
    r.pool = PoolOf(r.task.decision().resolved_class(), r.python);
    if (!r.task.spec().idempotency_key().empty()) {
      by_key_[KeyIndex(r.task.owner(), r.task.spec().idempotency_key())] = seq;
    }
    const v1::TaskState state = r.task.state();
    if (IsFinalState(state)) {
      retired_.push_back(seq);
      ++recovery_.finished;
      continue;
    }
    ++unfinished_;
    v1::Decision* d = r.task.mutable_decision();
    d->set_recovered(true);
    if (state == v1::TASK_STATE_RUNNING) {
      const int attempt = d->attempt();
      const int allowed = std::max<int>(1, static_cast<int>(r.task.spec().max_attempts()));
      v1::TaskError e = MakeError(v1::FAILURE_KIND_DAEMON_RESTART,
                                  absl::StrCat("the daemon stopped while attempt ", attempt, " of ",
                                               allowed, " was running"),
                                  /*retryable=*/true);
      if (attempt >= allowed) {
        e.set_message(absl::StrCat(e.message(), "; no attempt was left to re-run it"));
        d->set_finished_unix_us(now);
        FinishLocked(seq, v1::TASK_STATE_FAILED, std::move(e));
        ++recovery_.failed;
        continue;
      }
      v1::Attempt* past = r.task.add_attempts();
      past->set_attempt(attempt);
      *past->mutable_decision() = *d;
      *past->mutable_error() = e;
      ResetRunFields(d);
      SetStateLocked(r, v1::TASK_STATE_QUEUED);
      ++recovery_.rerun;
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
  while (retired_.size() > options_.max_retained) RetireLocked(retired_.front());
}

TaskManager::Recovery TaskManager::recovery() {
  OpLock lock(this);
  return recovery_;
}

void TaskManager::PersistLocked(uint64_t seq) {
  if (options_.journal == nullptr) return;
  TaskRecord& r = tasks_.at(seq);
  if (r.dirty) return;
  r.dirty = true;
  dirty_.push_back(seq);
}

void TaskManager::EndOpLocked() {
  if (options_.journal != nullptr && (!dirty_.empty() || !erased_.empty())) {
    std::vector<Journal::Change> changes;
    changes.reserve(dirty_.size() + erased_.size());
    for (uint64_t seq : dirty_) {
      auto it = tasks_.find(seq);
      if (it == tasks_.end()) continue;  // retired within the operation: erased below
      it->second.dirty = false;
      changes.push_back({seq, &it->second.task});
    }
    for (uint64_t seq : erased_) changes.push_back({seq, nullptr});
    dirty_.clear();
    erased_.clear();
    options_.journal->Apply(changes);
  }
  if (!staged_) return;
  staged_ = false;
  if (options_.journal == nullptr) {
    for (auto& w : workers_) {
      if (w->staged.empty()) continue;
      w->outbox.append(w->staged);
      w->staged.clear();
      StartWriteLocked(w.get());
    }
    return;
  }
  std::vector<StagedFrames> staged;
  for (auto& w : workers_) {
    if (!w->staged.empty()) staged.push_back({w.get(), w->pid, std::move(w->staged)});
    w->staged.clear();
  }
  // Frames go out only after the journal holds the state changes they follow from
  // (a RUNNING record with its attempt count before the task reaches a worker).
  options_.journal->AfterCommit(options_.journal->last_ticket(),
                                [this, staged = std::move(staged)](absl::Status) mutable {
                                  ReleaseStaged(std::move(staged));
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
        absl::StatusOr<uint64_t> seq = FindLocked(id);
        if (!seq.ok()) continue;
        TaskRecord& r = tasks_.at(*seq);
        if (r.task.state() != v1::TASK_STATE_QUEUED || !QueueFor(r).Remove(*seq)) continue;
        if (!r.task.spec().idempotency_key().empty())
          by_key_.erase(KeyIndex(r.task.owner(), r.task.spec().idempotency_key()));
        --unfinished_;
        CountLocked(r.task, -1);
        tasks_.erase(*seq);
      }
      status = absl::UnavailableError(absl::StrCat(
          "the journal could not record the tasks, so they were not accepted: ", status.message()));
    }
    done(status);
  });
}

size_t TaskManager::Drain(absl::Duration timeout) {
  OpLock lock(this);
  draining_ = true;
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& w : workers_)
      if (!w->running.empty()) return false;
    return true;
  };
  mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
  size_t running = 0;
  for (const auto& w : workers_) running += w->running.size();
  return running;
}

void TaskManager::Stop() {
  {
    OpLock lock(this);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [handle, waiter] : waiters_) {
      if (!waiter.done) continue;  // per-task waits end with their calls
      deferred_.push_back([done = std::move(waiter.done)] {
        done(absl::UnavailableError("taskrtd is shutting down"));
      });
    }
    waiters_.clear();
  }
  io_.stop();
  if (loop_thread_.joinable()) loop_thread_.join();
  std::vector<std::function<void()>> deferred;
  {
    OpLock lock(this);
    for (auto& w : workers_) {
      if (w->pid > 0 && w->state != WorkerState::kDead) {
        ::kill(w->pid, SIGKILL);
        ::waitpid(w->pid, nullptr, 0);
        w->state = WorkerState::kDead;
      }
      std::error_code ignored;
      w->socket.close(ignored);
    }
    deferred = TakeDeferredLocked();
  }
  for (auto& fn : deferred) fn();
}

void TaskManager::RunDeferred(std::vector<std::function<void()>>& deferred) {
  if (deferred.empty()) return;
  if (options_.journal == nullptr) {
    for (auto& fn : deferred) fn();
  } else {
    // Answer waiters only once what they are told is on disk.
    options_.journal->AfterCommit(options_.journal->last_ticket(),
                                  [fns = std::move(deferred)](absl::Status) mutable {
                                    for (auto& fn : fns) fn();
                                  });
  }
  deferred.clear();
}

// ---------------------------------------------------------------------------------
// Submit and validation.

absl::Status TaskManager::ValidateLocked(const v1::TaskSpec& spec) {
  if (handlers_.count(spec.handler()) == 0) {
    if (std::string why = PythonOffHintLocked(spec.handler()); !why.empty()) {
      return absl::InvalidArgumentError(why);
    }
  }
  RETURN_IF_ERROR(ValidateSpec(
      spec, LimitsOf(options_),
      [this](std::string_view h)
          ABSL_NO_THREAD_SAFETY_ANALYSIS { return handlers_.count(std::string(h)) != 0; },
      [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        std::vector<std::string> known;
        for (const auto& [name, info] : handlers_) known.push_back(name);
        return absl::StrJoin(known, ", ");
      }));
  // The built-in handlers' inputs are checked here too, so that a malformed one is refused
  // with nothing queued rather than failing later in a worker.
  const v1::HandlerInfo& info = handlers_.at(spec.handler());
  if (info.source() == "builtin" && info.runtime() != "python") {
    return ValidateBuiltinInput(spec.handler(), spec.input());
  }
  return absl::OkStatus();
}

absl::StatusOr<SubmitResult> TaskManager::Submit(
    const Caller& caller, const google::protobuf::RepeatedPtrField<v1::TaskSpec>& specs,
    ResultCallback each) {
  if (absl::Status s = ValidateBatchSize(specs.size(), LimitsOf(options_)); !s.ok()) return s;
  SubmitResult result;
  std::vector<std::string>& ids = result.ids;
  ids.reserve(specs.size());
  std::vector<uint64_t> seqs;  // of `ids`
  seqs.reserve(specs.size());
  OpLock lock(this);
  if (stopping_ || draining_) {
    return absl::UnavailableError(
        "taskrtd is shutting down and accepts no new tasks; retry when it is back");
  }
  for (int i = 0; i < specs.size(); ++i) {
    if (absl::Status s = ValidateLocked(specs[i]); !s.ok()) {
      if (specs.size() == 1) return s;
      return absl::InvalidArgumentError(absl::StrCat("task ", i + 1, " of ", specs.size(), ": ",
                                                     s.message(), "; nothing was submitted"));
    }
  }
  RETURN_IF_ERROR(AdmitLocked(caller, specs));
  const int64_t now = NowUnixMicros();
  for (const auto& spec : specs) {
    if (!spec.idempotency_key().empty()) {
      // AdmitLocked compared the specs already (also those earlier in this batch).
      auto known = by_key_.find(KeyIndex(caller.name, spec.idempotency_key()));
      if (known != by_key_.end()) {  // accepted before: the same task, not a new one
        ids.push_back(tasks_.at(known->second).task.id());
        seqs.push_back(known->second);
        continue;
      }
    }
    const uint64_t seq = next_seq_++;
    std::string id = absl::StrCat(id_prefix_, "-", seq);
    TaskRecord& r = tasks_[seq];
    const v1::HandlerInfo& info = handlers_[spec.handler()];
    auto learned = learned_.find({spec.handler(), spec.function()});
    const ClassDecision cd = Classify(
        spec.function().empty() ? spec.handler() : spec.function(), spec.requested_class(),
        info.hint(), learned == learned_.end() ? nullptr : &learned->second, options_.classifier);
    r.async = info.async();
    r.python = info.runtime() == "python";
    r.pool = PoolOf(cd.resolved, r.python);
    v1::Task& t = r.task;
    t.set_id(id);
    t.set_owner(caller.name);
    *t.mutable_spec() = spec;
    if (t.spec().timeout_ms() == 0) t.mutable_spec()->set_timeout_ms(options_.default_timeout_ms);
    t.set_state(v1::TASK_STATE_QUEUED);
    CountLocked(t, +1);
    v1::Decision* d = t.mutable_decision();
    d->set_requested_class(spec.requested_class());
    d->set_resolved_class(cd.resolved);
    d->set_reason(cd.reason);
    d->set_evidence(cd.evidence);
    d->set_pool(PoolName(r.pool));
    d->set_runtime(r.python ? "python" : "native");
    d->set_submitted_unix_us(now);
    d->set_daemon_pid(daemon_pid_);
    if (!spec.idempotency_key().empty()) {
      by_key_.emplace(KeyIndex(caller.name, spec.idempotency_key()), seq);
    }
    QueueFor(r).Push(seq, spec.priority());
    ids.push_back(std::move(id));
    seqs.push_back(seq);
    ++submitted_;
    ++unfinished_;
    PersistLocked(seq);
    EmitLocked(r);
  }
  if (each) {
    const uint64_t handle = next_handle_++;
    Waiter& w = waiters_[handle];
    w.each = std::make_shared<ResultCallback>(std::move(each));
    for (const uint64_t seq : seqs) {
      TaskRecord& r = tasks_.at(seq);
      if (IsFinalState(r.task.state())) {
        DeferResultLocked(w.each, r.task);
      } else {
        ++w.remaining;
        w.seqs.push_back(seq);
        r.waiters.push_back(handle);
      }
    }
    if (w.remaining == 0) waiters_.erase(handle);
    result.wait_handle = handle;
  }
  DispatchLocked();
  EndOpLocked();  // the ticket must cover this batch's rows
  if (options_.journal != nullptr) result.ticket = options_.journal->last_ticket();
  return result;
}

absl::Status TaskManager::AdmitLocked(
    const Caller& caller, const google::protobuf::RepeatedPtrField<v1::TaskSpec>& specs) {
  size_t fresh = 0;
  absl::flat_hash_map<absl::string_view, int> batch_keys;  // key -> first spec with it
  for (int i = 0; i < specs.size(); ++i) {
    const v1::TaskSpec& spec = specs[i];
    const std::string where =
        specs.size() == 1 ? "" : absl::StrCat("task ", i + 1, " of ", specs.size(), ": ");
    const auto& privileged = options_.privileged_handlers;
    if (!caller.may_exec && !spec.input().empty() &&
        static_cast<unsigned char>(spec.input()[0]) == 0x80) {
      auto h = handlers_.find(spec.handler());
      if (h != handlers_.end() && h->second.runtime() == "python") {
        return absl::PermissionDeniedError(absl::StrCat(
            where, "the input of Python handler '", spec.handler(), "' is pickled (it starts ",
            "with 0x80), and unpickling runs code: ", caller.name, " may not send pickled ",
            "payloads; send JSON instead, or the daemon's owner can grant it with taskrtd ",
            "--allow-exec ", caller.name, "; nothing was submitted"));
      }
    }
    if (!caller.may_exec &&
        std::find(privileged.begin(), privileged.end(), spec.handler()) != privileged.end()) {
      return absl::PermissionDeniedError(absl::StrCat(
          where, "handler '", spec.handler(), "' runs caller-chosen code or reads files with the ",
          "daemon's rights, and ", caller.name, " may not run it: the daemon's owner can ",
          "grant it with taskrtd --allow-exec ", caller.name,
          " (or --allow-exec group:NAME, or --admin-group); nothing was submitted"));
    }
    absl::StatusOr<std::optional<uint64_t>> known = KnownKeyLocked(caller.name, spec);
    if (!known.ok()) {
      return absl::Status(known.status().code(), absl::StrCat(where, known.status().message()));
    }
    if (known->has_value() || spec.idempotency_key().empty()) {
      if (!known->has_value()) ++fresh;
      continue;
    }
    auto [first, inserted] = batch_keys.emplace(spec.idempotency_key(), i);
    if (inserted) {
      ++fresh;
    } else if (!google::protobuf::util::MessageDifferencer::Equals(specs[first->second], spec)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "tasks ", first->second + 1, " and ", i + 1, " of the batch share the idempotency key ",
          QuoteInput(spec.idempotency_key()), " with different specs; nothing was submitted"));
    }
  }
  if (unfinished_ + fresh > options_.max_queued) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue is full: ", unfinished_,
                     " tasks are not finished and the limit is ", options_.max_queued,
                     " (taskrtd --max-queued); nothing was submitted: retry after "
                     "some finish (e.g. in 1s, with backoff)"));
  }
  uint64_t mine = 0;
  if (auto it = owners_.find(caller.name); it != owners_.end()) {
    mine = it->second[v1::TASK_STATE_QUEUED] + it->second[v1::TASK_STATE_RUNNING];
  }
  if (mine + fresh > options_.max_queued_per_owner) {
    return absl::ResourceExhaustedError(absl::StrCat(
        caller.name, " has ", mine, " unfinished tasks and the limit per owner is ",
        options_.max_queued_per_owner, " (taskrtd --max-queued-per-owner); nothing was ",
        "submitted: retry after some finish"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<uint64_t>> TaskManager::KnownKeyLocked(const std::string& owner,
                                                                    const v1::TaskSpec& spec) {
  if (spec.idempotency_key().empty()) return std::nullopt;
  auto known = by_key_.find(KeyIndex(owner, spec.idempotency_key()));
  if (known == by_key_.end()) return std::nullopt;
  const v1::Task& task = tasks_.at(known->second).task;
  v1::TaskSpec normalized = spec;
  if (normalized.timeout_ms() == 0) normalized.set_timeout_ms(options_.default_timeout_ms);
  if (!google::protobuf::util::MessageDifferencer::Equals(task.spec(), normalized)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "idempotency key ", QuoteInput(spec.idempotency_key()), " was used for task ", task.id(),
        " with a different spec (handler ", QuoteInput(task.spec().handler()),
        "); use a new key for a new task, ", "or resubmit the same spec to get that task"));
  }
  return known->second;
}

absl::StatusOr<uint64_t> TaskManager::FindOwnedLocked(const Caller& caller, const std::string& id) {
  absl::StatusOr<uint64_t> seq = FindLocked(id);
  if (seq.ok() && !caller.admin && tasks_.at(*seq).task.owner() != caller.name) {
    return NotFoundLocked(id);  // the same error as an unknown id: existence is not leaked
  }
  return seq;
}

void TaskManager::CountLocked(const v1::Task& task, int delta) {
  by_state_[task.state()] += delta;
  auto& counts = owners_[task.owner()];
  counts[task.state()] += delta;
  if (delta < 0 && std::all_of(counts.begin(), counts.end(), [](uint64_t n) { return n == 0; })) {
    owners_.erase(task.owner());
  }
}

TaskQueue& TaskManager::QueueFor(const TaskRecord& r) {
  return queues_[static_cast<int>(r.pool)][!IsCpuPool(r.pool) && r.async ? 1 : 0];
}

const char* TaskManager::PoolName(Pool p) {
  switch (p) {
    case Pool::kCpu:
      return "cpu";
    case Pool::kIo:
      return "io";
    case Pool::kPyCpu:
      return "python-cpu";
    case Pool::kPyIo:
      return "python-io";
  }
  return "?";
}

TaskManager::Pool TaskManager::PoolOf(v1::TaskClass resolved, bool python) {
  const bool cpu = resolved == v1::TASK_CLASS_CPU;
  if (python) return cpu ? Pool::kPyCpu : Pool::kPyIo;
  return cpu ? Pool::kCpu : Pool::kIo;
}

int TaskManager::PoolSize(Pool pool) const {
  switch (pool) {
    case Pool::kCpu:
      return options_.cpu_workers;
    case Pool::kIo:
      return options_.io_workers;
    case Pool::kPyCpu:
      return options_.python.empty() ? 0 : options_.python_cpu_workers;
    case Pool::kPyIo:
      return options_.python.empty() ? 0 : options_.python_io_workers;
  }
  return 0;
}

int TaskManager::ThreadsOf(Pool pool) const {
  if (IsCpuPool(pool)) return 1;
  return pool == Pool::kPyIo ? options_.python_io_threads : options_.io_threads;
}

void TaskManager::TurnPythonOffLocked(const std::string& why) {
  if (!python_on_) return;
  python_on_ = false;
  python_status_ = absl::StrCat("off: ", why);
  std::fprintf(stderr,
               "taskrtd: Python workers are off: %s; native handlers are unaffected (pass "
               "--python PATH to require them, --python '' to silence this)\n",
               why.c_str());
  for (auto& w : workers_) {
    if (!IsPythonPool(w->pool) || w->pid <= 0) continue;
    ::kill(w->pid, SIGKILL);
    w->killed = true;
  }
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

absl::StatusOr<uint64_t> TaskManager::FindLocked(const std::string& id) {
  // An id is "<prefix>-<seq>" (the prefix of the daemon run that accepted it), so the
  // task table needs no second index by id: parse, look up, compare.
  const size_t dash = id.rfind('-');
  uint64_t seq = 0;
  if (dash != std::string::npos && absl::SimpleAtoi(absl::string_view(id).substr(dash + 1), &seq)) {
    auto it = tasks_.find(seq);
    if (it != tasks_.end() && it->second.task.id() == id) return seq;
  }
  return NotFoundLocked(id);
}

absl::Status TaskManager::NotFoundLocked(const std::string& id) {
  return absl::NotFoundError(
      absl::StrCat("task ", QuoteInput(id), " not found (the daemon keeps the last ",
                   options_.max_retained, " finished tasks; see `taskrt list`)"));
}

// ---------------------------------------------------------------------------------
// Dispatch to workers.

TaskManager::Worker* TaskManager::PickWorkerLocked(Pool pool, bool async, bool short_task) {
  Worker* best = nullptr;
  for (auto& w : workers_) {
    if (w->pool != pool || w->state != WorkerState::kReady || w->killed || w->retiring) {
      continue;
    }
    if (IsCpuPool(pool)) {
      // Idle, or busy with short tasks only and taking a short one in advance.
      const bool may_wait = short_task && w->long_running == 0 &&
                            static_cast<int>(w->running.size()) <= options_.cpu_prefetch;
      if (!w->running.empty() && !may_wait) continue;
    } else if (async ? w->async_running >= options_.io_max_inflight
                     : w->sync_running >= ThreadsOf(pool)) {
      continue;
    }
    if (best == nullptr || w->running.size() < best->running.size()) best = w.get();
  }
  return best;
}

void TaskManager::DispatchLocked() {
  if (draining_ || stopping_) return;
  for (int p = 0; p < kPools; ++p) {
    const Pool pool = static_cast<Pool>(p);
    for (int async = 0; async < (IsCpuPool(pool) ? 1 : 2); ++async) {
      TaskQueue& queue = queues_[p][async];
      while (true) {
        const std::optional<uint64_t> next = queue.Peek();
        if (!next) break;
        const bool short_task = IsCpuPool(pool) && IsShortLocked(tasks_.at(*next));
        Worker* w = PickWorkerLocked(pool, async == 1, short_task);
        if (w == nullptr) break;
        queue.Pop();
        AssignLocked(*next, w);
      }
    }
  }
}

void TaskManager::AssignLocked(uint64_t seq, Worker* w) {
  TaskRecord& r = tasks_.at(seq);
  const int64_t now = NowUnixMicros();
  const uint64_t run_id = next_run_id_++;
  r.worker = w;
  r.run_id = run_id;
  r.task.set_not_before_unix_us(0);
  // A cpu worker that is busy gets only short tasks (DispatchLocked): this one waits.
  const bool waits = IsCpuPool(w->pool) && !w->running.empty();
  const bool short_task = IsCpuPool(w->pool) && IsShortLocked(r);
  w->running.emplace(run_id, Run{seq, r.async, short_task});
  (r.async ? w->async_running : w->sync_running)++;
  if (!short_task) ++w->long_running;
  v1::Task& t = r.task;
  SetStateLocked(r, v1::TASK_STATE_RUNNING);
  v1::Decision* d = t.mutable_decision();
  d->set_worker_pid(w->pid);
  d->set_worker_slot(w->slot);
  d->set_started_unix_us(now);
  d->set_queue_wait_us(now - d->submitted_unix_us());
  d->set_attempt(d->attempt() + 1);
  d->set_executor(IsCpuPool(w->pool) ? v1::EXECUTOR_PROCESS
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
  // reaches the worker: staged frames wait for the journal (EndOpLocked).
  PersistLocked(seq);
  SendLocked(w, frame);
  EmitLocked(r);
}

void TaskManager::StartDeadlineLocked(uint64_t seq, int64_t now) {
  TaskRecord& r = tasks_.at(seq);
  if (r.deadline_us > 0 || r.task.spec().timeout_ms() == 0) return;
  r.deadline_us = now + static_cast<int64_t>(r.task.spec().timeout_ms()) * 1000;
  deadlines_.emplace(r.deadline_us, seq);
}

bool TaskManager::IsShortLocked(const TaskRecord& r) {
  if (options_.cpu_prefetch <= 0) return false;
  auto it = learned_.find({r.task.spec().handler(), r.task.spec().function()});
  return it != learned_.end() && it->second.runs >= 3 &&
         it->second.wall_us < static_cast<double>(options_.prefetch_below_us);
}

uint64_t TaskManager::HeadRun(const Worker& w) {
  uint64_t head = 0;
  for (const auto& [run_id, run] : w.running) {
    if (head == 0 || run_id < head) head = run_id;
  }
  return head;
}

void TaskManager::RequeueUnstartedLocked(uint64_t seq) {
  TaskRecord& r = tasks_.at(seq);
  if (r.deadline_us > 0) deadlines_.erase({r.deadline_us, seq});
  r.deadline_us = 0;
  r.worker = nullptr;
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

void TaskManager::SendLocked(Worker* w, const v1::internal::WorkerFrame& frame) {
  internal::AppendFrame(frame, &w->staged);
  staged_ = true;
}

void TaskManager::ReleaseStaged(std::vector<StagedFrames> staged) {
  OpLock lock(this);
  for (StagedFrames& s : staged) {
    if (s.worker->pid != s.pid) continue;  // replaced meanwhile: its tasks were requeued
    s.worker->outbox.append(s.bytes);
    StartWriteLocked(s.worker);
  }
}

void TaskManager::StartWriteLocked(Worker* w) {
  if (w->writing || w->outbox.empty() || w->state == WorkerState::kDead) return;
  // Most writes fit in the socket buffer: send from this thread at once, which saves
  // a hop to the loop thread on every round trip. What does not fit is written by the
  // loop thread when the socket can take it.
  const ssize_t n = ::send(w->socket.native_handle(), w->outbox.data(), w->outbox.size(),
                           MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n == static_cast<ssize_t>(w->outbox.size())) {
    w->outbox.clear();
    return;
  }
  if (n > 0) {
    w->outbox.erase(0, static_cast<size_t>(n));
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    return;  // a broken socket is handled by the reader, which sees EOF
  }
  w->writing = true;
  asio::post(io_, [this, w, pid = w->pid] {
    OpLock lock(this);
    if (w->pid != pid) return;  // a replaced worker
    w->inflight.swap(w->outbox);
    asio::async_write(w->socket, asio::buffer(w->inflight),
                      [this, w, pid](const std::error_code& ec, size_t) {
                        OpLock lock2(this);
                        if (w->pid != pid) return;
                        w->writing = false;
                        w->inflight.clear();
                        if (!ec) StartWriteLocked(w);
                      });
  });
}

// ---------------------------------------------------------------------------------
// Worker lifecycle (loop thread).

void TaskManager::SpawnOnLoop(Pool pool, int slot) {
  OpLock lock(this);
  if (stopping_) return;
  if (IsPythonPool(pool) && !python_on_) return;
  Worker* w = workers_[pool_base_[static_cast<int>(pool)] + slot].get();
  WorkerLaunch launch;
  launch.pool = IsCpuPool(pool) ? "cpu" : "io";
  launch.threads = ThreadsOf(pool);
  if (IsPythonPool(pool)) {
    launch.python = options_.python;
    launch.python_path = options_.python_path;
    launch.python_modules = options_.python_modules;
  } else {
    launch.worker_path = options_.worker_path;
    launch.plugins = options_.plugins;
  }
  if (IsCpuPool(pool)) launch.memory_limit_bytes = options_.cpu_memory_limit_bytes;
  launch.max_output_bytes = options_.max_output_bytes;
  auto spawned = SpawnWorker(launch);
  if (!spawned.ok()) {
    if (IsPythonPool(pool) && !options_.python_required && !started_) {
      TurnPythonOffLocked(std::string(spawned.status().message()));
      return;
    }
    // Before Start returns, the first error is what Start reports (and its caller logs).
    if (started_) {
      std::fprintf(stderr, "taskrtd: %s\n", std::string(spawned.status().message()).c_str());
    }
    if (startup_error_.ok()) startup_error_ = spawned.status();
    return;
  }
  w->pid = spawned->pid;
  w->state = WorkerState::kStarting;
  w->killed = false;
  w->retiring = false;
  w->recycle = false;
  w->kill_reason.clear();
  w->decoder = internal::FrameDecoder(internal::FrameLimitFor(options_.max_output_bytes));
  w->outbox.clear();
  w->inflight.clear();
  w->writing = false;
  w->started_us = NowUnixMicros();
  w->tasks_run = 0;
  std::error_code ec;
  w->socket.assign(asio::local::stream_protocol(), spawned->fd, ec);
  if (ec) {
    std::fprintf(stderr, "taskrtd: cannot watch worker socket: %s\n", ec.message().c_str());
  }
  ReadOnLoop(w);
}

void TaskManager::ReadOnLoop(Worker* w) {
  const int pid = w->pid;
  w->socket.async_read_some(
      asio::buffer(w->buf), [this, w, pid](const std::error_code& ec, size_t n) {
        if (ec) return OnWorkerGone(w, pid);
        std::vector<std::function<void()>> deferred;
        {
          OpLock lock(this);
          if (w->pid != pid) return;
          w->decoder.Append(std::string_view(w->buf.data(), n));
          v1::internal::WorkerFrame frame;
          while (true) {
            auto next = w->decoder.Next(&frame);
            if (!next.ok()) {
              std::fprintf(stderr, "taskrtd: worker pid %d sent a corrupt stream: %s\n", pid,
                           std::string(next.status().message()).c_str());
              KillWorkerLocked(w);
              break;
            }
            if (!*next) break;
            if (frame.has_hello()) OnHelloLocked(w, frame.hello());
            if (frame.has_done()) OnDoneLocked(w, frame.done());
          }
          DispatchLocked();
          deferred = TakeDeferredLocked();
        }
        RunDeferred(deferred);
        ReadOnLoop(w);
      });
}

void TaskManager::OnHelloLocked(Worker* w, const v1::internal::WorkerHello& hello) {
  const bool python = IsPythonPool(w->pool);
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
    return;
  }
  for (const auto& h : hello.handlers()) {
    v1::HandlerInfo& info = handlers_[h.name()];
    info = h;
    info.set_runtime(python ? "python" : "native");
    info.set_privileged(std::find(privileged.begin(), privileged.end(), h.name()) !=
                        privileged.end());
  }
  if (python && !hello.runtime().empty()) python_status_ = hello.runtime();
  w->state = WorkerState::kReady;
}

void TaskManager::OnDoneLocked(Worker* w, const v1::internal::TaskDone& done) {
  auto slot = w->running.find(done.seq());
  if (slot == w->running.end()) return;
  const Run run = slot->second;
  (run.async ? w->async_running : w->sync_running)--;
  if (!run.short_task) --w->long_running;
  w->running.erase(slot);
  if (IsCpuPool(w->pool)) {  // the next task it holds starts now
    if (const uint64_t head = HeadRun(*w); head != 0) {
      const uint64_t next = w->running.at(head).seq;
      if (tasks_.count(next) != 0 && tasks_.at(next).run_id == head) {
        StartDeadlineLocked(next, NowUnixMicros());
      }
    }
  }
  ++w->tasks_run;
  ++completed_[static_cast<int>(w->pool)];
  MaybeRecycleLocked(w, done);
  auto it = tasks_.find(run.seq);
  // Evicted meanwhile, or a stale run: the task timed out and is being tried again.
  if (it == tasks_.end() || it->second.run_id != done.seq()) return;
  const uint64_t seq = run.seq;
  TaskRecord& r = it->second;
  r.worker = nullptr;
  v1::Decision* d = r.task.mutable_decision();
  if (done.executor() != v1::EXECUTOR_UNSPECIFIED) d->set_executor(done.executor());
  d->set_started_unix_us(done.started_unix_us());
  d->set_queue_wait_us(std::max<int64_t>(0, done.started_unix_us() - d->submitted_unix_us()));
  d->set_finished_unix_us(done.finished_unix_us());
  d->set_run_time_us(done.finished_unix_us() - done.started_unix_us());
  d->set_cpu_time_us(done.cpu_time_us());
  d->set_peak_rss_kb(done.peak_rss_kb());
  d->set_gil_wait_us(done.gil_wait_us());
  d->set_gil_measured(done.gil_measured());
  d->set_peers(done.peers());
  // Asynchronous handlers spend their wait on a timer or a child: what they teach the
  // classifier is the CPU they caused (the child's, for sys.exec). A Python run's wait
  // for the GIL is not a wait for I/O: it is taken out of the wall time.
  Learn(learned_[{r.task.spec().handler(), r.task.spec().function()}], done.cpu_time_us(),
        d->run_time_us(), options_.classifier, done.gil_measured() ? done.gil_wait_us() : -1);
  d->set_hint(MismatchHint(*d, options_.classifier));
  if (std::string gil = GilEvidence(*d); !gil.empty()) {
    d->set_evidence(absl::StrCat(d->evidence(), kThisRun, gil));
  }
  if (IsFinalState(r.task.state())) {  // cancelled or timed out meanwhile
    PersistLocked(seq);
    return;
  }
  // A failed Python call leaves its pickled exception in the output (the SDK re-raises it).
  r.task.set_output(done.output());
  if (done.ok()) {
    FinishLocked(seq, v1::TASK_STATE_SUCCEEDED, v1::TaskError());
  } else if (done.failure() == v1::FAILURE_KIND_CANCELLED && r.deadline_us > 0 &&
             done.finished_unix_us() >= r.deadline_us) {
    // The worker's own deadline fired before the daemon's tick: still a timeout.
    FailOrRetryLocked(seq, v1::TASK_STATE_TIMED_OUT,
                      MakeError(v1::FAILURE_KIND_TIMEOUT,
                                absl::StrCat("ran past its timeout of ", r.task.spec().timeout_ms(),
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

void TaskManager::OnWorkerGone(Worker* w, int pid) {
  std::vector<std::function<void()>> deferred;
  {
    OpLock lock(this);
    if (w->pid != pid || w->state == WorkerState::kDead || stopping_) return;
    int status = 0;
    pid_t r = ::waitpid(w->pid, &status, WNOHANG);
    if (r == 0) {  // closed its socket but lives on: it is of no use any more
      ::kill(w->pid, SIGKILL);
      r = ::waitpid(w->pid, &status, 0);
    }
    const int sig = (r > 0 && WIFSIGNALED(status)) ? WTERMSIG(status) : 0;
    const int code = (r > 0 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    const std::string how = !w->kill_reason.empty() ? w->kill_reason
                            : sig != 0 ? absl::StrCat("was killed by ", internal::SignalName(sig))
                                       : absl::StrCat("exited with status ", code);
    const char* pool = PoolName(w->pool);
    const bool was_starting = w->state == WorkerState::kStarting;
    const uint64_t head = IsCpuPool(w->pool) ? HeadRun(*w) : 0;
    for (const auto& [run_id, run] : w->running) {
      const uint64_t seq = run.seq;
      auto it = tasks_.find(seq);
      if (it == tasks_.end() || it->second.run_id != run_id) continue;
      it->second.worker = nullptr;
      if (IsFinalState(it->second.task.state())) continue;
      if (head != 0 && run_id != head) {  // it waited behind the one that was running
        RequeueUnstartedLocked(seq);
        continue;
      }
      v1::TaskError e =
          MakeError(v1::FAILURE_KIND_WORKER_CRASHED,
                    absl::StrCat("worker pid ", w->pid, " (", pool, " pool, slot ", w->slot, ") ",
                                 how, " while running this task; the worker was replaced"));
      e.set_signal(sig);
      e.set_signal_name(sig ? internal::SignalName(sig) : "");
      e.set_exit_code(sig ? 0 : code);
      e.set_retryable(true);
      it->second.task.mutable_decision()->set_finished_unix_us(NowUnixMicros());
      FailOrRetryLocked(seq, v1::TASK_STATE_FAILED, std::move(e));
    }
    // A worker that keeps dying right after it starts (bad plugin, broken binary, no
    // memory) is respawned with a growing delay instead of in a tight loop.
    if (was_starting && IsPythonPool(w->pool) && !options_.python_required && !started_) {
      TurnPythonOffLocked(absl::StrCat("Python worker pid ", w->pid, " ", how,
                                       " before it said hello (its stderr is above)"));
    }
    const bool quick = NowUnixMicros() - w->started_us < 1'000'000;
    w->quick_deaths = (quick && !w->killed) || was_starting ? w->quick_deaths + 1 : 0;
    const int64_t delay_ms =
        w->quick_deaths == 0 ? 0 : std::min<int64_t>(30'000, 250ll << std::min(w->quick_deaths, 7));
    if (!w->killed) {
      std::fprintf(
          stderr, "taskrtd: %s worker pid %d %s; respawning%s\n", pool, w->pid, how.c_str(),
          delay_ms == 0
              ? ""
              : absl::StrCat(" in ", delay_ms, " ms (", w->quick_deaths, " quick deaths in a row)")
                    .c_str());
    }
    if (w->recycle) {
      ++recycled_[static_cast<int>(w->pool)];
    } else {
      ++respawns_[static_cast<int>(w->pool)];
    }
    w->running.clear();
    w->sync_running = w->async_running = w->long_running = 0;
    w->state = WorkerState::kDead;
    w->pid = -1;
    std::error_code ignored;
    w->socket.close(ignored);
    const auto delay = std::chrono::milliseconds(delay_ms);
    auto timer = std::make_shared<asio::steady_timer>(io_, delay);
    timer->async_wait([this, timer, pool = w->pool, slot = w->slot](const std::error_code&) {
      SpawnOnLoop(pool, slot);
    });
    DispatchLocked();
    deferred = TakeDeferredLocked();
  }
  RunDeferred(deferred);
}

void TaskManager::CancelRunLocked(Worker* w, uint64_t run_id) {
  auto it = w->running.find(run_id);
  if (it == w->running.end()) return;
  if (it->second.cancelled_us == 0) it->second.cancelled_us = NowUnixMicros();
  v1::internal::WorkerFrame frame;
  frame.mutable_cancel()->set_seq(run_id);
  SendLocked(w, frame);
}

void TaskManager::CheckStuckLocked() {
  const int64_t now = NowUnixMicros();
  for (auto& w : workers_) {
    if (IsCpuPool(w->pool) || w->killed || w->state != WorkerState::kReady) continue;
    for (const auto& [run_id, run] : w->running) {
      if (run.cancelled_us == 0 || now - run.cancelled_us < options_.stuck_grace_ms * 1000) {
        continue;
      }
      // A thread that ignores cancellation holds its slot for good: replace the worker.
      auto t = tasks_.find(run.seq);
      w->kill_reason = absl::StrCat("was recycled because task ",
                                    t == tasks_.end() ? "?" : t->second.task.id(), " kept running ",
                                    (now - run.cancelled_us) / 1000, " ms after it was cancelled");
      std::fprintf(stderr, "taskrtd: io worker pid %d %s\n", w->pid, w->kill_reason.c_str());
      KillWorkerLocked(w.get());
      break;
    }
  }
}

void TaskManager::TerminateWorkerLocked(Worker* w) {
  if (w->pid <= 0 || w->killed) return;
  w->killed = true;
  const int pid = w->pid;
  ::kill(pid, SIGTERM);
  asio::post(io_, [this, w, pid] {
    auto timer = std::make_shared<asio::steady_timer>(
        io_, std::chrono::milliseconds(options_.kill_grace_ms));
    timer->async_wait([this, w, pid, timer](const std::error_code& ec) {
      if (ec) return;
      OpLock lock(this);
      if (w->pid == pid) ::kill(pid, SIGKILL);  // still the same, unreaped worker
    });
  });
}

void TaskManager::MaybeRecycleLocked(Worker* w, const v1::internal::TaskDone& done) {
  if (!w->retiring) {
    // sys.exec reports its child's peak RSS, not the worker's: judge sync runs only.
    const bool rss = options_.worker_max_rss_kb > 0 && done.executor() != v1::EXECUTOR_ASYNC &&
                     done.peak_rss_kb() > options_.worker_max_rss_kb;
    const bool tasks = options_.worker_max_tasks > 0 && w->tasks_run >= options_.worker_max_tasks;
    if (!rss && !tasks) return;
    w->retiring = true;
    std::fprintf(
        stderr, "taskrtd: recycling %s worker pid %d: %s\n", PoolName(w->pool), w->pid,
        rss ? absl::StrCat("peak RSS ", done.peak_rss_kb(), " KiB is above --worker-max-rss ",
                           options_.worker_max_rss_kb, " KiB")
                  .c_str()
            : absl::StrCat("it ran ", w->tasks_run, " tasks (--worker-max-tasks)").c_str());
  }
  if (w->running.empty()) {
    w->recycle = true;
    TerminateWorkerLocked(w);
  }
}

void TaskManager::KillWorkerLocked(Worker* w) {
  if (w->pid > 0 && !w->killed) {
    w->killed = true;
    ::kill(w->pid, SIGKILL);
  }
}

// ---------------------------------------------------------------------------------
// Final states, events and waiters.

void TaskManager::FailOrRetryLocked(uint64_t seq, v1::TaskState state, v1::TaskError error) {
  TaskRecord& r = tasks_.at(seq);
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
  r.worker = nullptr;
  r.run_id = 0;  // whatever the old run reports from now on is stale
  if (d->finished_unix_us() == 0) d->set_finished_unix_us(NowUnixMicros());
  if (d->run_time_us() == 0 && d->started_unix_us() > 0) {
    d->set_run_time_us(std::max<int64_t>(0, d->finished_unix_us() - d->started_unix_us()));
  }
  v1::Attempt* past = r.task.add_attempts();
  past->set_attempt(d->attempt());
  *past->mutable_decision() = *d;
  *past->mutable_error() = std::move(error);
  ResetRunFields(d);
  const int64_t due = NowUnixMicros() + BackoffUs(r.task.spec(), d->attempt());
  SetStateLocked(r, v1::TASK_STATE_QUEUED);
  r.task.set_not_before_unix_us(due);
  delayed_.emplace(due, seq);
  PersistLocked(seq);
  EmitLocked(r);
}

void TaskManager::PromoteDueLocked() {
  const int64_t now = NowUnixMicros();
  bool any = false;
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    const uint64_t seq = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    auto it = tasks_.find(seq);
    if (it == tasks_.end() || it->second.task.state() != v1::TASK_STATE_QUEUED) continue;
    QueueFor(it->second).Push(seq, it->second.task.spec().priority());
    any = true;
  }
  if (any) DispatchLocked();
}

void TaskManager::EvictOldLocked() {
  const int64_t oldest = NowUnixMicros() - options_.retain_for_ms * 1000;
  // retired_ is in order of finishing; look at a bounded number per tick.
  for (int i = 0; i < 1000 && !retired_.empty(); ++i) {
    auto it = tasks_.find(retired_.front());
    if (it != tasks_.end() && it->second.task.decision().finished_unix_us() > oldest) break;
    RetireLocked(retired_.front());
  }
}

void TaskManager::SetStateLocked(TaskRecord& r, v1::TaskState state) {
  CountLocked(r.task, -1);
  r.task.set_state(state);
  CountLocked(r.task, +1);
}

void TaskManager::FinishLocked(uint64_t seq, v1::TaskState state, v1::TaskError error) {
  TaskRecord& r = tasks_.at(seq);
  if (!IsFinalState(r.task.state()) && unfinished_ > 0) --unfinished_;
  SetStateLocked(r, state);
  if (error.kind() != v1::FAILURE_KIND_UNSPECIFIED) *r.task.mutable_error() = std::move(error);
  if (r.deadline_us > 0) deadlines_.erase({r.deadline_us, seq});
  v1::Decision* d = r.task.mutable_decision();
  if (d->finished_unix_us() == 0) d->set_finished_unix_us(NowUnixMicros());
  if (d->run_time_us() == 0 && d->started_unix_us() > 0) {
    // Killed, timed out or cancelled: the run lasted until now as far as anyone knows.
    d->set_run_time_us(std::max<int64_t>(0, d->finished_unix_us() - d->started_unix_us()));
  }
  PersistLocked(seq);
  EmitLocked(r);
  std::vector<uint64_t> waiters;
  waiters.swap(r.waiters);
  for (uint64_t handle : waiters) {
    auto it = waiters_.find(handle);
    if (it == waiters_.end()) continue;
    Waiter& w = it->second;
    if (w.each) {
      DeferResultLocked(w.each, r.task);
      if (--w.remaining == 0) waiters_.erase(it);
      continue;
    }
    if (--w.remaining == 0) CompleteWaiterLocked(handle, absl::OkStatus());
  }
  retired_.push_back(seq);
  while (retired_.size() > options_.max_retained) RetireLocked(retired_.front());
}

void TaskManager::DeferResultLocked(const std::shared_ptr<ResultCallback>& each,
                                    const v1::Task& task) {
  // Results that become final together reach their callback together (a Stream sends
  // them in one message).
  for (auto& [fn, results] : pending_results_) {
    if (fn == each) {
      results.push_back(MakeResult(task));
      return;
    }
  }
  pending_results_.emplace_back(each, std::vector<v1::TaskResult>{MakeResult(task)});
}

std::vector<std::function<void()>> TaskManager::TakeDeferredLocked() {
  for (auto& [fn, results] : pending_results_) {
    deferred_.push_back([fn = std::move(fn), results = std::move(results)]() mutable {
      (*fn)(std::move(results));
    });
  }
  pending_results_.clear();
  std::vector<std::function<void()>> out;
  out.swap(deferred_);
  return out;
}

void TaskManager::RetireLocked(uint64_t seq) {
  retired_.pop_front();
  auto it = tasks_.find(seq);
  if (it == tasks_.end()) return;
  if (!it->second.waiters.empty()) {
    retired_.push_back(seq);  // still referenced: keep it a little longer
    return;
  }
  const std::string& key = it->second.task.spec().idempotency_key();
  if (!key.empty()) {
    auto k = by_key_.find(KeyIndex(it->second.task.owner(), key));
    if (k != by_key_.end() && k->second == seq) by_key_.erase(k);
  }
  if (options_.journal != nullptr) erased_.push_back(seq);
  CountLocked(it->second.task, -1);
  tasks_.erase(it);
}

void TaskManager::EmitLocked(const TaskRecord& r) {
  if (subscribers_.empty()) return;
  v1::TaskEvent event;
  event.set_unix_us(NowUnixMicros());
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

void TaskManager::CompleteWaiterLocked(uint64_t handle, absl::Status error) {
  auto it = waiters_.find(handle);
  if (it == waiters_.end()) return;
  Waiter waiter = std::move(it->second);
  waiters_.erase(it);
  if (!waiter.done) {  // a per-task wait: nothing more to report
    for (uint64_t seq : waiter.seqs) {
      auto t = tasks_.find(seq);
      if (t == tasks_.end()) continue;
      auto& v = t->second.waiters;
      v.erase(std::remove(v.begin(), v.end(), handle), v.end());
    }
    return;
  }
  absl::StatusOr<std::vector<v1::Task>> result;
  if (error.ok()) {
    std::vector<v1::Task> tasks;
    tasks.reserve(waiter.seqs.size());
    for (uint64_t seq : waiter.seqs) tasks.push_back(tasks_.at(seq).task);
    result = std::move(tasks);
  } else {
    result = std::move(error);
    for (uint64_t seq : waiter.seqs) {
      auto t = tasks_.find(seq);
      if (t == tasks_.end()) continue;
      auto& v = t->second.waiters;
      v.erase(std::remove(v.begin(), v.end(), handle), v.end());
    }
  }
  deferred_.push_back([done = std::move(waiter.done), result = std::move(result)]() mutable {
    done(std::move(result));
  });
}

uint64_t TaskManager::Wait(const Caller& caller,
                           const google::protobuf::RepeatedPtrField<std::string>& ids,
                           uint64_t timeout_ms, WaitCallback done) {
  std::vector<std::function<void()>> deferred;
  uint64_t handle = 0;
  {
    OpLock lock(this);
    handle = next_handle_++;
    if (stopping_) {
      deferred_.push_back([done] { done(absl::UnavailableError("taskrtd is shutting down")); });
    } else if (absl::Status s = ValidateTaskIds(ids, LimitsOf(options_)); !s.ok()) {
      deferred_.push_back([done, s] { done(s); });
    } else {
      Waiter& w = waiters_[handle];
      w.done = std::move(done);
      absl::Status error;
      for (const auto& id : ids) {
        auto seq = FindOwnedLocked(caller, id);
        if (!seq.ok()) {
          error = seq.status();
          break;
        }
        w.seqs.push_back(*seq);
        TaskRecord& r = tasks_.at(*seq);
        if (!IsFinalState(r.task.state())) {
          ++w.remaining;
          r.waiters.push_back(handle);
        }
      }
      if (!error.ok() || w.remaining == 0) {
        CompleteWaiterLocked(handle, error);
      } else if (timeout_ms > 0) {
        const uint64_t ms = ClampWaitTimeoutMs(timeout_ms, LimitsOf(options_));
        deadlines_.emplace(NowUnixMicros() + static_cast<int64_t>(ms) * 1000,
                           ~handle);  // waiter handles are stored complemented
      }
    }
    deferred = TakeDeferredLocked();
  }
  RunDeferred(deferred);
  return handle;
}

void TaskManager::CancelWait(uint64_t handle) {
  std::vector<std::function<void()>> deferred;
  {
    OpLock lock(this);
    auto it = waiters_.find(handle);
    if (it == waiters_.end()) return;
    if (it->second.done) it->second.done = [](absl::StatusOr<std::vector<v1::Task>>) {};
    CompleteWaiterLocked(handle, absl::CancelledError("wait abandoned"));
    deferred = TakeDeferredLocked();
  }
  RunDeferred(deferred);
}

// ---------------------------------------------------------------------------------
// Deadlines (loop thread, every kTickMs).

void TaskManager::TickOnLoop() {
  tick_.expires_after(std::chrono::milliseconds(kTickMs));
  tick_.async_wait([this](const std::error_code& ec) {
    if (ec) return;
    std::vector<std::function<void()>> deferred;
    {
      OpLock lock(this);
      CheckDeadlinesLocked();
      CheckStuckLocked();
      PromoteDueLocked();
      EvictOldLocked();
      deferred = TakeDeferredLocked();
    }
    RunDeferred(deferred);
    TickOnLoop();
  });
}

void TaskManager::CheckDeadlinesLocked() {
  const int64_t now = NowUnixMicros();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const uint64_t key = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    if (waiters_.count(~key) != 0) {
      const Waiter& w = waiters_.at(~key);
      std::vector<std::string> pending;
      for (uint64_t seq : w.seqs) {
        const v1::Task& t = tasks_.at(seq).task;
        if (!IsFinalState(t.state()) && pending.size() < 5) pending.push_back(t.id());
      }
      CompleteWaiterLocked(
          ~key,
          absl::DeadlineExceededError(absl::StrCat(
              w.remaining, " of ", w.seqs.size(), " tasks are not final yet (e.g. ",
              absl::StrJoin(pending, ", "), "); they keep running: wait again or cancel them")));
      continue;
    }
    auto it = tasks_.find(key);
    if (it == tasks_.end() || it->second.task.state() != v1::TASK_STATE_RUNNING) continue;
    TaskRecord& r = it->second;
    Worker* w = r.worker;
    const std::string limit = absl::StrCat(r.task.spec().timeout_ms());
    std::string how;
    if (w != nullptr && IsCpuPool(w->pool)) {
      KillWorkerLocked(w);
      how = absl::StrCat("its ", PoolName(w->pool), " worker pid ", w->pid,
                         " was killed and will be replaced");
    } else if (w != nullptr) {
      CancelRunLocked(w, r.run_id);
      how = "it was cancelled through its context on its io worker";
    }
    r.deadline_us = 0;
    FailOrRetryLocked(key, v1::TASK_STATE_TIMED_OUT,
                      MakeError(v1::FAILURE_KIND_TIMEOUT,
                                absl::StrCat("ran past its timeout of ", limit, " ms; ", how),
                                /*retryable=*/true));
  }
}

// ---------------------------------------------------------------------------------
// Queries and cancellation.

absl::StatusOr<std::vector<v1::Task>> TaskManager::Get(
    const Caller& caller, const google::protobuf::RepeatedPtrField<std::string>& ids) {
  if (absl::Status s = ValidateTaskIds(ids, LimitsOf(options_)); !s.ok()) return s;
  OpLock lock(this);
  std::vector<v1::Task> out;
  for (const auto& id : ids) {
    auto seq = FindOwnedLocked(caller, id);
    if (!seq.ok()) return seq.status();
    out.push_back(tasks_.at(*seq).task);
  }
  return out;
}

absl::StatusOr<std::vector<v1::Task>> TaskManager::Cancel(
    const Caller& caller, const google::protobuf::RepeatedPtrField<std::string>& ids) {
  if (absl::Status s = ValidateTaskIds(ids, LimitsOf(options_)); !s.ok()) return s;
  std::vector<std::function<void()>> deferred;
  std::vector<v1::Task> out;
  {
    OpLock lock(this);
    std::vector<uint64_t> seqs;
    for (const auto& id : ids) {  // all ids must exist before anything changes
      auto seq = FindOwnedLocked(caller, id);
      if (!seq.ok()) return seq.status();
      seqs.push_back(*seq);
    }
    for (uint64_t seq : seqs) {
      TaskRecord& r = tasks_.at(seq);
      if (r.task.state() == v1::TASK_STATE_QUEUED) {
        if (!QueueFor(r).Remove(seq)) delayed_.erase({r.task.not_before_unix_us(), seq});
        FinishLocked(seq, v1::TASK_STATE_CANCELLED,
                     MakeError(v1::FAILURE_KIND_CANCELLED, "cancelled while queued"));
      } else if (r.task.state() == v1::TASK_STATE_RUNNING && r.worker != nullptr) {
        Worker* w = r.worker;
        std::string how;
        if (IsCpuPool(w->pool) && HeadRun(*w) != r.run_id) {
          // Not started yet: it waits in the worker behind another task, which goes on.
          CancelRunLocked(w, r.run_id);
          how = absl::StrCat("it had not started; its ", PoolName(w->pool), " worker pid ", w->pid,
                             " skips it");
        } else if (IsCpuPool(w->pool)) {
          TerminateWorkerLocked(w);
          how = absl::StrCat("its ", PoolName(w->pool), " worker pid ", w->pid,
                             " was stopped (SIGTERM, then SIGKILL after ", options_.kill_grace_ms,
                             " ms) and will be replaced");
        } else {
          CancelRunLocked(w, r.run_id);
          how = "its context on the io worker was cancelled";
        }
        FinishLocked(
            seq, v1::TASK_STATE_CANCELLED,
            MakeError(v1::FAILURE_KIND_CANCELLED, absl::StrCat("cancelled while running; ", how)));
      }
      out.push_back(r.task);
    }
    DispatchLocked();
    deferred = TakeDeferredLocked();
  }
  RunDeferred(deferred);
  return out;
}

std::vector<v1::Task> TaskManager::List(const Caller& caller, const v1::ListRequest& request) {
  const size_t limit = ListLimit(request, LimitsOf(options_));
  std::vector<v1::Task> out;
  OpLock lock(this);
  for (auto it = tasks_.rbegin(); it != tasks_.rend() && out.size() < limit; ++it) {
    const v1::Task& t = it->second.task;
    if (!caller.admin && t.owner() != caller.name) continue;
    if (!request.handler().empty() && t.spec().handler() != request.handler()) continue;
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
    if (mine == 0) watchers_by_owner_.erase(caller.name);
    return absl::ResourceExhaustedError(absl::StrCat(
        all ? "the daemon" : caller.name, " has ", all ? subscribers_.size() : mine,
        " Watch calls open, the limit (taskrtd ",
        all ? "--max-watchers" : "--max-watchers-per-owner", "); close one and retry"));
  }
  ++mine;
  const uint64_t handle = next_handle_++;
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
  if (caller.admin) {
    for (const auto& [owner, counts] : owners_) {
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
  for (int i = 0; i < kPools; ++i) {
    const Pool pool = static_cast<Pool>(i);
    if (IsPythonPool(pool) && !python_on_) continue;
    v1::PoolInfo* p = stats.add_pools();
    p->set_name(PoolName(pool));
    p->set_queued(queues_[i][0].size() + queues_[i][1].size());
    p->set_completed(completed_[static_cast<int>(pool)]);
    p->set_respawns(respawns_[static_cast<int>(pool)]);
    p->set_recycled(recycled_[static_cast<int>(pool)]);
    for (const auto& w : workers_) {
      if (w->pool != pool) continue;
      p->set_workers(p->workers() + 1);
      p->set_running(p->running() + w->running.size());
      v1::WorkerInfo* wi = stats.add_workers();
      wi->set_pool(p->name());
      wi->set_slot(w->slot);
      wi->set_pid(w->pid);
      wi->set_state(w->state == WorkerState::kStarting ? "starting"
                    : w->state == WorkerState::kDead   ? "restarting"
                    : w->running.empty()               ? "idle"
                                                       : "busy");
      wi->set_tasks_run(w->tasks_run);
      wi->set_running(w->running.size());
      wi->set_threads(ThreadsOf(pool));
      wi->set_started_unix_us(w->started_us);
    }
  }
  for (const auto& [key, learned] : learned_) {
    v1::LearnedClass* lc = stats.add_learned();
    lc->set_handler(key.first);
    lc->set_function(key.second);
    lc->set_gil_corrected(learned.samples > 0 && learned.gil_samples == learned.samples);
    lc->set_cpu_ratio(learned.cpu_ratio);
    lc->set_samples(learned.samples);
    lc->set_learned_class(LearnedClass(learned, options_.classifier));
  }
  auto& by_state = *stats.mutable_tasks_by_state();
  for (size_t state = 0; state < by_state_.size(); ++state) {
    if (by_state_[state] > 0) {
      by_state[v1::TaskState_Name(static_cast<v1::TaskState>(state))] = by_state_[state];
    }
  }
  return stats;
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
