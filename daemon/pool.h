// The kinds of worker pool: native (taskrt-worker) and Python (taskrt._worker) workers,
// each as a cpu pool (one task per process, for parallelism and isolation) and an io
// pool (a thread pool and an async loop per process, for concurrency). A new kind of
// pool is one more enumerator here and its properties below.
#ifndef TASKRT_DAEMON_POOL_H_
#define TASKRT_DAEMON_POOL_H_

#include "taskrt/v1/task.pb.h"

namespace taskrt::daemon {

enum class PoolKind { kCpu = 0, kIo = 1, kPyCpu = 2, kPyIo = 3 };
inline constexpr int kPoolKinds = 4;

constexpr bool IsCpuPool(PoolKind p) { return p == PoolKind::kCpu || p == PoolKind::kPyCpu; }
constexpr bool IsPythonPool(PoolKind p) { return p == PoolKind::kPyCpu || p == PoolKind::kPyIo; }

// "cpu", "io", "python-cpu", "python-io": Decision.pool and the stats' pool names.
const char* PoolName(PoolKind p);

// The pool a task of this class and runtime goes to.
PoolKind PoolOf(v1::TaskClass resolved, bool python);

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_POOL_H_
