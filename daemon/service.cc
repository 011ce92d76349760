#include "daemon/service.h"

#include <deque>
#include <map>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/mutex.h"
#include "common/util.h"
#include "daemon/validation.h"
#include "daemon/write_queue_reactor.h"

namespace taskrt::daemon {
grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

namespace {

constexpr absl::string_view kBearer = "Bearer ";

// A Submit or Run refused with UNAVAILABLE before anything was accepted (the daemon is
// draining) says so in the trailing metadata, so that a client of several daemons may
// send the tasks to another one: a bare UNAVAILABLE could also be a connection lost
// after the tasks were accepted, which only the same daemon may be asked again.
void MarkNotAccepted(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  if (absl::IsUnavailable(status)) ctx->AddTrailingMetadata("taskrt-not-accepted", "draining");
}

template <typename Field>
void CopyTasks(std::vector<v1::Task>& tasks, Field* out) {
  out->Reserve(static_cast<int>(tasks.size()));
  for (auto& t : tasks) *out->Add() = std::move(t);
}

// Finishes a unary reactor exactly once, with whichever comes first of the manager's
// callback and the client going away. Shared with the manager's callback, so it
// outlives the reactor (the manager may call back after the RPC was cancelled).
// `fill` moves a result into the response.
template <typename Value, typename Response>
class FinishOnce {
 public:
  using Fill = void (*)(Value&, Response*);
  FinishOnce(grpc::ServerUnaryReactor* reactor, Response* response, Fill fill)
      : reactor_(reactor), response_(response), fill_(fill) {}

  void Complete(absl::StatusOr<Value> result) {
    {
      internal::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    if (result.ok()) fill_(*result, response_);
    reactor_->Finish(ToGrpc(result.status()));
  }

 private:
  internal::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ServerUnaryReactor* const reactor_;
  Response* const response_;
  const Fill fill_;
};

// A unary reactor that waits on the manager (handle_) and finishes through a shared
// FinishOnce (state_): a client that goes away withdraws the wait and ends the call.
template <typename State>
class WaitingReactor : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override {
    manager_.CancelWait(handle_);
    state_->Complete(absl::CancelledError("the client went away"));
  }
  void OnDone() override { delete this; }

 protected:
  WaitingReactor(TaskManager& manager, std::shared_ptr<State> state)
      : manager_(manager), state_(std::move(state)) {}

