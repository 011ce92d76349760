// TaskTable: every task the daemon knows — unfinished ones and the retained final
// ones — with the index of idempotency keys, the counts by state (per owner too) and
// the retention of final tasks (max_retained, and an age limit applied by Evict).
//
// Cost: a record is the v1::Task plus ~100 bytes; lookups by id parse the id (its
// sequence number is the key), so there is no second index. Not thread-safe: the task
// manager guards it with its mutex.
#ifndef TASKRT_DAEMON_TASK_TABLE_H_
#define TASKRT_DAEMON_TASK_TABLE_H_

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/task_state.h"
#include "daemon/pool.h"
#include "taskrt/v1/task.pb.h"

namespace taskrt::daemon {

struct TaskRecord {
  v1::Task task;
  bool async = false;   // the handler runs on the async loop
  bool python = false;  // the handler runs in a Python worker
  PoolKind pool = PoolKind::kCpu;
  int worker = -1;      // the worker holding it while RUNNING (WorkerPool id), else -1
  uint64_t run_id = 0;  // the current dispatch; results of older ones are stale
  int64_t deadline_us = 0;
  std::vector<uint64_t> waiters;  // handles in the manager's WaiterSet
  bool dirty = false;             // changed since the journal last got it
};

using internal::IsFinal;

using StateCounts = std::array<uint64_t, v1::TaskState_ARRAYSIZE>;

class TaskTable {
 public:
  TaskTable(std::string id_prefix, size_t max_retained);

  // A new task (QUEUED) of `owner`: its sequence number and id "<prefix>-<seq>" set.
  TaskRecord& Create(const std::string& owner, uint64_t* seq);
  // A task read back from the journal (any state), keeping its id and sequence number.
  TaskRecord& Restore(uint64_t seq, v1::Task task);
  // Forgets a task that was never accepted (its acceptance did not reach the journal).
  void Withdraw(uint64_t seq);

  TaskRecord& at(uint64_t seq) { return tasks_.at(seq); }
  TaskRecord* find(uint64_t seq) {
    auto it = tasks_.find(seq);
    return it == tasks_.end() ? nullptr : &it->second;
  }
  // The task of `id`; NOT_FOUND (saying how many final tasks are kept) when unknown.
  absl::StatusOr<uint64_t> Find(const std::string& id) const;
  absl::Status NotFound(const std::string& id) const;
  // Every state change goes through here (the counts).
  void SetState(TaskRecord& r, v1::TaskState state);

  // Indexes the task's idempotency key (after its spec is set).
  void IndexKey(uint64_t seq) { Index(tasks_.at(seq), seq); }
  // The task (owner, idempotency key) names, if any.
  std::optional<uint64_t> FindKey(absl::string_view owner, absl::string_view key) const;

  // `seq` became final: it is retained, and the oldest retained beyond max_retained
  // are dropped; their sequence numbers are appended to `erased` (journal rows to delete).
  void Retain(uint64_t seq, std::vector<uint64_t>* erased);
  // Drops the oldest retained tasks beyond max_retained (after Restore).
  void Trim(std::vector<uint64_t>* erased);
  // Drops up to `limit` retained tasks that finished before `oldest_us`.
  void Evict(int64_t oldest_us, int limit, std::vector<uint64_t>* erased);

  uint64_t unfinished() const {
    return by_state_[v1::TASK_STATE_QUEUED] + by_state_[v1::TASK_STATE_RUNNING];
  }
  const StateCounts& by_state() const { return by_state_; }
  // Per owner; an owner with no task left has no entry.
  const absl::flat_hash_map<std::string, StateCounts>& owners() const { return owners_; }
  // Oldest first (by sequence number).
  const std::map<uint64_t, TaskRecord>& tasks() const { return tasks_; }
  size_t max_retained() const { return max_retained_; }
  const std::string& id_prefix() const { return id_prefix_; }

 private:
  static std::string KeyIndex(absl::string_view owner, absl::string_view key);
  void Count(const v1::Task& task, int delta);
  void Drop(uint64_t seq, std::vector<uint64_t>* erased);
  void Index(const TaskRecord& r, uint64_t seq);

  const std::string id_prefix_;
  const size_t max_retained_;
  uint64_t next_seq_ = 1;
  std::map<uint64_t, TaskRecord> tasks_;
  // KeyIndex(owner, idempotency key) -> task: keys are per owner.
  absl::flat_hash_map<std::string, uint64_t> by_key_;
  std::deque<uint64_t> retained_;  // final tasks, in order of finishing
  StateCounts by_state_ = {};
  absl::flat_hash_map<std::string, StateCounts> owners_;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_TASK_TABLE_H_
