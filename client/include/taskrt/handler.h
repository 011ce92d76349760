// File: taskrt/handler.h
//
// The plugin API: a shared object that taskrtd loads into every worker process
// (`taskrtd --plugin libmine.so`) and that registers named task handlers.
//
// Example (a whole plugin: examples/plugin/readme_plugin.cc, which the build compiles):
//   #include "absl/strings/ascii.h"
//   #include "taskrt/handler.h"
//   TASKRT_PLUGIN(registry) {
//     registry.Register({"demo.upper", taskrt::ClassHint::kCpu, "upper-cases its input",
//         [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
//           std::string out(in);
//           absl::AsciiStrToUpper(&out);
//           return out;
//         }});
//   }
//
// Building one: link the CMake target taskrt::plugin (find_package(taskrt CONFIG)), or
// use `pkg-config --cflags --libs taskrt-plugin`. It carries this header's directory,
// C++20 and Abseil (status, statusor, time). A plugin is loaded into the worker process
// and shares its C++ runtime and Abseil: build it with the same compiler family and C++
// ABI (GCC's libstdc++, as Debian's g++ and clang++ both use) and against the same
// Abseil build (Debian 12's libabsl-dev 20220623) as taskrt, because the types of this
// header (absl::Status, absl::StatusOr, absl::Duration, std::string, std::function)
// cross between the plugin and the worker. Building with -fvisibility=hidden is fine:
// TASKRT_PLUGIN gives its entry points default visibility.
//
// Contract for handlers:
//  - A handler runs in a worker process, never in the daemon: on a cpu-pool worker alone,
//    or on one thread of an io-pool worker's thread pool next to other tasks (so it
//    must be thread-safe with respect to its own globals).
//  - Return output bytes, or an error status: InvalidArgumentError marks bad input
//    (FAILURE_KIND_INVALID_INPUT); UnavailableError marks a transient failure that is
//    retried while the task has attempts left; CancelledError marks a task that stopped
//    because it was cancelled or timed out (see below); anything else is a handler error
//    that is not retried. An exception that escapes the handler is caught and reported
//    as a handler error.
//  - Cancellation and timeouts: long handlers should poll ctx.cancelled() and, once it
//    is true, stop and return absl::CancelledError("why"). The daemon then reports the
//    task as TIMED_OUT (when its deadline had passed; retried while it has attempts
//    left) or CANCELLED. A result returned after ctx.cancelled() turned true is dropped:
//    the worker reports it as cancelled too, so a late OK never turns a timed-out or
//    cancelled task into a succeeded one. A cpu-pool task that ignores cancellation is
//    killed with its worker at its deadline; an io-pool task that ignores it past
//    taskrtd --stuck-grace gets its worker recycled.
//  - Asynchronous handlers (RegisterAsync) do not hold a thread while they wait: they
//    start their work on the worker's event loop, return at once, and end the task
//    later with AsyncTask::Finish. Use them for handlers that mostly wait (timers, I/O
//    completions, other processes); see AsyncTask below.
#ifndef TASKRT_HANDLER_H_
#define TASKRT_HANDLER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace taskrt {

// What kind of work the handler does, used when a task is submitted with class AUTO.
enum class ClassHint {
  kNone = 0,  // let the daemon learn it from measured CPU time / wall time
  kCpu = 1,   // computes: run in the cpu pool (a process per task)
  kIo = 2,    // waits: run on a thread of the io pool
};

// Per-task context. Thread-safety: the methods may be called from the handler's thread.
class TaskContext {
 public:
  virtual ~TaskContext() = default;
  // The task's id as the daemon knows it.
  virtual const std::string& task_id() const = 0;
  // True once the task was cancelled or passed its deadline. Once true, return
  // absl::CancelledError: any other result is dropped (see the contract above).
  virtual bool cancelled() const = 0;
  // Deadline in microseconds since the Unix epoch; 0 = none.
  virtual int64_t deadline_unix_us() const = 0;
  // A line for the worker's log (stderr of the worker process).
  virtual void Log(std::string_view line) = 0;
};

using HandlerFn = std::function<absl::StatusOr<std::string>(TaskContext&, std::string_view input)>;

struct HandlerDef {
  std::string name;  // "area.verb", unique across built-ins and plugins
  ClassHint hint = ClassHint::kNone;
  std::string description;  // one line, shown by `taskrt handlers`
  HandlerFn fn;
};

