// A pool's run queue: highest priority first, FIFO within a priority, with removal by
// key (for cancellation). Not thread-safe: the scheduler guards it.
#ifndef TASKRT_DAEMON_TASK_QUEUE_H_
#define TASKRT_DAEMON_TASK_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>

#include "absl/container/flat_hash_map.h"

namespace taskrt::daemon {

class TaskQueue {
 public:
  // Adds `key` (a task's sequence number, unique). Keys already queued are ignored.
  void Push(uint64_t key, int32_t priority);
  // Removes and returns the next key, or nullopt when empty.
  std::optional<uint64_t> Pop();
  // The next key without removing it.
  std::optional<uint64_t> Peek();
  // Removes `key`; false when it was not queued.
  bool Remove(uint64_t key);
  size_t size() const { return queued_.size(); }
  bool empty() const { return queued_.empty(); }

 private:
  // Drops removed keys from the front of the first lane (and empty lanes).
  void SkipRemoved();

  struct Entry {
    uint64_t key;
    uint64_t arrival;
  };
  bool Live(const Entry& e) const {
    auto it = queued_.find(e.key);
    return it != queued_.end() && it->second == e.arrival;
  }

  // A queue may hold a million tasks, so an entry costs ~40 bytes: a FIFO lane per
  // priority (highest first) and a map of what is queued to its arrival number. Remove
  // only forgets the key; the lane entry is dropped when it reaches the front (the
  // arrival number tells it from the entry of the same key pushed again later).
  std::map<int32_t, std::deque<Entry>, std::greater<int32_t>> lanes_;
  absl::flat_hash_map<uint64_t, uint64_t> queued_;
  uint64_t arrivals_ = 0;
  size_t removed_in_lanes_ = 0;  // lane entries whose key was removed
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_TASK_QUEUE_H_
