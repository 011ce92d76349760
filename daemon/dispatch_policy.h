// Which worker a task goes to: a pure function over the workers' loads, so the routing
// policy is unit-tested without processes or threads (tests/unit/dispatch_policy_test.cc).
#ifndef TASKRT_DAEMON_DISPATCH_POLICY_H_
#define TASKRT_DAEMON_DISPATCH_POLICY_H_

#include <vector>

#include "daemon/pool.h"

namespace taskrt::daemon {

// What PickWorker needs to know of one worker.
struct WorkerLoad {
  PoolKind pool = PoolKind::kCpu;
  bool accepting = false;  // ready, and neither being killed nor retiring
  int running = 0;         // runs it holds
  int long_running = 0;    // ...of which not known to be short
  int sync_running = 0, async_running = 0;
};

struct PickLimits {
  // A cpu worker busy with short tasks only may hold this many more short ones.
  int cpu_prefetch = 64;
  int threads = 4;               // synchronous runs an io worker takes at once
  int io_max_inflight = 100000;  // asynchronous runs an io worker takes at once
};

// The worker of `pool` to run the next task (its index in `workers`), or -1 when none
// may take it now. A cpu worker takes a task when idle, or, for a `short_task`, when it
// is busy with short tasks only and holds at most cpu_prefetch of them; an io worker
// while it has a free thread (sync) or room in its async loop (`async`). Among those,
// the one holding the fewest runs (the first on a tie).
int PickWorker(const std::vector<WorkerLoad>& workers, PoolKind pool, bool async, bool short_task,
               const PickLimits& limits);

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_DISPATCH_POLICY_H_
