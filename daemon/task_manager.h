// TaskManager: the daemon's core. It owns the task table, the classifier's learned
// statistics, one run queue per pool and the worker processes, and moves each task
// from QUEUED through RUNNING to a final state.
//
// Threading: public methods may be called from any thread (gRPC's). All state is
// guarded by mu_. Worker sockets, timers and respawns run on one internal event-loop
// thread (`io_`), which takes mu_ for each event. Callbacks handed in (Wait's `done`,
// Watch sinks) are never called with mu_ held, except Watch sinks, which must only
// queue the event and return.
#ifndef TASKRT_DAEMON_TASK_MANAGER_H_
#define TASKRT_DAEMON_TASK_MANAGER_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "asio/io_context.hpp"
#include "asio/local/stream_protocol.hpp"
#include "asio/steady_timer.hpp"
#include "common/frame.h"
#include "common/mutex.h"
#include "daemon/access.h"
#include "daemon/classifier.h"
#include "daemon/journal.h"
#include "daemon/task_queue.h"
#include "daemon/worker_process.h"
#include "taskrt/v1/service.pb.h"

namespace taskrt::daemon {

struct TaskManagerOptions {
  int cpu_workers = 2;           // processes in the cpu pool (one task each)
  int io_workers = 1;            // processes in the io pool
  int io_threads = 4;            // thread-pool size of each io worker
  int io_max_inflight = 100000;  // async tasks in flight per io worker
  std::string worker_path;       // taskrt-worker binary
  std::vector<std::string> plugins;
  // Python workers (python -m taskrt._worker) beside the native ones: the interpreter
  // (empty = no Python pools), what to prepend to their PYTHONPATH (the directory that
  // holds the taskrt package; empty = the interpreter's own path), modules whose
  // @taskrt.task functions become handlers, and the pools' sizes.
  std::string python;
  std::string python_path;
  std::vector<std::string> python_modules;
  int python_cpu_workers = 2;   // processes of the python-cpu pool (one task each)
  int python_io_workers = 1;    // processes of the python-io pool
  int python_io_threads = 256;  // threads per python-io worker for synchronous functions
  // True: a Python worker that cannot start fails Start. False: Start turns the Python
  // pools off, logs why, and goes on with the native ones (the default of taskrtd when
  // --python is not given).
  bool python_required = false;
  ClassifierOptions classifier;
  size_t max_input_bytes = 16u << 20;
  size_t max_batch = 100000;        // tasks per Submit
  uint64_t default_timeout_ms = 0;  // 0 = none
  uint64_t max_timeout_ms = 7 * 24 * 3600 * 1000ull;
  size_t max_retained = 100000;                    // final tasks kept for Get/Wait/List
  int64_t retain_for_ms = 7 * 24 * 3600 * 1000ll;  // ...and for at most this long
  size_t max_queued = 1000000;                     // unfinished tasks; beyond: RESOURCE_EXHAUSTED
  // Unfinished tasks of one owner; beyond: RESOURCE_EXHAUSTED for that owner only.
  size_t max_queued_per_owner = 250000;
  size_t max_watchers = 256;           // Watch calls open at once
  size_t max_watchers_per_owner = 16;  // ...and of one owner
  // Handlers that run caller-chosen code or touch the daemon's files with its rights:
  // only callers with Caller::may_exec may submit them.
  // Python handlers' pickled inputs (first byte 0x80) are code too: same rule.
  std::vector<std::string> privileged_handlers = {"sys.exec", "io.read_file", "hash.sha256",
                                                  "py.call", "py.call_async"};
  // Tasks recovered from a journal that predates owners belong to this uid.
  uid_t daemon_uid = 0;
  uint32_t max_attempts_limit = 100;    // largest TaskSpec.max_attempts accepted
  int64_t startup_timeout_ms = 15000;   // for the first workers to say hello
  uint64_t worker_max_tasks = 0;        // recycle a worker after this many tasks (0 = never)
  int64_t worker_max_rss_kb = 0;        // ...or once its peak RSS exceeds this (0 = never)
  uint64_t cpu_memory_limit_bytes = 0;  // address-space limit of cpu workers (0 = none)
  // Largest result of one task (output, or its TaskDone frame); a bigger one fails that
  // task alone with OUTPUT_TOO_LARGE. Passed to every worker; sets the frame limit.
  size_t max_output_bytes = internal::kDefaultMaxOutputBytes;
  // A cpu worker runs one task at a time, but may hold this many more of the tasks known
  // to be short (their runs took under prefetch_below_us on average, over 3 runs or
  // more), so that it goes from one to the next without waiting for the daemon: one
  // round trip and one journal commit then cover many tiny tasks. 0 = never.
  int cpu_prefetch = 64;
  int64_t prefetch_below_us = 2000;
  int64_t kill_grace_ms = 2000;    // SIGTERM -> SIGKILL when cancelling a CPU task
  int64_t stuck_grace_ms = 10000;  // an io task still running this long after its
                                   // cancellation gets its worker recycled
  // Where accepted tasks and their state changes are recorded; null = not durable.
  // Not owned; must outlive the TaskManager.
  Journal* journal = nullptr;
};

// What Submit accepted: the ids, and the journal ticket that makes them durable.
struct SubmitResult {
  std::vector<std::string> ids;
  uint64_t ticket = 0;
  uint64_t wait_handle = 0;  // of the per-task wait Submit registered (0 = none)
};

using WaitCallback = std::function<void(absl::StatusOr<std::vector<v1::Task>>)>;
// The results of tasks that became final together (one or more).
using ResultCallback = std::function<void(std::vector<v1::TaskResult>)>;
using EventSink = std::function<void(const v1::TaskEvent&)>;

class TaskManager {
 public:
  explicit TaskManager(TaskManagerOptions options);
  ~TaskManager();
  TaskManager(const TaskManager&) = delete;
  TaskManager& operator=(const TaskManager&) = delete;

