// TaskManager: Submit — validation, admission (ownership, privileges, quotas,
// idempotency keys), classification and queueing.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "daemon/task_manager.h"
#include "daemon/task_util.h"
#include "daemon/validation.h"
#include "google/protobuf/util/message_differencer.h"

namespace taskrt::daemon {

using google::protobuf::util::MessageDifferencer;

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
    ResultCallback each, bool run_call) {
  if (absl::Status s = ValidateBatchSize(specs.size(), LimitsOf(options_)); !s.ok()) return s;
  SubmitResult result;
  result.ids.reserve(specs.size());
  std::vector<uint64_t> seqs;  // of result.ids
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
  const int64_t now = clock_->NowUnixMicros();
  for (const auto& spec : specs) {
    // AdmitLocked compared the specs of known keys already (also those earlier in this
    // batch): a known key is the same task, not a new one.
    const std::optional<uint64_t> known = table_.FindKey(caller.name, spec.idempotency_key());
    seqs.push_back(known.has_value() ? *known : AcceptLocked(caller, spec, now));
    result.ids.push_back(table_.at(seqs.back()).task.id());
  }
  if (each) result.wait_handle = WaitEachLocked(seqs, std::move(each));
  DispatchLocked();
  // A Run answers only once its tasks are final, after the fsync'd commit of that state,
  // which also makes this operation's rows durable: they need no fsync of their own, as
  // long as they are this batch's alone (another task's RUNNING record must be synced
  // before its frame goes out).
  if (run_call && std::all_of(op_.dirty().begin(), op_.dirty().end(), [&](uint64_t seq) {
        return std::find(seqs.begin(), seqs.end(), seq) != seqs.end();
      })) {
    op_.RelaxSync();
  }
  FlushRowsLocked();  // the ticket must cover this batch's rows
  if (options_.journal != nullptr) result.ticket = options_.journal->last_ticket();
  result.load =
      table_.by_state()[v1::TASK_STATE_QUEUED] + table_.by_state()[v1::TASK_STATE_RUNNING];
  return result;
}

uint64_t TaskManager::AcceptLocked(const Caller& caller, const v1::TaskSpec& spec, int64_t now) {
  uint64_t seq = 0;
  TaskRecord& r = table_.Create(caller.name, &seq);
  const v1::HandlerInfo& info = handlers_[spec.handler()];
  auto learned = learned_.find({spec.handler(), spec.function()});
  const ClassDecision cd = Classify(
      spec.function().empty() ? spec.handler() : spec.function(), spec.requested_class(),
      info.hint(), learned == learned_.end() ? nullptr : &learned->second, options_.classifier);
  r.async = info.async();
  r.python = info.runtime() == "python";
  r.pool = PoolOf(cd.resolved, r.python);
  v1::Task& t = r.task;
  *t.mutable_spec() = spec;
  if (t.spec().timeout_ms() == 0) t.mutable_spec()->set_timeout_ms(options_.default_timeout_ms);
  v1::Decision* d = t.mutable_decision();
  d->set_requested_class(spec.requested_class());
  d->set_resolved_class(cd.resolved);
  d->set_reason(cd.reason);
  if (options_.metrics != nullptr) options_.metrics->Decided(cd.reason, cd.resolved);
  d->set_evidence(cd.evidence);
  d->set_pool(PoolName(r.pool));
  d->set_runtime(r.python ? "python" : "native");
  d->set_submitted_unix_us(now);
  d->set_daemon_pid(daemon_pid_);
  table_.IndexKey(seq);
  QueueFor(r).Push(seq, spec.priority());
  ++submitted_;
  PersistLocked(seq);
  EmitLocked(r);
  return seq;
}

uint64_t TaskManager::WaitEachLocked(const std::vector<uint64_t>& seqs, ResultCallback each) {
  auto [handle, w] = waiters_.Add();
  w->each = std::make_shared<ResultCallback>(std::move(each));
  for (const uint64_t seq : seqs) {
    TaskRecord& r = table_.at(seq);
    if (IsFinal(r.task.state())) {
      op_.DeferResult(w->each, MakeResult(r.task));  // at the end of this operation
    } else {
      ++w->remaining;
      w->seqs.push_back(seq);
      r.waiters.push_back(handle);
    }
  }
  if (w->remaining == 0) waiters_.Take(handle);
  return handle;
}

