// WorkerPool: the worker processes of every pool kind, as the task manager sees them.
//
// A pool owns its workers' lifecycle — spawn, handshake (hello), frames in and out,
// reaping, recycling, the stuck-thread check and respawn backoff — and tracks which
// runs (dispatches of a task) each worker holds. It reports what happens through a
// WorkerPoolObserver with typed outcomes (WorkerExit), never log lines; what a run
// means for its task (retry, fail, requeue) is the observer's decision.
//
// Threading: a pool is not thread-safe. Its owner calls it under the owner's lock, and
// the pool calls the observer's On* methods only inside observer->InOperation(), which
// takes that lock: so the pool's state is guarded by the owner's mutex.
// ProcessWorkerPool (daemon/process_worker_pool.h) is the real one; FakeWorkerPool
// (tests/testing/fake_worker_pool.h) is the test double.
#ifndef TASKRT_DAEMON_WORKER_POOL_H_
#define TASKRT_DAEMON_WORKER_POOL_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "daemon/pool.h"
#include "taskrt/v1/worker.pb.h"

namespace taskrt::daemon {

// One dispatch of a task to a worker, as the worker knows it (RunTask.seq = run_id).
struct RunSlot {
  uint64_t run_id = 0;
  uint64_t seq = 0;          // the task
  bool async = false;        // an async handler (counts against io_max_inflight)
  bool short_task = false;   // known to be short (may wait in a cpu worker behind another)
  int64_t cancelled_us = 0;  // when the worker was asked to cancel it (0 = not asked)
};

enum class WorkerPhase { kStarting, kReady, kDead };

// What the owner may read of a worker (WorkerPool::worker).
struct WorkerSlot {
  PoolKind pool = PoolKind::kCpu;
  int slot = 0;  // its index within its pool
  pid_t pid = -1;
  WorkerPhase phase = WorkerPhase::kDead;
  bool killed = false;    // being killed on purpose (timeout, cancel, recycling, stuck)
  bool retiring = false;  // takes no new task; replaced once idle (recycling)
  // The runs it holds, by run id: a cpu worker runs the oldest (the first) and holds
  // the others until it finishes.
  std::map<uint64_t, RunSlot> runs;
  int sync_running = 0, async_running = 0;
  int long_running = 0;  // of `runs`, those not known to be short
  uint64_t tasks_run = 0;
  int64_t started_us = 0;

  bool accepting() const { return phase == WorkerPhase::kReady && !killed && !retiring; }
  // The run a cpu worker is executing (0 = none).
  uint64_t head_run() const { return runs.empty() ? 0 : runs.begin()->first; }
};

// Why a worker process ended.
enum class WorkerExit {
  kCrashed,   // it died, or closed its socket, on its own
  kKilled,    // the owner killed it (a timed-out or cancelled cpu task)
  kRecycled,  // replaced after --worker-max-tasks / --worker-max-rss
  kStuck,     // an io task kept running past stuck_grace after its cancellation
  kCorrupt,   // it sent a stream that does not decode
};

struct WorkerLoss {
  WorkerExit exit = WorkerExit::kCrashed;
  int signal = 0;             // the signal that ended it (0 = none)
  int exit_code = -1;         // its exit status (-1 = killed by a signal or unknown)
  bool before_hello = false;  // it died while starting
  std::string how;  // "was killed by SIGKILL", "exited with status 3", or why we killed it
};

// Counters of one pool kind (stats).
struct PoolCounters {
  uint64_t respawns = 0, recycled = 0, completed = 0;
};

class WorkerPoolObserver {
 public:
  virtual ~WorkerPoolObserver() = default;
  // Runs `fn` as one operation of the owner, under its lock. Every other call below
  // happens inside such an fn.
  virtual void InOperation(absl::FunctionRef<void()> fn) = 0;
  // A worker said hello. Returns whether it is ready for tasks: false (the owner
  // refuses it, e.g. a duplicate handler name) leaves it starting, taking nothing.
  virtual bool OnHello(int worker, const v1::internal::WorkerHello& hello) = 0;
  // A run finished (the pool has already removed it from the worker).
  virtual void OnDone(int worker, const RunSlot& run, const v1::internal::TaskDone& done) = 0;
  // A worker process ended; `runs` (by run id) are the ones it held. The pool respawns
  // it, after a backoff when it keeps dying young.
  virtual void OnLost(int worker, const WorkerSlot& was, const WorkerLoss& loss,
                      const std::vector<RunSlot>& runs) = 0;
  // A worker could not be spawned (the pool tries again only when told to).
  virtual void OnSpawnFailed(int worker, PoolKind pool, const absl::Status& error) = 0;
  // A run's command wrote `output` (sys.exec's live output), before the run's OnDone.
  virtual void OnOutput(int worker, const RunSlot& run, const v1::internal::TaskOutput& output) {}
};

class WorkerPool {
 public:
  virtual ~WorkerPool() = default;
  // Spawns every worker (asynchronously: hellos arrive through the observer).
  virtual void Start(WorkerPoolObserver* observer) = 0;
  // Kills every worker and waits for them; no observer call after it returns. Called
  // without the owner's lock (it joins the thread that takes it).
  virtual void Stop() = 0;
  // Workers are numbered 0..size()-1 (all pools, in PoolKind order).
  virtual int size() const = 0;
  virtual const WorkerSlot& worker(int id) const = 0;
  virtual PoolCounters counters(PoolKind pool) const = 0;
  // Records that `id` holds `run` from now on (its RunTask frame follows via Send).
  virtual void AddRun(int id, const RunSlot& run) = 0;
  // Notes that the worker was asked to cancel `run_id` at `now_us` (stuck check).
  virtual void MarkCancelled(int id, uint64_t run_id, int64_t now_us) = 0;
  // Writes encoded frames to worker `id` if it is still process `pid` (else drops them:
  // that worker was replaced and its runs reported lost).
  virtual void Send(int id, pid_t pid, std::string_view frames) = 0;
  // SIGKILL now / SIGTERM now and SIGKILL after the grace period.
  virtual void Kill(int id, WorkerExit why, std::string reason = "") = 0;
  virtual void Terminate(int id, WorkerExit why) = 0;
  // After `done` on worker `id`: retires it once idle if it ran too many tasks or grew
  // too big (--worker-max-tasks, --worker-max-rss).
  virtual void MaybeRecycle(int id, const v1::internal::TaskDone& done) = 0;
  // Kills io workers holding a run cancelled more than `grace_us` ago (WorkerExit::kStuck).
  virtual void CheckStuck(int64_t now_us, int64_t grace_us) = 0;
  // Stops using Python workers (kills them, never respawns them).
  virtual void DisablePython() = 0;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_WORKER_POOL_H_
