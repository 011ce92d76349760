#include "daemon/waiter_set.h"

namespace taskrt::daemon {

std::pair<uint64_t, Waiter*> WaiterSet::Add() {
  const uint64_t handle = next_handle_++;
  return {handle, &waiters_[handle]};
}

std::optional<Waiter> WaiterSet::Take(uint64_t handle) {
  auto it = waiters_.find(handle);
  if (it == waiters_.end()) return std::nullopt;
  Waiter w = std::move(it->second);
  waiters_.erase(it);
  if (w.deadline_us > 0) deadlines_.erase({w.deadline_us, handle});
  return w;
}

void WaiterSet::SetDeadline(uint64_t handle, int64_t deadline_us) {
  Waiter* w = find(handle);
  if (w == nullptr) return;
  if (w->deadline_us > 0) deadlines_.erase({w->deadline_us, handle});
  w->deadline_us = deadline_us;
  deadlines_.emplace(deadline_us, handle);
}

std::vector<uint64_t> WaiterSet::Due(int64_t now_us) {
  std::vector<uint64_t> due;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now_us) {
    const uint64_t handle = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    if (Waiter* w = find(handle); w != nullptr) {
      w->deadline_us = 0;
      due.push_back(handle);
    }
  }
  return due;
}

std::unordered_map<uint64_t, Waiter> WaiterSet::TakeAll() {
  deadlines_.clear();
  return std::exchange(waiters_, {});
}

}  // namespace taskrt::daemon
