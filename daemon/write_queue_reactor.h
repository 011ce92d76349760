// WriteQueueReactor: the shape of the daemon's server-streaming calls (Watch, Logs).
// Messages are queued from any thread (the task manager's sinks, under its lock) and
// written one at a time, the front of the queue being the one in flight; the call
// finishes once, with an error at once, or OK after what is queued has been written.
#ifndef TASKRT_DAEMON_WRITE_QUEUE_REACTOR_H_
#define TASKRT_DAEMON_WRITE_QUEUE_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"

namespace taskrt::daemon {

template <typename Message>
class WriteQueueReactor : public grpc::ServerWriteReactor<Message> {
 public:
  void OnWriteDone(bool ok) override {
    internal::MutexLock lock(&mu_);
    Written(queue_.front());
    queue_.pop_front();
    if (!ok) {
      FinishLocked(grpc::Status::OK);  // the client went away
      return;
    }
    if (!queue_.empty() && !finished_) {
      this->StartWrite(&queue_.front());
      return;
    }
    writing_ = false;
    if (finish_when_written_) FinishLocked(grpc::Status::OK);
  }
  void OnCancel() override {
    internal::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::OK);
  }

 protected:
  // Queues `message`, writing it at once when no write is in flight.
  void EnqueueLocked(Message message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      this->StartWrite(&queue_.front());
    }
  }
  // Finishes OK once everything queued has been written.
  void FinishWhenWrittenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    finish_when_written_ = true;
    if (!writing_) FinishLocked(grpc::Status::OK);
  }
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    this->Finish(std::move(status));
  }
  // Called as each message has been written (e.g. to count a backlog down).
  virtual void Written(const Message& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}
  size_t queued() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.size(); }
  bool finished() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_; }

  internal::Mutex mu_;

 private:
  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_when_written_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_WRITE_QUEUE_REACTOR_H_
