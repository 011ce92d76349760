// WaiterSet: the open waits on tasks — Wait calls (one answer once all their tasks are
// final) and per-task result callbacks (Submit's `each`, one call per result) — with
// their own timeouts. Not thread-safe: the task manager guards it with its mutex and
// calls the callbacks after releasing it.
#ifndef TASKRT_DAEMON_WAITER_SET_H_
#define TASKRT_DAEMON_WAITER_SET_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "taskrt/v1/service.pb.h"

namespace taskrt::daemon {

using WaitCallback = std::function<void(absl::StatusOr<std::vector<v1::Task>>)>;
// The results of tasks that became final together (one or more).
using ResultCallback = std::function<void(std::vector<v1::TaskResult>)>;

struct Waiter {
  std::vector<uint64_t> seqs;            // the tasks waited on (Wait: all of them, in order)
  size_t remaining = 0;                  // ...not final yet
  WaitCallback done;                     // a Wait: called once
  std::shared_ptr<ResultCallback> each;  // or a per-task wait: called per result
  int64_t deadline_us = 0;               // 0 = none
};

class WaiterSet {
 public:
  // A new waiter; its handle is never 0.
  std::pair<uint64_t, Waiter*> Add();
  Waiter* find(uint64_t handle) {
    auto it = waiters_.find(handle);
    return it == waiters_.end() ? nullptr : &it->second;
  }
  // Removes the waiter and its timeout; nullopt when unknown.
  std::optional<Waiter> Take(uint64_t handle);
  // Makes the waiter time out at `deadline_us`.
  void SetDeadline(uint64_t handle, int64_t deadline_us);
  // The handles whose timeout is at or before `now_us` (their timeouts are removed; the
  // waiters stay until taken).
  std::vector<uint64_t> Due(int64_t now_us);
  // Every waiter (for shutdown).
  std::unordered_map<uint64_t, Waiter> TakeAll();
  size_t size() const { return waiters_.size(); }

 private:
  uint64_t next_handle_ = 1;
  std::unordered_map<uint64_t, Waiter> waiters_;
  std::set<std::pair<int64_t, uint64_t>> deadlines_;  // (deadline_us, handle)
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_WAITER_SET_H_
