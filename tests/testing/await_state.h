// File: tests/testing/await_state.h
//
// A bounded poll for a task's state, instead of a hand-written Get-and-sleep loop:
//
//   ASSERT_THAT(AwaitState(*client, id, v1::TASK_STATE_RUNNING), IsOk());
//
// Thread-safety: as the Client (it only calls Get).
#ifndef TASKRT_TESTS_TESTING_AWAIT_STATE_H_
#define TASKRT_TESTS_TESTING_AWAIT_STATE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "taskrt/client.h"

namespace taskrt::testing {

// Polls client.Get(id) every 10 ms until the task is in `state`, and returns it then.
// Errors: FAILED_PRECONDITION when the task reached another final state first (it can
// no longer get there); DEADLINE_EXCEEDED, with the last state seen, after `timeout`;
// the error of Get when it fails.
absl::StatusOr<v1::Task> AwaitState(Client& client, const std::string& id, v1::TaskState state,
                                    absl::Duration timeout = absl::Seconds(10));

}  // namespace taskrt::testing

#endif  // TASKRT_TESTS_TESTING_AWAIT_STATE_H_
