// Small pieces of the task manager shared by its files: building errors and results,
// the retry backoff, and what a retry keeps of a task's decision.
#ifndef TASKRT_DAEMON_TASK_UTIL_H_
#define TASKRT_DAEMON_TASK_UTIL_H_

#include <cstdint>
#include <string>

#include "daemon/validation.h"
#include "taskrt/v1/service.pb.h"

namespace taskrt::daemon {

struct TaskManagerOptions;

// Separates the routing evidence from what a Python run added (GilEvidence).
inline constexpr char kThisRun[] = "; this run: ";

v1::TaskError MakeError(v1::FailureKind kind, std::string message, bool retryable = false);
// Forgets where and how the previous attempt ran; keeps why the task went where it went.
void ResetRunFields(v1::Decision* d);
v1::TaskResult MakeResult(const v1::Task& t);
// The delay before retry `attempt` + 1: retry_backoff_ms (default 500), doubled per
// attempt, at most 60 s.
int64_t BackoffUs(const v1::TaskSpec& spec, int attempt);
// What callers may send, from the daemon's options (daemon/validation.h).
ValidationLimits LimitsOf(const TaskManagerOptions& o);

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_TASK_UTIL_H_
