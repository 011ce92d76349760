#include "tests/testing/await_state.h"

#include "absl/strings/str_cat.h"
#include "common/task_state.h"

namespace taskrt::testing {

absl::StatusOr<v1::Task> AwaitState(Client& client, const std::string& id, v1::TaskState state,
                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<v1::Task> task = client.Get(id);
    if (!task.ok()) return task.status();
    if (task->state() == state) return task;
    if (internal::IsFinal(task->state())) {
      return absl::FailedPreconditionError(absl::StrCat("task ", id, " ended ",
                                                        StateName(task->state()),
                                                        " before it was seen ", StateName(state)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("task ", id, " was still ", StateName(task->state()), " after ",
                       absl::FormatDuration(timeout), ", not ", StateName(state)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace taskrt::testing
