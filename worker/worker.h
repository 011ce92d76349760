// taskrt-worker: the process taskrtd spawns to run task code.
//
// A worker serves one pool. In the cpu pool it runs one task at a time, in the order
// they came (the daemon sends one, or short ones in advance, which wait on its one
// thread; one cancelled before it starts is not run); in the io pool it runs synchronous handlers
// on a pool of `threads` threads and asynchronous handlers on its event loop, many at a time. It
// talks to the daemon over the socket at `fd` with frames (common/frame.h), and exits when the
// daemon closes that socket.
#ifndef TASKRT_WORKER_WORKER_H_
#define TASKRT_WORKER_WORKER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/frame.h"

namespace taskrt::worker {

struct WorkerOptions {
  std::string pool = "io";           // "cpu" or "io"
  int threads = 4;                   // thread-pool size (forced to 1 in the cpu pool)
  int fd = 3;                        // socket connected to the daemon
  std::vector<std::string> plugins;  // shared objects to load
  uint64_t memory_limit_bytes = 0;   // RLIMIT_AS for this process; 0 = none
  // The largest task result sent to the daemon (taskrtd --max-output-bytes): a bigger
  // one fails its task with OUTPUT_TOO_LARGE; sys.exec captures at most this much of
  // each of stdout and stderr. Clamped to internal::kMaxOutputBytesLimit.
  size_t max_output_bytes = internal::kDefaultMaxOutputBytes;
};

// Runs until the daemon goes away. Returns the process exit code.
int RunWorker(const WorkerOptions& options);

}  // namespace taskrt::worker

#endif  // TASKRT_WORKER_WORKER_H_