  TaskManager& manager_;
  const std::shared_ptr<State> state_;
  uint64_t handle_ = 0;
};

// Wait: finished by the TaskManager's callback, by the client going away, or by the
// manager's own timeout — whichever comes first.
using WaitState = FinishOnce<std::vector<v1::Task>, v1::WaitResponse>;
class WaitReactor final : public WaitingReactor<WaitState> {
 public:
  WaitReactor(TaskManager& manager, const Caller& caller, const v1::WaitRequest* request,
              v1::WaitResponse* response)
      : WaitingReactor(manager,
                       std::make_shared<WaitState>(
                           this, response, [](std::vector<v1::Task>& tasks, v1::WaitResponse* out) {
                             CopyTasks(tasks, out->mutable_tasks());
                           })) {
    handle_ = manager_.Wait(caller, request->task_ids(), request->timeout_ms(),
                            [state = state_](absl::StatusOr<std::vector<v1::Task>> r) {
                              state->Complete(std::move(r));
                            });
  }
};

// Run: Submit and Wait in one call. The wait is registered before the journal commits
// the submit, so it cannot miss the end; a journal failure withdraws the task and ends
// the call with that error.
using RunState = FinishOnce<v1::Task, v1::Task>;
class RunReactor final : public WaitingReactor<RunState> {
 public:
  RunReactor(grpc::CallbackServerContext* ctx, TaskManager& manager, const Caller& caller,
             const v1::RunRequest* request, v1::Task* response)
      : WaitingReactor(
            manager, std::make_shared<RunState>(this, response, [](v1::Task& task, v1::Task* out) {
              *out = std::move(task);
            })) {
    google::protobuf::RepeatedPtrField<v1::TaskSpec> specs;
    *specs.Add() = request->spec();
    // run_call: this call answers only after the fsync'd commit of the final state,
    // so the acceptance needs no fsync of its own (one commit per durable Run).
    auto submitted = manager_.Submit(caller, specs, nullptr, /*run_call=*/true);
    if (!submitted.ok()) {
      MarkNotAccepted(ctx, submitted.status());
      state_->Complete(submitted.status());
      return;
    }
    const std::string id = submitted->ids.front();
    const uint64_t timeout_ms = request->timeout_ms();
    google::protobuf::RepeatedPtrField<std::string> ids;
    *ids.Add() = id;
    handle_ = manager_.Wait(
        caller, ids, timeout_ms,
        [state = state_, id, timeout_ms](absl::StatusOr<std::vector<v1::Task>> r) {
          if (!r.ok()) {
            if (absl::IsDeadlineExceeded(r.status())) {
              state->Complete(absl::DeadlineExceededError(absl::StrCat(
                  "task ", id, " is not final after ", timeout_ms,
                  " ms; it keeps running: wait for it with Wait (`taskrt wait ", id, "`)")));
            } else {
              state->Complete(r.status());
            }
            return;
          }
          state->Complete(std::move(r->front()));
        });
    manager_.WhenDurable(submitted->ticket, submitted->ids,
                         [state = state_, &manager = manager_, handle = handle_](absl::Status s) {
                           if (s.ok()) return;
                           manager.CancelWait(handle);
                           state->Complete(s);
                         });
  }
};

// Stream: reads batches one after another and submits each; answers and results are
// collected into the next response while one is being written, so a busy stream sends
// few, large messages. The manager's callbacks reach the call through Shared, which
// outlives the reactor. A client that submits but does not read its results is not
// read from either once `max_backlog` results wait for it, so they cannot pile up.
class StreamReactor final : public grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse> {
 public:
  StreamReactor(TaskManager& manager, Caller caller, int max_backlog)
      : manager_(manager),
        caller_(std::move(caller)),
        max_backlog_(max_backlog),
        shared_(std::make_shared<Shared>(this)) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side (or went away: OnCancel follows)
      internal::MutexLock lock(&shared_->mu);
      shared_->reads_done = true;
      shared_->MaybeFinishLocked();
      return;
    }
    const uint64_t tag = request_.tag();
    uint64_t slot = 0;  // answers go out in the order of the requests
    {
      internal::MutexLock lock(&shared_->mu);
      slot = shared_->slots++;
    }
    auto submitted = manager_.Submit(caller_, request_.tasks(),
                                     [shared = shared_](std::vector<v1::TaskResult> results) {
                                       shared->AddResults(std::move(results));
                                     });
    if (!submitted.ok()) {
      shared_->AddAccepted(slot, tag, submitted.status(), {}, 0);
    } else {
      {
        internal::MutexLock lock(&shared_->mu);
        shared_->expected += submitted->ids.size();
        if (submitted->wait_handle != 0) shared_->handles.push_back(submitted->wait_handle);
      }
      std::vector<std::string> ids = submitted->ids;
      manager_.WhenDurable(
          submitted->ticket, std::move(ids),
          [shared = shared_, &manager = manager_, slot, tag, handle = submitted->wait_handle,
           load = submitted->load, ids = std::move(submitted->ids)](absl::Status s) mutable {
            if (!s.ok()) {
              // The tasks were withdrawn: their results will not come. End the call.
              manager.CancelWait(handle);
              shared->Fail(s);
              return;
            }
            shared->AddAccepted(slot, tag, s, std::move(ids), load);
          });
    }
    {
      internal::MutexLock lock(&shared_->mu);
      if (shared_->finished) return;
      if (shared_->next.results_size() >= max_backlog_) {
        shared_->read_paused = true;  // OnWriteDone reads on once the client catches up
        return;
      }
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    {
      internal::MutexLock lock(&shared_->mu);
      shared_->writing = false;
      if (!ok) {
        shared_->FinishLocked(grpc::Status::OK);  // the client is gone
        return;
      }
      shared_->WriteNextLocked();
      if (!shared_->read_paused || shared_->finished ||
          shared_->next.results_size() > max_backlog_ / 2) {
        return;
      }
      shared_->read_paused = false;
    }
    StartRead(&request_);
  }

  void OnCancel() override {
    std::vector<uint64_t> handles;
    {
      internal::MutexLock lock(&shared_->mu);
      handles.swap(shared_->handles);
      shared_->FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    }
    for (uint64_t h : handles) manager_.CancelWait(h);
  }

