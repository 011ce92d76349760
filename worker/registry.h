// The handler registry of one worker process: built-in handlers and plugin handlers.
//
// Two kinds of handler: synchronous ones (taskrt::HandlerFn, built-in or from a plugin)
// run on a thread of the worker's pool; asynchronous ones (built-in LoopHandlerFn, or a
// plugin's taskrt::AsyncHandlerFn adapted to one) start on the worker's event loop and
// complete later without holding a thread (timers, child processes).
// Thread-safety: filled on the main thread before the loop starts, read-only afterwards.
#ifndef TASKRT_WORKER_REGISTRY_H_
#define TASKRT_WORKER_REGISTRY_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "asio/io_context.hpp"
#include "common/frame.h"
#include "taskrt/handler.h"
#include "taskrt/v1/service.pb.h"

namespace taskrt::worker {

// What an asynchronous handler reports when it completes.
struct AsyncResult {
  absl::StatusOr<std::string> output;
  int64_t cpu_time_us = 0;  // CPU used on the task's behalf (e.g. by a child process)
  int64_t peak_rss_kb = 0;  // 0 = report the worker's own peak
  // A command's exit (sys.exec): its status (-1 when a signal ended it) and that signal.
  std::optional<int> exit_code = std::nullopt;
  int exit_signal = 0;
};

// What a handler that returned OK after its task was cancelled or passed its deadline
// reports instead: a cancellation, which the daemon turns into TIMED_OUT or CANCELLED.
absl::Status LateResultError();

// One running asynchronous task. Lives on the loop thread only (but see cancelled()).
class AsyncCall {
 public:
  AsyncCall(std::string task_id, std::string input, int64_t deadline_unix_us,
            std::function<void(AsyncResult)> done)
      : task_id_(std::move(task_id)),
        input_(std::move(input)),
        deadline_unix_us_(deadline_unix_us),
        done_(std::move(done)) {}

  const std::string& task_id() const { return task_id_; }
  const std::string& input() const { return input_; }
  int64_t deadline_unix_us() const { return deadline_unix_us_; }
  // The one method that may be called from any thread (plugins' AsyncTask::cancelled).
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  bool finished() const { return finished_; }

  // The handler's way to stop its work when the task is cancelled or times out.
  // Called at most once, on the loop thread. The handler must still call Finish.
  void set_on_cancel(std::function<void()> fn) { on_cancel_ = std::move(fn); }

  // Completes the task; later calls are ignored. A success after cancellation is
  // reported as cancelled (taskrt/handler.h: a late result is dropped).
  void Finish(AsyncResult result) {
    if (finished_) return;
    finished_ = true;
    on_cancel_ = nullptr;
    if (result.output.ok() && cancelled()) result.output = LateResultError();
    done_(std::move(result));
  }

  // Streams what the task's command wrote so far (sys.exec), in order; the worker sends
  // it to the daemon ahead of the result. A no-op without a sink.
  void EmitOutput(bool is_stderr, std::string_view data) {
    if (on_output_ && !data.empty() && !finished_) on_output_(is_stderr, data);
  }
  void set_on_output(std::function<void(bool, std::string_view)> fn) { on_output_ = std::move(fn); }

  // Requests cancellation (worker side).
  void Cancel() {
    if (cancelled() || finished_) return;
    cancelled_.store(true, std::memory_order_relaxed);
    if (auto fn = std::move(on_cancel_)) fn();
  }

 private:
  const std::string task_id_;
  const std::string input_;
  const int64_t deadline_unix_us_;
  std::function<void(AsyncResult)> done_;
  std::function<void()> on_cancel_;
  std::function<void(bool, std::string_view)> on_output_;
  std::atomic<bool> cancelled_{false};
  bool finished_ = false;
};

using LoopHandlerFn = std::function<void(asio::io_context& loop, std::shared_ptr<AsyncCall> call)>;

struct HandlerEntry {
  v1::HandlerInfo info;
  HandlerFn sync;       // set for thread-pool handlers
  LoopHandlerFn async;  // set for event-loop handlers
};

class Registry : public HandlerRegistry {
 public:
  // From plugins (and synchronous built-ins).
  void Register(HandlerDef def) override;
  // From plugins: the handler gets a taskrt::AsyncTask (worker/plugin_async.h).
  void RegisterAsync(AsyncHandlerDef def) override;
  // Built-in asynchronous handlers, which get the loop and the call itself.
  void RegisterLoop(const std::string& name, ClassHint hint, const std::string& description,
                    LoopHandlerFn fn);

  // Loads a plugin shared object and runs its registration. Errors name the path and
  // the cause (missing file, missing entry point, ABI mismatch, duplicate handler). A
  // path without a '/' is looked up by dlopen's search path (the daemon makes every
  // --plugin path absolute first).
  absl::Status LoadPlugin(const std::string& path);

  const HandlerEntry* Find(const std::string& name) const;
  std::vector<v1::HandlerInfo> List() const;

 private:
  absl::Status AddEntry(HandlerEntry entry);

  std::map<std::string, HandlerEntry> handlers_;
  std::string source_ = "builtin";
  absl::Status registration_error_;
};

// What the built-in handlers are told about the worker's limits.
struct BuiltinOptions {
  // The largest result the worker sends (taskrtd --max-output-bytes): sys.exec keeps at
  // most this much of each of stdout and stderr, and trims them further so that its
  // JSON result fits too.
  size_t max_output_bytes = internal::kDefaultMaxOutputBytes;
};

// Registers sys.noop, sys.sleep, sys.exec, math.primes, hash.sha256 and io.read_file.
void RegisterBuiltins(Registry& registry, const BuiltinOptions& options);
// sys.exec lives in its own file.
void RegisterExecHandler(Registry& registry, const BuiltinOptions& options);

}  // namespace taskrt::worker

#endif  // TASKRT_WORKER_REGISTRY_H_