  // Spawns the workers and waits until each has said hello (or one failed to start,
  // e.g. a plugin that does not load: the error says which).
  absl::Status Start();
  // Stops the loop, kills the workers, fails pending waits with UNAVAILABLE.
  void Stop();
  // Refuses new submits (UNAVAILABLE), starts no new task, and waits up to `timeout`
  // for the running ones to finish. Queued tasks stay queued (in the journal). Returns
  // how many tasks were still running when it gave up.
  size_t Drain(absl::Duration timeout);

  // Validates and queues all of `specs`, or none (INVALID_ARGUMENT naming the task and
  // the problem; RESOURCE_EXHAUSTED when the queue is full). Returns the ids in order.
  // A spec whose idempotency key is known gets the existing task's id.
  // The tasks are durable once WhenDurable(result.ticket) reports OK.
  // With `each`, also waits on every task of the batch: `each` gets every task's result
  // once, as it becomes final (for a known idempotency key's final task, right away),
  // together with the others that became final in the same operation, on an internal
  // thread, once the journal holds that state; CancelWait(result.wait_handle) stops it.
  //
  // Ownership: the tasks belong to `caller`. An idempotency key is the caller's own: a
  // key it used before with the same spec gets the existing task, with another spec
  // ALREADY_EXISTS naming that task. PERMISSION_DENIED for a privileged handler the
  // caller may not run; RESOURCE_EXHAUSTED past max_queued_per_owner for the caller.
  absl::StatusOr<SubmitResult> Submit(const Caller& caller,
                                      const google::protobuf::RepeatedPtrField<v1::TaskSpec>& specs,
                                      ResultCallback each = nullptr);
  // Calls `done` (on an internal thread) when the journal holds everything up to
  // `ticket`, at once without a journal. On a journal error, the tasks of `ids` that are
  // still queued are withdrawn before `done` gets the error.
  void WhenDurable(uint64_t ticket, std::vector<std::string> ids,
                   std::function<void(absl::Status)> done);
  // How many tasks the last Start recovered from the journal, by what happened to them.
  struct Recovery {
    uint64_t finished = 0, requeued = 0, rerun = 0, failed = 0;
  };
  Recovery recovery();
  // Get, Wait, Cancel, List and Watch see only the caller's tasks (an admin's: all); a
  // task of someone else is NOT_FOUND, exactly like an unknown id.
  absl::StatusOr<std::vector<v1::Task>> Get(
      const Caller& caller, const google::protobuf::RepeatedPtrField<std::string>& ids);
  // Calls `done` once: with the tasks when all are final, DEADLINE_EXCEEDED after
  // timeout_ms (0 = no limit), NOT_FOUND for an unknown id (immediately), UNAVAILABLE
  // at shutdown. Returns a handle for CancelWait.
  uint64_t Wait(const Caller& caller, const google::protobuf::RepeatedPtrField<std::string>& ids,
                uint64_t timeout_ms, WaitCallback done);
  // Forgets a wait whose caller went away; its callback will not be called.
  void CancelWait(uint64_t handle);
  absl::StatusOr<std::vector<v1::Task>> Cancel(
      const Caller& caller, const google::protobuf::RepeatedPtrField<std::string>& ids);
  std::vector<v1::Task> List(const Caller& caller, const v1::ListRequest& request);
  // Streams events of `ids` (all of the caller's when empty) to `sink` until Unwatch.
  // RESOURCE_EXHAUSTED past max_watchers (or max_watchers_per_owner).
  absl::StatusOr<uint64_t> Watch(const Caller& caller,
                                 const google::protobuf::RepeatedPtrField<std::string>& ids,
                                 EventSink sink);
  void Unwatch(uint64_t handle);
  // Per-owner counts (Stats.owners) only for admins.
  v1::Stats GetStats(const Caller& caller);
  // Every handler, with `allowed` saying whether the caller may submit it.
  std::vector<v1::HandlerInfo> Handlers(const Caller& caller);