  void OnDone() override {
    std::vector<uint64_t> handles;
    {
      internal::MutexLock lock(&shared_->mu);
      shared_->reactor = nullptr;
      handles.swap(shared_->handles);
    }
    for (uint64_t h : handles) manager_.CancelWait(h);
    delete this;
  }

 private:
  struct Shared {
    explicit Shared(StreamReactor* r) : reactor(r) {}

    void AddResults(std::vector<v1::TaskResult> results) {
      internal::MutexLock lock(&mu);
      delivered += results.size();
      if (finished) return;
      for (auto& r : results) *next.add_results() = std::move(r);
      WriteNextLocked();
    }
    // The answer to request number `slot`; answers are sent in slot order (a refused
    // batch is answered at once, an accepted one only once durable).
    void AddAccepted(uint64_t slot, uint64_t tag, const absl::Status& status,
                     std::vector<std::string> ids, uint64_t load) {
      internal::MutexLock lock(&mu);
      v1::StreamResponse::Accepted& a = answers[slot];
      a.set_tag(tag);
      a.set_load(load);
      a.set_code(static_cast<int>(status.code()));
      a.set_message(std::string(status.message()));
      a.mutable_task_ids()->Reserve(static_cast<int>(ids.size()));
      for (auto& id : ids) a.add_task_ids(std::move(id));
      while (!answers.empty() && answers.begin()->first == answered) {
        if (!finished) next.add_accepted()->Swap(&answers.begin()->second);
        answers.erase(answers.begin());
        ++answered;
      }
      WriteNextLocked();
    }
    void Fail(const absl::Status& status) {
      internal::MutexLock lock(&mu);
      FinishLocked(ToGrpc(status));
    }
    void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (finished || writing || reactor == nullptr) return;
      if (next.accepted_size() == 0 && next.results_size() == 0) {
        MaybeFinishLocked();
        return;
      }
      current.Clear();
      current.Swap(&next);
      writing = true;
      reactor->StartWrite(&current);
    }
    void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (reads_done && answered == slots && delivered >= expected && !writing &&
          next.accepted_size() == 0 && next.results_size() == 0) {
        FinishLocked(grpc::Status::OK);
      }
    }
    void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (finished || reactor == nullptr) return;
      finished = true;
      reactor->Finish(std::move(status));
    }

    internal::Mutex mu;
    StreamReactor* reactor ABSL_GUARDED_BY(mu);      // null once the call is done
    v1::StreamResponse current ABSL_GUARDED_BY(mu);  // being written
    v1::StreamResponse next ABSL_GUARDED_BY(mu);     // collecting
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool reads_done ABSL_GUARDED_BY(mu) = false;
    bool read_paused ABSL_GUARDED_BY(mu) = false;  // too many results wait for the client
    bool finished ABSL_GUARDED_BY(mu) = false;
    size_t expected ABSL_GUARDED_BY(mu) = 0;  // results owed for accepted batches
    size_t delivered ABSL_GUARDED_BY(mu) = 0;
    uint64_t slots ABSL_GUARDED_BY(mu) = 0;     // requests read
    uint64_t answered ABSL_GUARDED_BY(mu) = 0;  // requests answered (a prefix)
    std::map<uint64_t, v1::StreamResponse::Accepted> answers ABSL_GUARDED_BY(mu);  // waiting
    std::vector<uint64_t> handles ABSL_GUARDED_BY(mu);
  };

  TaskManager& manager_;
  const Caller caller_;
  const int max_backlog_;
  std::shared_ptr<Shared> shared_;
  v1::StreamRequest request_;
};

// Watch: events are queued by the manager (under its lock) and written one at a time.
// A client that falls `max_backlog_bytes` behind is ended (RESOURCE_EXHAUSTED), so an
// unread Watch costs the daemon at most that much.
class WatchReactor final : public WriteQueueReactor<v1::TaskEvent> {
 public:
  WatchReactor(TaskManager& manager, const Caller& caller, const v1::WatchRequest* request,
               size_t max_backlog_bytes)
      : manager_(manager), max_backlog_bytes_(max_backlog_bytes) {
    // Only the fixed id limits apply here (none of them is a taskrtd option).
    if (absl::Status s = ValidateTaskIds(request->task_ids(), ValidationLimits(),
                                         /*allow_empty=*/true);
        !s.ok()) {
      internal::MutexLock lock(&mu_);
      FinishLocked(ToGrpc(s));
      return;
    }
    StartSendInitialMetadata();
    auto handle =
        manager_.Watch(caller, request->task_ids(), [this](const v1::TaskEvent& e) { Push(e); });
    internal::MutexLock lock(&mu_);
    if (!handle.ok()) {
      FinishLocked(ToGrpc(handle.status()));
      return;
    }
    handle_ = *handle;
  }

