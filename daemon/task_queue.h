// A pool's run queue: highest priority first, FIFO within a priority, with removal by
// key (for cancellation). Not thread-safe: the scheduler guards it.
#ifndef TASKRT_DAEMON_TASK_QUEUE_H_
#define TASKRT_DAEMON_TASK_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>

namespace taskrt::daemon {

class TaskQueue {
 public:
  // Adds `key` (a task's sequence number, unique). Keys already queued are ignored.
  void Push(uint64_t key, int32_t priority);
  // Removes and returns the next key, or nullopt when empty.
  std::optional<uint64_t> Pop();
  // The next key without removing it.
  std::optional<uint64_t> Peek() const;
  // Removes `key`; false when it was not queued.
  bool Remove(uint64_t key);
  size_t size() const { return order_.size(); }
  bool empty() const { return order_.empty(); }

 private:
  // (-priority, arrival) sorts highest priority first, then oldest.
  using Position = std::tuple<int64_t, uint64_t>;
  std::map<Position, uint64_t> order_;
  std::unordered_map<uint64_t, Position> where_;
  uint64_t arrivals_ = 0;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_TASK_QUEUE_H_
