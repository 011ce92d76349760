// OperationBatch: what one operation of the task manager (one hold of its mutex)
// changed and must hand on when it ends: task rows for the journal, frames for workers
// (sent only once the journal holds the state they follow from), and callbacks
// (answers to waiters, results for `each`), run after the mutex is released and, with
// a journal, once it holds what they report. Not thread-safe: it lives under the
// manager's mutex; TaskManager::OpLock ends it.
#ifndef TASKRT_DAEMON_OPERATION_H_
#define TASKRT_DAEMON_OPERATION_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/frame.h"
#include "daemon/waiter_set.h"
#include "taskrt/v1/worker.pb.h"

namespace taskrt::daemon {

// Encoded frames for one worker process.
struct StagedFrames {
  int worker = -1;
  pid_t pid = -1;
  std::string bytes;
};

class OperationBatch {
 public:
  // Task rows to write (each once: the caller dedupes with TaskRecord::dirty) and rows
  // to delete.
  void Persist(uint64_t seq) { dirty_.push_back(seq); }
  const std::vector<uint64_t>& dirty() const { return dirty_; }
  std::vector<uint64_t>& erased() { return erased_; }
  // The journal may commit this operation's rows without fsync (a Run's acceptance:
  // the fsync of its final state, which Run waits for, covers them).
  void RelaxSync() { relaxed_ = true; }

  void Stage(int worker, pid_t pid, const v1::internal::WorkerFrame& frame) {
    for (StagedFrames& s : staged_) {
      if (s.worker == worker && s.pid == pid) return internal::AppendFrame(frame, &s.bytes);
    }
    staged_.push_back({worker, pid, {}});
    internal::AppendFrame(frame, &staged_.back().bytes);
  }

  void Defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }
  // Results that become final in one operation reach their callback together (a
  // Stream sends them in one message).
  void DeferResult(const std::shared_ptr<ResultCallback>& each, v1::TaskResult result) {
    for (auto& [fn, results] : results_) {
      if (fn == each) return results.push_back(std::move(result));
    }
    results_.emplace_back(each, std::vector<v1::TaskResult>{std::move(result)});
  }

  bool has_rows() const { return !dirty_.empty() || !erased_.empty(); }
  std::vector<uint64_t> TakeDirty() { return std::exchange(dirty_, {}); }
  std::vector<uint64_t> TakeErased() { return std::exchange(erased_, {}); }
  bool TakeRelaxed() { return std::exchange(relaxed_, false); }
  std::vector<StagedFrames> TakeStaged() { return std::exchange(staged_, {}); }
  std::vector<std::function<void()>> TakeCallbacks() {
    for (auto& [fn, results] : results_) {
      deferred_.push_back([fn = std::move(fn), results = std::move(results)]() mutable {
        (*fn)(std::move(results));
      });
    }
    results_.clear();
    return std::exchange(deferred_, {});
  }

 private:
  std::vector<uint64_t> dirty_, erased_;
  bool relaxed_ = false;
  std::vector<StagedFrames> staged_;
  std::vector<std::function<void()>> deferred_;
  std::vector<std::pair<std::shared_ptr<ResultCallback>, std::vector<v1::TaskResult>>> results_;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_OPERATION_H_