  void OnDone() override {
    if (handle_ != 0) manager_.Unwatch(handle_);
    delete this;
  }

 private:
  void Push(const v1::TaskEvent& event) {
    internal::MutexLock lock(&mu_);
    if (finished()) return;
    const size_t bytes = event.ByteSizeLong();
    if (queued_bytes_ + bytes > max_backlog_bytes_) {
      FinishLocked(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("watcher fell ", queued(), " events (", queued_bytes_,
                       " bytes) behind, the limit (taskrtd --watch-backlog-bytes); reconnect")));
      return;
    }
    queued_bytes_ += bytes;
    EnqueueLocked(event);
  }
  void Written(const v1::TaskEvent& event) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queued_bytes_ -= event.ByteSizeLong();
  }

  TaskManager& manager_;
  const size_t max_backlog_bytes_;
  uint64_t handle_ = 0;
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// A streaming call refused before it started (UNAUTHENTICATED).
template <typename Base>
class RefusedReactor final : public Base {
 public:
  explicit RefusedReactor(const absl::Status& status) { this->Finish(ToGrpc(status)); }
  void OnDone() override { delete this; }
};

grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

}  // namespace

absl::StatusOr<Caller> IdentifyCaller(const CallerIdentity& identity,
                                      const grpc::CallbackServerContext& ctx) {
  if (identity.registry == nullptr) return Caller::Daemon();
  const std::string peer = ctx.peer();
  if (peer == "inproc") return Caller::Daemon();  // only code inside the daemon has one
  const std::optional<PeerInfo> info = identity.registry->Find(peer);
  if (info.has_value() && info->unix_socket) {
    return identity.policy->ForPeer(info->uid, info->gid, info->groups);
  }
  const bool tcp =
      info.has_value() || absl::StartsWith(peer, "ipv4:") || absl::StartsWith(peer, "ipv6:");
  if (!tcp || identity.tokens == nullptr) {
    return absl::UnauthenticatedError(
        absl::StrCat("the daemon cannot tell who is calling from ", QuoteInput(peer, 64)));
  }
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "a TCP call needs the daemon's token: pass --token-file FILE or set TASKRT_TOKEN "
        "(taskrtd writes it to <state-dir>/token at first start, or reads --token-file)");
  }
  absl::string_view value(it->second.data(), it->second.size());
  std::optional<std::string> owner;
  if (absl::ConsumePrefix(&value, kBearer)) owner = identity.tokens->Lookup(value);
  if (!owner.has_value()) {
    return absl::UnauthenticatedError(
        "the token is not one this daemon accepts (expected 'authorization: Bearer TOKEN' "
        "with a token from taskrtd's token file)");
  }
  return identity.policy->ForTokenOwner(*owner);
}

grpc::ServerUnaryReactor* TaskServiceImpl::Submit(grpc::CallbackServerContext* ctx,
                                                  const v1::SubmitRequest* request,
                                                  v1::SubmitResponse* response) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) return Refuse(ctx, caller.status());
  auto* reactor = ctx->DefaultReactor();
  auto result = manager_.Submit(*caller, request->tasks());
  if (!result.ok()) {
    MarkNotAccepted(ctx, result.status());
    reactor->Finish(ToGrpc(result.status()));
    return reactor;
  }
  // Answer once the tasks are durable (at once without a journal). The callback runs on
  // the journal's thread; the response stays valid until Finish.
  std::vector<std::string> ids = result->ids;
  manager_.WhenDurable(
      result->ticket, std::move(ids),
      [reactor, response, load = result->load, ids = std::move(result->ids)](absl::Status s) {
        if (s.ok()) {
          response->set_load(load);
          response->mutable_task_ids()->Reserve(static_cast<int>(ids.size()));
          for (const auto& id : ids) response->add_task_ids(id);
        }
        reactor->Finish(ToGrpc(s));
      });
  return reactor;
}

