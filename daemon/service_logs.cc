// TaskService.Logs: a running command's output as it is written (TaskManager::
// FollowOutput). The manager's sink (under its lock) queues chunks; one write is in
// flight at a time; the stream finishes once the end was written. What is queued is
// bounded by what the command's result keeps (the worker streams nothing past
// --max-output-bytes of each stream).
#include <deque>

#include "common/mutex.h"
#include "daemon/service.h"
#include "daemon/validation.h"

namespace taskrt::daemon {
namespace {

class LogsReactor final : public grpc::ServerWriteReactor<v1::OutputChunk> {
 public:
  LogsReactor(TaskManager& manager, const Caller& caller, const v1::LogsRequest& request)
      : manager_(manager) {
    if (absl::Status s = ValidateTaskId(request.task_id(), ValidationLimits()); !s.ok()) {
      internal::MutexLock lock(&mu_);
      FinishLocked(ToGrpc(s));
      return;
    }
    StartSendInitialMetadata();
    auto handle = manager_.FollowOutput(caller, request.task_id(), request.follow(),
                                        [this](const OutputEvent& e) { Push(e); });
    internal::MutexLock lock(&mu_);
    if (!handle.ok()) {
      FinishLocked(ToGrpc(handle.status()));
      return;
    }
    handle_ = *handle;
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
      return;
    }
    writing_ = false;
    if (ended_) FinishLocked(grpc::Status::OK);
  }
  void OnCancel() override {
    internal::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::OK);
  }
  void OnDone() override {
    manager_.Unfollow(handle_);
    delete this;
  }

 private:
  void Push(const OutputEvent& event) {
    internal::MutexLock lock(&mu_);
    if (finished_) return;
    if (event.end) {
      ended_ = true;
      if (!writing_) FinishLocked(grpc::Status::OK);
      return;
    }
    v1::OutputChunk chunk;
    chunk.set_data(event.data);
    chunk.set_is_stderr(event.is_stderr);
    queue_.push_back(std::move(chunk));
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
  uint64_t handle_ = 0;  // set before any callback can read it (OnDone follows Finish)
  internal::Mutex mu_;
  std::deque<v1::OutputChunk> queue_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::OutputChunk>* NewLogsReactor(TaskManager& manager,
                                                          const Caller& caller,
                                                          const v1::LogsRequest& request) {
  return new LogsReactor(manager, caller, request);
}

}  // namespace taskrt::daemon
