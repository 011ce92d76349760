// Test-only plugin for the plugin API itself (tests/plugins/plugin_test.cc). Built with
// -fvisibility=hidden: it loads only if TASKRT_PLUGIN exports its entry points anyway.
// Never shipped.
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "taskrt/handler.h"

namespace {

// Polls ctx.cancelled() for at most 60 s (then fails), and returns OK once it is true:
// the mistake taskrt/handler.h warns about. The task must still end TIMED_OUT.
absl::StatusOr<std::string> LateOk(taskrt::TaskContext& ctx, std::string_view) {
  for (int i = 0; i < 60'000; ++i) {
    if (ctx.cancelled()) return std::string("finished anyway");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return absl::InternalError("test_api.late_ok: never cancelled");
}

// Answers "waited" after 50 ms, from a timer of the worker's loop.
void AsyncAfter(std::shared_ptr<taskrt::AsyncTask> task) {
  task->After(absl::Milliseconds(50), [task] { task->Finish("waited " + task->input()); });
}

// Finishes OK when cancelled (or at its deadline): must still end TIMED_OUT/CANCELLED.
void AsyncLateOk(std::shared_ptr<taskrt::AsyncTask> task) {
  task->OnCancel([task] { task->Finish(std::string("finished anyway")); });
}

// Its timer callback throws: the task fails, the worker goes on.
void AsyncThrow(std::shared_ptr<taskrt::AsyncTask> task) {
  task->After(absl::Milliseconds(1), [] { throw std::runtime_error("thrown on purpose"); });
}

// Finishes from a thread of its own, not the loop's.
void AsyncFromThread(std::shared_ptr<taskrt::AsyncTask> task) {
  std::thread([task] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    task->Finish("from a thread");
  }).detach();
}

}  // namespace

TASKRT_PLUGIN(registry) {
  registry.Register(
      {"test_api.late_ok", taskrt::ClassHint::kIo, "returns OK once cancelled (wrongly)", LateOk});
  registry.RegisterAsync(
      {"test_api.async_after", taskrt::ClassHint::kIo, "answers after 50 ms", AsyncAfter});
  registry.RegisterAsync({"test_api.async_late_ok", taskrt::ClassHint::kIo,
                          "finishes OK once cancelled (wrongly)", AsyncLateOk});
  registry.RegisterAsync(
      {"test_api.async_throw", taskrt::ClassHint::kIo, "its timer callback throws", AsyncThrow});
  registry.RegisterAsync({"test_api.async_thread", taskrt::ClassHint::kIo,
                          "finishes from another thread", AsyncFromThread});
}