grpc::ServerUnaryReactor* TaskServiceImpl::Get(grpc::CallbackServerContext* ctx,
                                               const v1::GetRequest* request,
                                               v1::GetResponse* response) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) return Refuse(ctx, caller.status());
  auto* reactor = ctx->DefaultReactor();
  auto tasks = manager_.Get(*caller, request->task_ids());
  if (tasks.ok()) CopyTasks(*tasks, response->mutable_tasks());
  reactor->Finish(ToGrpc(tasks.status()));
  return reactor;
}

grpc::ServerUnaryReactor* TaskServiceImpl::Wait(grpc::CallbackServerContext* ctx,
                                                const v1::WaitRequest* request,
                                                v1::WaitResponse* response) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) return Refuse(ctx, caller.status());
  return new WaitReactor(manager_, *caller, request, response);
}

grpc::ServerUnaryReactor* TaskServiceImpl::Run(grpc::CallbackServerContext* ctx,
                                               const v1::RunRequest* request, v1::Task* response) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) return Refuse(ctx, caller.status());
  return new RunReactor(ctx, manager_, *caller, request, response);
}

grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* TaskServiceImpl::Stream(
    grpc::CallbackServerContext* ctx) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) {
    return new RefusedReactor<grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>>(
        caller.status());
  }
  return new StreamReactor(manager_, *std::move(caller), stream_result_backlog_);
}

grpc::ServerUnaryReactor* TaskServiceImpl::Cancel(grpc::CallbackServerContext* ctx,
                                                  const v1::CancelRequest* request,
                                                  v1::CancelResponse* response) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) return Refuse(ctx, caller.status());
  auto* reactor = ctx->DefaultReactor();
  auto tasks = manager_.Cancel(*caller, request->task_ids());
  if (tasks.ok()) CopyTasks(*tasks, response->mutable_tasks());
  reactor->Finish(ToGrpc(tasks.status()));
  return reactor;
}

grpc::ServerUnaryReactor* TaskServiceImpl::List(grpc::CallbackServerContext* ctx,
                                                const v1::ListRequest* request,
                                                v1::ListResponse* response) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) return Refuse(ctx, caller.status());
  auto* reactor = ctx->DefaultReactor();
  if (absl::Status s = ValidateListRequest(*request, ValidationLimits()); !s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  auto tasks = manager_.List(*caller, *request);
  CopyTasks(tasks, response->mutable_tasks());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::TaskEvent>* TaskServiceImpl::Watch(grpc::CallbackServerContext* ctx,
                                                                const v1::WatchRequest* request) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) {
    return new RefusedReactor<grpc::ServerWriteReactor<v1::TaskEvent>>(caller.status());
  }
  return new WatchReactor(manager_, *caller, request, identity_.watch_backlog_bytes);
}

grpc::ServerWriteReactor<v1::OutputChunk>* TaskServiceImpl::Logs(grpc::CallbackServerContext* ctx,
                                                                 const v1::LogsRequest* request) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) {
    return new RefusedReactor<grpc::ServerWriteReactor<v1::OutputChunk>>(caller.status());
  }
  return NewLogsReactor(manager_, *caller, *request);
}

grpc::ServerUnaryReactor* TaskServiceImpl::GetStats(grpc::CallbackServerContext* ctx,
                                                    const v1::GetStatsRequest* request,
                                                    v1::Stats* response) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) return Refuse(ctx, caller.status());
  auto* reactor = ctx->DefaultReactor();
  *response = manager_.GetStats(*caller);
  response->set_http_url(endpoints_.http_url);
  if (!endpoints_.http_url.empty()) response->set_token_file(endpoints_.token_file);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* TaskServiceImpl::ListHandlers(grpc::CallbackServerContext* ctx,
                                                        const v1::ListHandlersRequest* request,
                                                        v1::ListHandlersResponse* response) {
  auto caller = IdentifyCaller(identity_, *ctx);
  if (!caller.ok()) return Refuse(ctx, caller.status());
  auto* reactor = ctx->DefaultReactor();
  for (auto& h : manager_.Handlers(*caller)) *response->add_handlers() = std::move(h);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace taskrt::daemon
