#include "daemon/task_queue.h"

namespace taskrt::daemon {

void TaskQueue::Push(uint64_t key, int32_t priority) {
  auto [it, fresh] = queued_.try_emplace(key, arrivals_);
  if (!fresh) return;
  lanes_[priority].push_back(Entry{key, arrivals_++});
}

void TaskQueue::SkipRemoved() {
  while (!lanes_.empty()) {
    std::deque<Entry>& lane = lanes_.begin()->second;
    while (!lane.empty() && !Live(lane.front())) {
      lane.pop_front();
      --removed_in_lanes_;
    }
    if (!lane.empty()) return;
    lanes_.erase(lanes_.begin());
  }
}

std::optional<uint64_t> TaskQueue::Pop() {
  SkipRemoved();
  if (lanes_.empty()) return std::nullopt;
  std::deque<Entry>& lane = lanes_.begin()->second;
  const uint64_t key = lane.front().key;
  lane.pop_front();
  queued_.erase(key);
  if (lane.empty()) lanes_.erase(lanes_.begin());
  return key;
}

std::optional<uint64_t> TaskQueue::Peek() {
  SkipRemoved();
  if (lanes_.empty()) return std::nullopt;
  return lanes_.begin()->second.front().key;
}

bool TaskQueue::Remove(uint64_t key) {
  if (queued_.erase(key) == 0) return false;
  ++removed_in_lanes_;
  // Many removals (a mass cancel) would leave lanes full of dead entries: compact.
  if (removed_in_lanes_ > 1024 && removed_in_lanes_ > queued_.size()) {
    for (auto it = lanes_.begin(); it != lanes_.end();) {
      std::deque<Entry> kept;
      for (const Entry& e : it->second) {
        if (Live(e)) kept.push_back(e);
      }
      if (kept.empty()) {
        it = lanes_.erase(it);
      } else {
        it->second.swap(kept);
        ++it;
      }
    }
    removed_in_lanes_ = 0;
  }
  return true;
}

}  // namespace taskrt::daemon
