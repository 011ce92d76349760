// TaskService.Logs: a running command's output as it is written (TaskManager::
// FollowOutput). The manager's sink (under its lock) queues chunks; one write is in
// flight at a time; the stream finishes once the end was written. What is queued is
// bounded by what the command's result keeps (the worker streams nothing past
// --max-output-bytes of each stream).
#include "daemon/service.h"
#include "daemon/validation.h"
#include "daemon/write_queue_reactor.h"

namespace taskrt::daemon {
namespace {

class LogsReactor final : public WriteQueueReactor<v1::OutputChunk> {
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

  void OnDone() override {
    manager_.Unfollow(handle_);
    delete this;
  }

 private:
  void Push(const OutputEvent& event) {
    internal::MutexLock lock(&mu_);
    if (finished()) return;
    if (event.end) return FinishWhenWrittenLocked();
    v1::OutputChunk chunk;
    chunk.set_data(event.data);
    chunk.set_is_stderr(event.is_stderr);
    EnqueueLocked(std::move(chunk));
  }

  TaskManager& manager_;
  uint64_t handle_ = 0;  // set before any callback can read it (OnDone follows Finish)
};

}  // namespace

grpc::ServerWriteReactor<v1::OutputChunk>* NewLogsReactor(TaskManager& manager,
                                                          const Caller& caller,
                                                          const v1::LogsRequest& request) {
  return new LogsReactor(manager, caller, request);
}

}  // namespace taskrt::daemon
