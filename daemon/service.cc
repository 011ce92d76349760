#include "daemon/service.h"

#include <deque>
#include <memory>

#include "common/mutex.h"

namespace taskrt::daemon {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

template <typename Field>
void CopyTasks(std::vector<v1::Task>& tasks, Field* out) {
  out->Reserve(static_cast<int>(tasks.size()));
  for (auto& t : tasks) *out->Add() = std::move(t);
}

// Wait: finished by the TaskManager's callback, by the client going away, or by the
// manager's own timeout — whichever comes first.
class WaitReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitReactor(TaskManager& manager, const v1::WaitRequest* request, v1::WaitResponse* response)
      : manager_(manager), state_(std::make_shared<State>(this, response)) {
    handle_ = manager_.Wait(request->task_ids(), request->timeout_ms(),
                            [state = state_](absl::StatusOr<std::vector<v1::Task>> r) {
                              state->Complete(std::move(r));
                            });
  }

  void OnCancel() override {
    manager_.CancelWait(handle_);
    state_->Complete(absl::CancelledError("the client went away"));
  }
  void OnDone() override { delete this; }

 private:
  // Outlives the reactor: the manager may call back after the RPC was cancelled.
  struct State {
    State(WaitReactor* r, v1::WaitResponse* resp) : reactor(r), response(resp) {}
    void Complete(absl::StatusOr<std::vector<v1::Task>> result) {
      {
        internal::MutexLock lock(&mu);
        if (finished) return;
        finished = true;
      }
      if (result.ok()) CopyTasks(*result, response->mutable_tasks());
      reactor->Finish(ToGrpc(result.status()));
    }
    internal::Mutex mu;
    bool finished ABSL_GUARDED_BY(mu) = false;
    WaitReactor* const reactor;
    v1::WaitResponse* const response;
  };

  TaskManager& manager_;
  std::shared_ptr<State> state_;
  uint64_t handle_ = 0;
};

// Watch: events are queued by the manager (under its lock) and written one at a time.
class WatchReactor final : public grpc::ServerWriteReactor<v1::TaskEvent> {
 public:
  static constexpr size_t kMaxBacklog = 100000;

  WatchReactor(TaskManager& manager, const v1::WatchRequest* request) : manager_(manager) {
    StartSendInitialMetadata();
    handle_ = manager_.Watch(request->task_ids(), [this](const v1::TaskEvent& e) { Push(e); });
  }

  void OnWriteDone(bool ok) override {
    internal::MutexLock lock(&mu_);
    queue_.pop_front();
    if (!ok) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    if (!queue_.empty() && !finished_) {
      StartWrite(&queue_.front());
    } else {
      writing_ = false;
    }
  }
  void OnCancel() override {
    internal::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::OK);
  }
  void OnDone() override {
    manager_.Unwatch(handle_);
    delete this;
  }

 private:
  void Push(const v1::TaskEvent& event) {
    internal::MutexLock lock(&mu_);
    if (finished_) return;
    if (queue_.size() >= kMaxBacklog) {
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "watcher fell more than 100000 events behind; reconnect"));
      return;
    }
    queue_.push_back(event);
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(std::move(status));
  }

  TaskManager& manager_;
  uint64_t handle_ = 0;
  internal::Mutex mu_;
  std::deque<v1::TaskEvent> queue_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* TaskServiceImpl::Submit(grpc::CallbackServerContext* ctx,
                                                  const v1::SubmitRequest* request,
                                                  v1::SubmitResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  auto result = manager_.Submit(request->tasks());
  if (!result.ok()) {
    reactor->Finish(ToGrpc(result.status()));
    return reactor;
  }
  // Answer once the tasks are durable (at once without a journal). The callback runs on
  // the journal's thread; the response stays valid until Finish.
  std::vector<std::string> ids = result->ids;
  manager_.WhenDurable(result->ticket, std::move(ids),
                       [reactor, response, ids = std::move(result->ids)](absl::Status s) {
                         if (s.ok()) {
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
  auto* reactor = ctx->DefaultReactor();
  auto tasks = manager_.Get(request->task_ids());
  if (tasks.ok()) CopyTasks(*tasks, response->mutable_tasks());
  reactor->Finish(ToGrpc(tasks.status()));
  return reactor;
}

grpc::ServerUnaryReactor* TaskServiceImpl::Wait(grpc::CallbackServerContext* ctx,
                                                const v1::WaitRequest* request,
                                                v1::WaitResponse* response) {
  return new WaitReactor(manager_, request, response);
}

grpc::ServerUnaryReactor* TaskServiceImpl::Cancel(grpc::CallbackServerContext* ctx,
                                                  const v1::CancelRequest* request,
                                                  v1::CancelResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  auto tasks = manager_.Cancel(request->task_ids());
  if (tasks.ok()) CopyTasks(*tasks, response->mutable_tasks());
  reactor->Finish(ToGrpc(tasks.status()));
  return reactor;
}

grpc::ServerUnaryReactor* TaskServiceImpl::List(grpc::CallbackServerContext* ctx,
                                                const v1::ListRequest* request,
                                                v1::ListResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  auto tasks = manager_.List(*request);
  CopyTasks(tasks, response->mutable_tasks());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::TaskEvent>* TaskServiceImpl::Watch(grpc::CallbackServerContext* ctx,
                                                                const v1::WatchRequest* request) {
  return new WatchReactor(manager_, request);
}

grpc::ServerUnaryReactor* TaskServiceImpl::GetStats(grpc::CallbackServerContext* ctx,
                                                    const v1::GetStatsRequest* request,
                                                    v1::Stats* response) {
  auto* reactor = ctx->DefaultReactor();
  *response = manager_.GetStats();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* TaskServiceImpl::ListHandlers(grpc::CallbackServerContext* ctx,
                                                        const v1::ListHandlersRequest* request,
                                                        v1::ListHandlersResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  for (auto& h : manager_.Handlers()) *response->add_handlers() = std::move(h);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace taskrt::daemon