// One running task of an asynchronous handler. The handler receives it, starts its
// work and returns; the task ends when Finish is called, from any thread. Keep the
// shared_ptr for as long as the work runs (capture it in the callbacks).
//
// Thread-safety: every method may be called from any thread. The callbacks given to
// OnCancel and After run on the worker's event-loop thread, next to every other
// asynchronous task of the worker: they must not block (no sleeps, no blocking I/O, no
// long computations; give those to a synchronous handler instead).
//
// Example (an asynchronous handler that answers after 100 ms, or stops when cancelled;
// example.delay in examples/plugin/example_plugin.cc is a fuller one):
//   registry.RegisterAsync({"example.delay", taskrt::ClassHint::kIo, "answers later",
//       [](std::shared_ptr<taskrt::AsyncTask> task) {
//         task->OnCancel([task] { task->Finish(absl::CancelledError("cancelled")); });
//         task->After(absl::Milliseconds(100), [task] { task->Finish(std::string("done")); });
//       }});
class AsyncTask {
 public:
  virtual ~AsyncTask() = default;
  // The task's id as the daemon knows it.
  virtual const std::string& task_id() const = 0;
  // The task's input; valid as long as this object.
  virtual const std::string& input() const = 0;
  // Deadline in microseconds since the Unix epoch; 0 = none.
  virtual int64_t deadline_unix_us() const = 0;
  // True once the task was cancelled or passed its deadline (then finish it with
  // absl::CancelledError: as for a synchronous handler, any other result is dropped).
  virtual bool cancelled() const = 0;
  // Runs `fn` once, on the event loop, when the task is cancelled or passes its
  // deadline (soon after this call if that already happened), unless the task finished
  // first. One callback per task: a second call replaces the first. The task still ends
  // only when Finish is called.
  virtual void OnCancel(std::function<void()> fn) = 0;
  // Runs `fn` on the event loop after `delay`, without holding a thread. It does not
  // run if the task has finished by then. An exception escaping `fn` fails the task
  // with a handler error.
  virtual void After(absl::Duration delay, std::function<void()> fn) = 0;
  // Ends the task with its output or error, with the meanings of a synchronous
  // handler's return value. The first call counts; later calls are ignored.
  virtual void Finish(absl::StatusOr<std::string> output) = 0;
  // A line for the worker's log (stderr of the worker process).
  virtual void Log(std::string_view line) = 0;
};

// Called on the worker's event-loop thread: must start the work and return at once.
// An exception that escapes it fails the task with a handler error.
using AsyncHandlerFn = std::function<void(std::shared_ptr<AsyncTask> task)>;

struct AsyncHandlerDef {
  std::string name;  // "area.verb", unique across built-ins and plugins
  ClassHint hint = ClassHint::kIo;
  std::string description;  // one line, shown by `taskrt handlers`
  AsyncHandlerFn fn;
};

// Handed to the plugin's registration function; valid only during that call.
class HandlerRegistry {
 public:
  virtual ~HandlerRegistry() = default;
  // Adds a synchronous handler. A name that is taken makes the plugin fail to load.
  virtual void Register(HandlerDef def) = 0;
  // Adds an asynchronous handler (plugin ABI 2). A name that is taken makes the plugin
  // fail to load.
  virtual void RegisterAsync(AsyncHandlerDef def) = 0;
};

}  // namespace taskrt

// Version of this header's ABI; the worker refuses plugins built for another one.
// ABI 2 added AsyncTask and HandlerRegistry::RegisterAsync; workers still load ABI 1
// plugins, whose part of the interface is unchanged.
#define TASKRT_PLUGIN_ABI_VERSION 2

// Defines the plugin's entry points, with default visibility so that a plugin built
// with -fvisibility=hidden still exports them. Use once per plugin:
//   TASKRT_PLUGIN(registry) { registry.Register(...); }
#define TASKRT_PLUGIN_EXPORT __attribute__((visibility("default")))
#define TASKRT_PLUGIN(registry_name)                                                            \
  static void TaskrtRegisterHandlers_(::taskrt::HandlerRegistry&);                              \
  extern "C" TASKRT_PLUGIN_EXPORT int taskrt_plugin_abi_version() {                             \
    return TASKRT_PLUGIN_ABI_VERSION;                                                           \
  }                                                                                             \
  extern "C" TASKRT_PLUGIN_EXPORT void taskrt_register_handlers(::taskrt::HandlerRegistry* r) { \
    TaskrtRegisterHandlers_(*r);                                                                \
  }                                                                                             \
  static void TaskrtRegisterHandlers_(::taskrt::HandlerRegistry& registry_name)

#endif  // TASKRT_HANDLER_H_
