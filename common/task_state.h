// What a task's state means, for every piece that has to ask (daemon, journal, SDK).
// Internal to taskrt; the SDK's public taskrt::IsFinal (taskrt/client.h) calls this one.
// Header-only, so that a library holding only the generated protos can use it.
#ifndef TASKRT_COMMON_TASK_STATE_H_
#define TASKRT_COMMON_TASK_STATE_H_

#include "taskrt/v1/task.pb.h"

namespace taskrt::internal {

// True for SUCCEEDED, FAILED, CANCELLED and TIMED_OUT: the task will not run again and
// its result does not change.
inline bool IsFinal(v1::TaskState state) {
  switch (state) {
    case v1::TASK_STATE_SUCCEEDED:
    case v1::TASK_STATE_FAILED:
    case v1::TASK_STATE_CANCELLED:
    case v1::TASK_STATE_TIMED_OUT:
      return true;
    default:
      return false;
  }
}

}  // namespace taskrt::internal

#endif  // TASKRT_COMMON_TASK_STATE_H_
