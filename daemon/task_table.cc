#include "daemon/task_table.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "daemon/validation.h"

namespace taskrt::daemon {

TaskTable::TaskTable(std::string id_prefix, size_t max_retained)
    : id_prefix_(std::move(id_prefix)), max_retained_(max_retained) {}

std::string TaskTable::KeyIndex(absl::string_view owner, absl::string_view key) {
  return absl::StrCat(owner, "\n", key);
}

TaskRecord& TaskTable::Create(const std::string& owner, uint64_t* seq) {
  *seq = next_seq_++;
  TaskRecord& r = tasks_[*seq];
  r.task.set_id(absl::StrCat(id_prefix_, "-", *seq));
  r.task.set_owner(owner);
  r.task.set_state(v1::TASK_STATE_QUEUED);
  Count(r.task, +1);
  return r;
}

void TaskTable::Index(const TaskRecord& r, uint64_t seq) {
  const std::string& key = r.task.spec().idempotency_key();
  if (!key.empty()) by_key_[KeyIndex(r.task.owner(), key)] = seq;
}

TaskRecord& TaskTable::Restore(uint64_t seq, v1::Task task) {
  next_seq_ = std::max(next_seq_, seq + 1);
  TaskRecord& r = tasks_[seq];
  r.task = std::move(task);
  Count(r.task, +1);
  Index(r, seq);
  if (IsFinal(r.task.state())) retained_.push_back(seq);
  return r;
}

void TaskTable::Withdraw(uint64_t seq) {
  auto it = tasks_.find(seq);
  if (it == tasks_.end()) return;
  const std::string& key = it->second.task.spec().idempotency_key();
  if (!key.empty()) by_key_.erase(KeyIndex(it->second.task.owner(), key));
  Count(it->second.task, -1);
  tasks_.erase(it);
}

absl::StatusOr<uint64_t> TaskTable::Find(const std::string& id) const {
  // An id is "<prefix>-<seq>" (the prefix of the daemon run that accepted it): parse,
  // look up, compare.
  const size_t dash = id.rfind('-');
  uint64_t seq = 0;
  if (dash != std::string::npos && absl::SimpleAtoi(absl::string_view(id).substr(dash + 1), &seq)) {
    auto it = tasks_.find(seq);
    if (it != tasks_.end() && it->second.task.id() == id) return seq;
  }
  return NotFound(id);
}

absl::Status TaskTable::NotFound(const std::string& id) const {
  return absl::NotFoundError(absl::StrCat("task ", QuoteInput(id),
                                          " not found (the daemon keeps the last ", max_retained_,
                                          " finished tasks; see `taskrt list`)"));
}

void TaskTable::SetState(TaskRecord& r, v1::TaskState state) {
  Count(r.task, -1);
  r.task.set_state(state);
  Count(r.task, +1);
}

void TaskTable::Count(const v1::Task& task, int delta) {
  by_state_[task.state()] += delta;
  auto& counts = owners_[task.owner()];
  counts[task.state()] += delta;
  if (delta < 0 && std::all_of(counts.begin(), counts.end(), [](uint64_t n) { return n == 0; })) {
    owners_.erase(task.owner());
  }
}

std::optional<uint64_t> TaskTable::FindKey(absl::string_view owner, absl::string_view key) const {
  if (key.empty()) return std::nullopt;
  auto it = by_key_.find(KeyIndex(owner, key));
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

void TaskTable::Retain(uint64_t seq, std::vector<uint64_t>* erased) {
  retained_.push_back(seq);
  Trim(erased);
}

void TaskTable::Trim(std::vector<uint64_t>* erased) {
  // Bounded: a task still waited on goes to the back instead of away.
  for (size_t n = retained_.size(); n > 0 && retained_.size() > max_retained_; --n) {
    Drop(retained_.front(), erased);
  }
}

void TaskTable::Evict(int64_t oldest_us, int limit, std::vector<uint64_t>* erased) {
  for (int i = 0; i < limit && !retained_.empty(); ++i) {
    auto it = tasks_.find(retained_.front());
    if (it != tasks_.end() && it->second.task.decision().finished_unix_us() > oldest_us) break;
    Drop(retained_.front(), erased);
  }
}

void TaskTable::Drop(uint64_t seq, std::vector<uint64_t>* erased) {
  retained_.pop_front();
  auto it = tasks_.find(seq);
  if (it == tasks_.end()) return;
  if (!it->second.waiters.empty()) {
    retained_.push_back(seq);  // still referenced by a wait: keep it a little longer
    return;
  }
  const std::string& key = it->second.task.spec().idempotency_key();
  if (!key.empty()) {
    auto k = by_key_.find(KeyIndex(it->second.task.owner(), key));
    if (k != by_key_.end() && k->second == seq) by_key_.erase(k);
  }
  erased->push_back(seq);
  Count(it->second.task, -1);
  tasks_.erase(it);
}

}  // namespace taskrt::daemon
