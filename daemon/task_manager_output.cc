// TaskManager: the live output of running commands (FollowOutput, `taskrt logs -f`,
// `taskrt exec --wait`). The worker streams what a sys.exec command writes (the bytes
// its result keeps) as TaskOutput frames ahead of the result; the manager keeps them
// for the current run and hands them to followers, all under mu_.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "daemon/task_manager.h"

namespace taskrt::daemon {

void TaskManager::OnOutput(int worker, const RunSlot& run, const v1::internal::TaskOutput& output) {
  mu_.AssertHeld();
  TaskRecord* r = table_.find(run.seq);
  if (r == nullptr || r->run_id != run.run_id || IsFinal(r->task.state())) return;
  OutputLog& log = output_logs_[run.seq];
  if (log.run_id != run.run_id) log = OutputLog{run.run_id, {}};  // a retry starts afresh
  if (!log.chunks.empty() && log.chunks.back().is_stderr == output.is_stderr()) {
    log.chunks.back().data += output.data();
  } else {
    log.chunks.push_back(OutputEvent{output.is_stderr(), output.data(), false});
  }
  if (output_followers_.empty()) return;
  const OutputEvent event{output.is_stderr(), output.data(), false};
  for (auto& [handle, f] : output_followers_) {
    if (f.seq == run.seq) f.sink(event);
  }
}

void TaskManager::EndOutputLocked(uint64_t seq) {
  output_logs_.erase(seq);
  if (output_followers_.empty()) return;
  for (auto it = output_followers_.begin(); it != output_followers_.end();) {
    if (it->second.seq != seq) {
      ++it;
      continue;
    }
    it->second.sink(OutputEvent{false, "", true});
    it = output_followers_.erase(it);
  }
}

absl::StatusOr<uint64_t> TaskManager::FollowOutput(const Caller& caller, const std::string& id,
                                                   bool follow, OutputSink sink) {
  OpLock lock(this);
  ASSIGN_OR_RETURN(const uint64_t seq, FindOwnedLocked(caller, id));
  const TaskRecord& r = table_.at(seq);
  // Only a task that is running (or may still run) has more to come.
  const bool more = follow && !IsFinal(r.task.state());
  if (more && output_followers_.size() >= options_.max_watchers) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the daemon has ", output_followers_.size(),
                     " output followers, the limit (taskrtd --max-watchers); close one and retry"));
  }
  auto log = output_logs_.find(seq);
  if (log != output_logs_.end() && log->second.run_id == r.run_id) {
    for (const OutputEvent& chunk : log->second.chunks) sink(chunk);
  }
  if (!more) {
    sink(OutputEvent{false, "", true});
    return 0;
  }
  const uint64_t handle = next_follower_++;
  output_followers_[handle] = OutputFollower{seq, std::move(sink)};
  return handle;
}

void TaskManager::Unfollow(uint64_t handle) {
  if (handle == 0) return;
  OpLock lock(this);
  output_followers_.erase(handle);
}

}  // namespace taskrt::daemon