 private:
  // The pools: native (taskrt-worker) and Python (taskrt._worker), each a cpu pool (one
  // task per process) and an io pool (threads and an async loop per process).
  enum class Pool { kCpu = 0, kIo = 1, kPyCpu = 2, kPyIo = 3 };
  static constexpr int kPools = 4;
  static bool IsCpuPool(Pool p) { return p == Pool::kCpu || p == Pool::kPyCpu; }
  static bool IsPythonPool(Pool p) { return p == Pool::kPyCpu || p == Pool::kPyIo; }
  static const char* PoolName(Pool p);
  // (handler, TaskSpec.function): what the classifier learns about.
  using LearnKey = std::pair<std::string, std::string>;
  enum class WorkerState { kStarting, kReady, kDead };

  // One dispatch of a task to a worker, as the worker knows it (RunTask.seq).
  struct Run {
    uint64_t seq;  // the task
    bool async;
    bool short_task = false;   // known to be short (may wait in a cpu worker behind another)
    int64_t cancelled_us = 0;  // when the worker was asked to cancel it (0 = not asked)
  };

  struct Worker {
    Worker(asio::io_context& io) : socket(io) {}
    Pool pool = Pool::kCpu;
    int slot = 0;
    pid_t pid = -1;
    WorkerState state = WorkerState::kStarting;
    asio::local::stream_protocol::socket socket;
    internal::FrameDecoder decoder;
    std::array<char, 65536> buf{};
    std::string outbox, inflight;
    std::string staged;  // frames of the current operation (released by EndOpLocked)
    bool writing = false;
    std::unordered_map<uint64_t, Run> running;  // run id -> the task it runs
    int sync_running = 0, async_running = 0;
    int long_running = 0;  // of `running`, the tasks not known to be short
    uint64_t tasks_run = 0;
    int64_t started_us = 0;
    bool killed = false;      // we killed it on purpose (timeout, cancel, recycling)
    bool retiring = false;    // takes no new task; replaced once idle
    bool recycle = false;     // its replacement is a recycling, not a crash
    int quick_deaths = 0;     // consecutive deaths soon after start (respawn backoff)
    std::string kill_reason;  // why we killed it, for the tasks that die with it
  };

  struct TaskRecord {
    v1::Task task;
    bool async = false;   // the handler runs on the async loop
    bool python = false;  // the handler runs in a Python worker
    Pool pool = Pool::kCpu;
    Worker* worker = nullptr;  // set while RUNNING
    uint64_t run_id = 0;       // the current dispatch; results of older ones are stale
    int64_t deadline_us = 0;
    std::vector<uint64_t> waiters;
    bool dirty = false;  // changed since the journal last got it (in dirty_)
  };

