// Starting a taskrt-worker process: posix_spawn with a socketpair end as fd 3.
//
// The daemon never forks (a forked child of a gRPC process can hang): it spawns the
// separate worker binary. Thread-safety: SpawnWorker may be called from any thread.
#ifndef TASKRT_DAEMON_WORKER_PROCESS_H_
#define TASKRT_DAEMON_WORKER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/frame.h"

namespace taskrt::daemon {

// A native worker runs `worker_path`; a Python worker (when `python` is set) runs
// `python -m taskrt._worker` with `python_path` prepended to its PYTHONPATH.
struct WorkerLaunch {
  std::string worker_path;  // the taskrt-worker binary
  std::string python;       // the interpreter of a Python worker
  std::string python_path;  // where the taskrt package is (empty: the interpreter's path)
  std::vector<std::string> python_modules;  // passed as --module
  std::string pool;                         // "cpu" or "io"
  int threads = 1;                          // thread-pool size
  std::vector<std::string> plugins;         // passed as --plugin
  uint64_t memory_limit_bytes = 0;          // address-space limit (RLIMIT_AS); 0 = none
  // Largest task result (--max-output-bytes), clamped to 1..internal::kMaxOutputBytesLimit.
  size_t max_output_bytes = internal::kDefaultMaxOutputBytes;
};

struct SpawnedWorker {
  pid_t pid = -1;
  int fd = -1;  // the daemon's end of the socketpair: close-on-exec, owned by the caller
};

absl::StatusOr<SpawnedWorker> SpawnWorker(const WorkerLaunch& launch);

// Where taskrtd looks for taskrt-worker, in order: next to the running executable
// (/proc/self/exe's directory: the build tree's bin/), then <exe dir>/../libexec/taskrt/
// (an installed tree: cmake --install puts the worker there).
std::vector<std::string> WorkerPathCandidates();

// The first executable of WorkerPathCandidates(), else FailedPreconditionError naming
// every path tried and --worker-path.
absl::StatusOr<std::string> FindWorkerBinary();

// FindWorkerBinary()'s path, or the first candidate when there is none (SpawnWorker
// then reports it as not executable).
std::string DefaultWorkerPath();

// The directory holding the taskrt Python package of a build tree (<exe dir>/../python,
// when it has taskrt/_worker.py), else empty: an installed package is on the
// interpreter's own path.
std::string DefaultPythonPath();

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_WORKER_PROCESS_H_
