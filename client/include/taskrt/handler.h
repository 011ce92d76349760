// File: taskrt/handler.h
//
// The plugin API: a shared object that taskrtd loads into every worker process
// (`taskrtd --plugin libmine.so`) and that registers named task handlers.
//
// Example (a whole plugin):
//   #include "taskrt/handler.h"
//   TASKRT_PLUGIN(registry) {
//     registry.Register({"demo.upper", taskrt::ClassHint::kCpu, "upper-cases its input",
//         [](taskrt::TaskContext& ctx, std::string_view in) -> absl::StatusOr<std::string> {
//           std::string out(in);
//           for (char& c : out) c = std::toupper(static_cast<unsigned char>(c));
//           return out;
//         }});
//   }
//
// Contract for handlers:
//  - A handler runs in a worker process, never in the daemon: on a cpu-pool worker alone,
//    or on one thread of an io-pool worker's thread pool next to other tasks (so it
//    must be thread-safe with respect to its own globals).
//  - Return output bytes, or an error status: InvalidArgumentError marks bad input
//    (FAILURE_KIND_INVALID_INPUT); UnavailableError marks a transient failure that is
//    retried while the task has attempts left; anything else is a handler error that is
//    not retried. An exception that escapes the handler is caught and reported as a
//    handler error.
//  - Long handlers should poll ctx.cancelled() and return when it is true (timeout or
//    cancel). A cpu-pool task that ignores it is killed with its worker at its deadline.
#ifndef TASKRT_HANDLER_H_
#define TASKRT_HANDLER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

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
  // True once the task was cancelled or passed its deadline.
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

// Handed to the plugin's registration function; valid only during that call.
class HandlerRegistry {
 public:
  virtual ~HandlerRegistry() = default;
  // Adds a handler. A name that is taken makes the plugin fail to load.
  virtual void Register(HandlerDef def) = 0;
};

}  // namespace taskrt

// Version of this header's ABI; the worker refuses plugins built for another one.
#define TASKRT_PLUGIN_ABI_VERSION 1

// Defines the plugin's entry points. Use once per plugin:
//   TASKRT_PLUGIN(registry) { registry.Register(...); }
#define TASKRT_PLUGIN(registry_name)                                               \
  static void TaskrtRegisterHandlers_(::taskrt::HandlerRegistry&);                 \
  extern "C" int taskrt_plugin_abi_version() { return TASKRT_PLUGIN_ABI_VERSION; } \
  extern "C" void taskrt_register_handlers(::taskrt::HandlerRegistry* r) {         \
    TaskrtRegisterHandlers_(*r);                                                   \
  }                                                                                \
  static void TaskrtRegisterHandlers_(::taskrt::HandlerRegistry& registry_name)

#endif  // TASKRT_HANDLER_H_
