// taskrt-example-app: the three ways to wait for a task with the C++ client SDK.
//
//   taskrtd &                      # or: taskrtd --socket /tmp/t.sock &
//   taskrt-example-app             # or: taskrt-example-app --socket /tmp/t.sock
//
// 1. Run(): submit and block until the result is there.
// 2. Submit() + WaitAsync(): a callback runs on the client's completion thread when the
//    task is final.
// 3. Submit() + WaitFuture(): a std::future to collect later.
// Every result carries the scheduling decision; ExplainDecision() puts it in words.
//
// Exits 0 when every task succeeded, 1 with a message otherwise.
#include <cstdlib>
#include <future>
#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "taskrt/client.h"

namespace {

// No wait below should ever take this long; it keeps a wedged daemon from hanging us.
constexpr absl::Duration kWaitTimeout = absl::Seconds(60);

// Prints a finished task: its state, output and the decision. A task that reached a
// final state other than SUCCEEDED is turned into an error status.
absl::Status Report(const std::string& title, const absl::StatusOr<taskrt::v1::Task>& task) {
  if (!task.ok()) return task.status();  // the wait itself failed (daemon gone, timeout)
  std::cout << "== " << title << ": " << taskrt::StateName(task->state()) << "\n";
  if (task->state() != taskrt::v1::TASK_STATE_SUCCEEDED) {
    return absl::InternalError(title + " did not succeed: " + task->error().message());
  }
  std::cout << "output: " << task->output() << "\n" << taskrt::ExplainDecision(*task) << "\n";
  return absl::OkStatus();
}

absl::Status RunExamples(const taskrt::ClientOptions& options) {
  // Connect fails fast (UNAVAILABLE, saying how to start taskrtd) if nothing listens.
  absl::StatusOr<std::unique_ptr<taskrt::Client>> client = taskrt::Client::Connect(options);
  if (!client.ok()) return client.status();
  std::cout << "connected to " << (*client)->target() << "\n\n";

  // 1. Blocking. Class AUTO: math.primes is registered as CPU-bound, so the daemon
  //    should pick a cpu-pool process and say "handler-hint" as its reason.
  absl::Status status =
      Report("math.primes (AUTO, Run)",
             (*client)->Run(taskrt::MakeTask("math.primes", R"({"below":200000})"), kWaitTimeout));
  if (!status.ok()) return status;

  // 2. Callback. Submit returns the id at once; WaitAsync's callback runs later on the
  //    client's completion thread. It must not block, so it only stores the result and
  //    notifies.
  absl::StatusOr<std::string> callback_id =
      (*client)->Submit(taskrt::MakeTask("sys.sleep", R"({"ms":200})"));
  if (!callback_id.ok()) return callback_id.status();
  absl::StatusOr<taskrt::v1::Task> callback_result = absl::UnknownError("not called");
  absl::Notification callback_done;
  (*client)->WaitAsync(
      *callback_id,
      [&](absl::StatusOr<taskrt::v1::Task> task) {
        callback_result = std::move(task);
        callback_done.Notify();
      },
      kWaitTimeout);

  // 3. Future. Submitted while the first sleep is still running: both overlap on the
  //    io pool's async loop, so together they take about 200 ms, not 400 ms.
  absl::StatusOr<std::string> future_id =
      (*client)->Submit(taskrt::MakeTask("sys.sleep", R"({"ms":200})"));
  if (!future_id.ok()) {
    callback_done.WaitForNotification();  // the callback refers to our locals
    return future_id.status();
  }
  std::future<absl::StatusOr<taskrt::v1::Task>> future =
      (*client)->WaitFuture(*future_id, kWaitTimeout);

  // The callback is always called (with an error if the wait failed), and the wait has
  // a timeout, so this cannot block forever.
  callback_done.WaitForNotification();
  status = Report("sys.sleep (AUTO, WaitAsync)", callback_result);
  if (!status.ok()) return status;
  return Report("sys.sleep (AUTO, WaitFuture)", future.get());
}

}  // namespace

int main(int argc, char** argv) {
  taskrt::ClientOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--socket" && i + 1 < argc) {
      options.socket_path = argv[++i];
    } else if (arg.rfind("--socket=", 0) == 0) {
      options.socket_path = arg.substr(9);
    } else {
      std::cerr << "usage: " << argv[0] << " [--socket PATH]\n"
                << "  PATH defaults to " << taskrt::DefaultSocketPath() << "\n";
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  const absl::Status status = RunExamples(options);
  if (!status.ok()) {
    std::cerr << "taskrt-example-app: " << status << "\n";
    return 1;
  }
  return 0;
}