absl::Status TaskManager::MayRunLocked(const Caller& caller, const v1::TaskSpec& spec,
                                       const std::string& where) {
  if (caller.may_exec) return absl::OkStatus();
  if (!spec.input().empty() && static_cast<unsigned char>(spec.input()[0]) == 0x80) {
    auto h = handlers_.find(spec.handler());
    if (h != handlers_.end() && h->second.runtime() == "python") {
      return absl::PermissionDeniedError(absl::StrCat(
          where, "the input of Python handler '", spec.handler(), "' is pickled (it starts ",
          "with 0x80), and unpickling runs code: ", caller.name, " may not send pickled ",
          "payloads; send JSON instead, or the daemon's owner can grant it with taskrtd ",
          "--allow-exec ", caller.name, "; nothing was submitted"));
    }
  }
  const auto& privileged = options_.privileged_handlers;
  if (std::find(privileged.begin(), privileged.end(), spec.handler()) != privileged.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        where, "handler '", spec.handler(), "' runs caller-chosen code or reads files with the ",
        "daemon's rights, and ", caller.name, " may not run it: the daemon's owner can ",
        "grant it with taskrtd --allow-exec ", caller.name,
        " (or --allow-exec group:NAME, or --admin-group); nothing was submitted"));
  }
  return absl::OkStatus();
}

absl::Status TaskManager::AdmitLocked(
    const Caller& caller, const google::protobuf::RepeatedPtrField<v1::TaskSpec>& specs) {
  size_t fresh = 0;
  absl::flat_hash_map<absl::string_view, int> batch_keys;  // key -> first spec with it
  for (int i = 0; i < specs.size(); ++i) {
    const v1::TaskSpec& spec = specs[i];
    const std::string where =
        specs.size() == 1 ? "" : absl::StrCat("task ", i + 1, " of ", specs.size(), ": ");
    RETURN_IF_ERROR(MayRunLocked(caller, spec, where));
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
    } else if (!MessageDifferencer::Equals(specs[first->second], spec)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "tasks ", first->second + 1, " and ", i + 1, " of the batch share the idempotency key ",
          QuoteInput(spec.idempotency_key()), " with different specs; nothing was submitted"));
    }
  }
  if (table_.unfinished() + fresh > options_.max_queued) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue is full: ", table_.unfinished(),
                     " tasks are not finished and the limit is ", options_.max_queued,
                     " (taskrtd --max-queued); nothing was submitted: retry after "
                     "some finish (e.g. in 1s, with backoff)"));
  }
  uint64_t mine = 0;
  if (auto it = table_.owners().find(caller.name); it != table_.owners().end()) {
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
  const std::optional<uint64_t> known = table_.FindKey(owner, spec.idempotency_key());
  if (!known.has_value()) return std::nullopt;
  const v1::Task& task = table_.at(*known).task;
  v1::TaskSpec normalized = spec;
  if (normalized.timeout_ms() == 0) normalized.set_timeout_ms(options_.default_timeout_ms);
  if (!MessageDifferencer::Equals(task.spec(), normalized)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "idempotency key ", QuoteInput(spec.idempotency_key()), " was used for task ", task.id(),
        " with a different spec (handler ", QuoteInput(task.spec().handler()),
        "); use a new key for a new task, ", "or resubmit the same spec to get that task"));
  }
  return known;
}

absl::StatusOr<uint64_t> TaskManager::FindOwnedLocked(const Caller& caller, const std::string& id) {
  absl::StatusOr<uint64_t> seq = table_.Find(id);
  if (seq.ok() && !caller.admin && table_.at(*seq).task.owner() != caller.name) {
    return table_.NotFound(id);  // the same error as an unknown id: existence is not leaked
  }
  return seq;
}

}  // namespace taskrt::daemon