  // Holds mu_ for one operation; on release, hands what the operation changed to the
  // journal in one piece (EndOpLocked). Every mutating section takes mu_ through it.
  class OpLock {
   public:
    explicit OpLock(TaskManager* m) ABSL_EXCLUSIVE_LOCK_FUNCTION(m->mu_) : m_(m), lock_(&m->mu_) {}
    ~OpLock() ABSL_UNLOCK_FUNCTION() { m_->EndOpLocked(); }
    OpLock(const OpLock&) = delete;
    OpLock& operator=(const OpLock&) = delete;

   private:
    TaskManager* const m_;
    internal::MutexLock lock_;
  };

  struct Waiter {
    std::vector<uint64_t> seqs;
    size_t remaining = 0;
    WaitCallback done;                     // all final (Wait)
    std::shared_ptr<ResultCallback> each;  // or one at a time (Submit with `each`)
    std::unique_ptr<asio::steady_timer> timer;
  };

  struct Subscriber {
    std::unordered_set<std::string> ids;
    std::string owner;    // only this owner's tasks; empty: all (an admin)
    std::string watcher;  // who watches (counted against max_watchers_per_owner)
    EventSink sink;
  };

  // Pieces that run under mu_.
  absl::Status ValidateLocked(const v1::TaskSpec& spec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> FindLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status NotFoundLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FindLocked, and NOT_FOUND (the same error) for a task the caller does not own.
  absl::StatusOr<uint64_t> FindOwnedLocked(const Caller& caller, const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ownership, privilege and quota checks of a batch, before anything changes.
  absl::Status AdmitLocked(const Caller& caller,
                           const google::protobuf::RepeatedPtrField<v1::TaskSpec>& specs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The existing task of (owner, spec's idempotency key): nullopt when there is none,
  // ALREADY_EXISTS when it was submitted with a different spec.
  absl::StatusOr<std::optional<uint64_t>> KnownKeyLocked(const std::string& owner,
                                                         const v1::TaskSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `delta` to the counts of `task`'s state (by_state_, owners_).
  void CountLocked(const v1::Task& task, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  TaskQueue& QueueFor(const TaskRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The pool a task of this class and runtime goes to.
  static Pool PoolOf(v1::TaskClass resolved, bool python);
  int PoolSize(Pool pool) const;
  int ThreadsOf(Pool pool) const;
  // During Start: a Python worker could not start and Python is optional: the Python
  // pools are turned off (and their handlers unknown), with `why` in the log and stats.
  void TurnPythonOffLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For a handler Submit does not know: why, when it is a Python one and Python is off.
  std::string PythonOffHintLocked(absl::string_view handler) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DispatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `short_task`: a cpu worker busy with short tasks only may take it in advance.
  Worker* PickWorkerLocked(Pool pool, bool async, bool short_task)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The task's runs are known to be short (cpu_prefetch).
  bool IsShortLocked(const TaskRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A cpu worker runs its tasks in the order it got them: the oldest run is the one
  // running, the others wait in the worker (0 = none).
  static uint64_t HeadRun(const Worker& w);
  // The timeout of a task starts when it starts: at dispatch, or for a task that waited
  // in a cpu worker, when the one before it finished.
  void StartDeadlineLocked(uint64_t seq, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A task that waited in a cpu worker that died never started: back to the queue, its
  // attempt not counted.
  void RequeueUnstartedLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AssignLocked(uint64_t seq, Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLocked(Worker* w, const v1::internal::WorkerFrame& frame)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every state change of a task in tasks_ goes through here (counts for GetStats).
  void SetStateLocked(TaskRecord& r, v1::TaskState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(uint64_t seq, v1::TaskState state, v1::TaskError error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `each` with the result of `task` to run once the lock is released, with the
  // other results for the same `each` of this operation.
  void DeferResultLocked(const std::shared_ptr<ResultCallback>& each, const v1::Task& task)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the operation deferred (results grouped per callback), to run after unlocking.
  std::vector<std::function<void()>> TakeDeferredLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retries the task if `error` is retryable and attempts remain, else finishes it.
  void FailOrRetryLocked(uint64_t seq, v1::TaskState state, v1::TaskError error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the task for the journal; EndOpLocked writes it once per operation.
  void PersistLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the operation's journal changes as one unit, then releases the frames it
  // staged once the journal holds them (at once without a journal).
  // StartWriteLocked sends a worker's outbox from the calling thread if the socket
  // takes it all, else hands the rest to the loop thread.
  void EndOpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartWriteLocked(Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PromoteDueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecoverLocked(std::vector<StoredTask> stored) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictOldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitLocked(const TaskRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteWaiterLocked(uint64_t handle, absl::Status error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseSlotLocked(TaskRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KillWorkerLocked(Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SIGTERM now, SIGKILL after kill_grace_ms if the same worker is still there.
  void TerminateWorkerLocked(Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeRecycleLocked(Worker* w, const v1::internal::TaskDone& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetireLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnHelloLocked(Worker* w, const v1::internal::WorkerHello& hello)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDoneLocked(Worker* w, const v1::internal::TaskDone& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckDeadlinesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelRunLocked(Worker* w, uint64_t run_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckStuckLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Loop-thread pieces.
  void SpawnOnLoop(Pool pool, int slot);
  void ReadOnLoop(Worker* w);
  void OnWorkerGone(Worker* w, int pid);
  struct StagedFrames {
    Worker* worker;
    int pid;
    std::string bytes;
  };
  // Moves frames staged by an operation to their workers' outboxes and starts writing
  // (called once the journal holds what the frames follow from).
  void ReleaseStaged(std::vector<StagedFrames> staged);
  void TickOnLoop();
  // Runs callbacks collected under mu_, after releasing it.
  void RunDeferred(std::vector<std::function<void()>>& deferred);

  const TaskManagerOptions options_;
  const int daemon_pid_;
  const int64_t started_us_;
  const std::string id_prefix_;

  asio::io_context io_;
  std::thread loop_thread_;
  asio::steady_timer tick_;

  internal::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_run_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t unfinished_ ABSL_GUARDED_BY(mu_) = 0;  // tasks not in a final state
  std::set<std::pair<int64_t, uint64_t>> delayed_ ABSL_GUARDED_BY(mu_);  // retries
  // (owner, idempotency key) -> task; the key is KeyIndex(owner, key).
  absl::flat_hash_map<std::string, uint64_t> by_key_ ABSL_GUARDED_BY(mu_);
  Recovery recovery_ ABSL_GUARDED_BY(mu_);
  absl::Status startup_error_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, TaskRecord> tasks_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> retired_ ABSL_GUARDED_BY(mu_);  // final tasks, oldest first
  // Run queues per pool: [pool][0] synchronous (all tasks of a cpu pool), [pool][1]
  // asynchronous handlers of an io pool.
  std::array<std::array<TaskQueue, 2>, kPools> queues_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  std::array<int, kPools> pool_base_ ABSL_GUARDED_BY(mu_) = {};  // index in workers_
  std::array<uint64_t, kPools> respawns_ ABSL_GUARDED_BY(mu_) = {};
  std::array<uint64_t, kPools> recycled_ ABSL_GUARDED_BY(mu_) = {};
  std::array<uint64_t, kPools> completed_ ABSL_GUARDED_BY(mu_) = {};
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // Start returned
  bool python_on_ ABSL_GUARDED_BY(mu_) = false;
  // The Python workers' interpreter and version (from their hello), or why they are off.
  std::string python_status_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::HandlerInfo> handlers_ ABSL_GUARDED_BY(mu_);
  std::map<LearnKey, LearnedStats> learned_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<int64_t, uint64_t>> deadlines_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  std::unordered_map<uint64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> dirty_ ABSL_GUARDED_BY(mu_);   // tasks to write (PersistLocked)
  std::vector<uint64_t> erased_ ABSL_GUARDED_BY(mu_);  // rows to delete (retention)
  bool staged_ ABSL_GUARDED_BY(mu_) = false;           // some worker has staged frames
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  // Tasks in tasks_ by state (index: v1::TaskState), so stats cost O(1) per state.
  std::array<uint64_t, v1::TaskState_ARRAYSIZE> by_state_ ABSL_GUARDED_BY(mu_) = {};
  // The same per owner (Task.owner); an owner with no task left is erased.
  absl::flat_hash_map<std::string, std::array<uint64_t, v1::TaskState_ARRAYSIZE>> owners_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> watchers_by_owner_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> deferred_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::shared_ptr<ResultCallback>, std::vector<v1::TaskResult>>>
      pending_results_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_TASK_MANAGER_H_
