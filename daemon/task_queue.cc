#include "daemon/task_queue.h"

namespace taskrt::daemon {

void TaskQueue::Push(uint64_t key, int32_t priority) {
  if (where_.count(key) != 0) return;
  const Position pos{-static_cast<int64_t>(priority), arrivals_++};
  order_.emplace(pos, key);
  where_.emplace(key, pos);
}

std::optional<uint64_t> TaskQueue::Pop() {
  if (order_.empty()) return std::nullopt;
  auto it = order_.begin();
  const uint64_t key = it->second;
  where_.erase(key);
  order_.erase(it);
  return key;
}

std::optional<uint64_t> TaskQueue::Peek() const {
  if (order_.empty()) return std::nullopt;
  return order_.begin()->second;
}

bool TaskQueue::Remove(uint64_t key) {
  auto it = where_.find(key);
  if (it == where_.end()) return false;
  order_.erase(it->second);
  where_.erase(it);
  return true;
}

}  // namespace taskrt::daemon
