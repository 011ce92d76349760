// TaskManager: the daemon's core. It moves each task from QUEUED through RUNNING to a
// final state: it validates and admits submits, classifies and routes them to a pool,
// dispatches them to workers, retries, times out and cancels them, and answers waits
// and watches. Its parts, each not thread-safe and guarded by the manager's one mutex
// (the leveldb DBImpl way): TaskTable (records, key index, counts, retention), the run
// queues with PickWorker (daemon/dispatch_policy.h), WaiterSet (waits and their
// timeouts), OperationBatch (what one operation hands to the journal, the workers and
// the callbacks) and a WorkerPool (the processes, daemon/worker_pool.h).
//
// Threading: public methods may be called from any thread (gRPC's). All state is
// guarded by mu_; every operation takes it through OpLock, whose release hands the
// operation's changes on (OperationBatch). The worker pool's events arrive on its own
// thread through InOperation; a ticker thread runs Tick every tick_ms. Callbacks
// handed in (Wait's `done`, Submit's `each`) are never called with mu_ held; Watch
// sinks are, and must only queue the event and return.
#ifndef TASKRT_DAEMON_TASK_MANAGER_H_
#define TASKRT_DAEMON_TASK_MANAGER_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/frame.h"
#include "common/mutex.h"
#include "daemon/access.h"
#include "daemon/classifier.h"
#include "daemon/clock.h"
#include "daemon/journal.h"
#include "daemon/metrics.h"
#include "daemon/operation.h"
#include "daemon/pool.h"
#include "daemon/task_queue.h"
#include "daemon/task_table.h"
#include "daemon/waiter_set.h"
#include "daemon/worker_pool.h"
#include "taskrt/v1/service.pb.h"

namespace taskrt::daemon {

// How many tasks wait and run, and whether the manager drains (for status lines).
struct QueueDepths {
  uint64_t queued = 0;   // unfinished tasks not running (retries waiting included)
  uint64_t running = 0;  // tasks a worker holds
  bool draining = false;
};

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
  // What task ids start with ("<prefix>-<sequence number>"). Empty: 6 hex digits made
  // from the start time and pid, new at each start. A stable name (a host's or a
  // Kubernetes pod's) makes an id name the daemon that owns it; ValidateIdPrefix checks it.
  std::string id_prefix;
  // Where the time comes from; null = the system clock. Not owned.
  Clock* clock = nullptr;
  // What finished tasks, decisions and worker exits are counted in (/metrics); null =
  // nowhere. Not owned; must outlive the TaskManager.
  Metrics* metrics = nullptr;
  // The workers; null = a ProcessWorkerPool built from the options above. Not owned
  // (tests pass a FakeWorkerPool).
  WorkerPool* pool = nullptr;
  // Deadlines, retries, retention and the stuck check run every tick_ms on an internal
  // thread; 0 = no thread: the caller calls Tick() (tests, with a fake clock).
  int64_t tick_ms = 10;
  // Called on the ticker thread, without mu_, after a tick at most every on_tick_ms
  // (and again at once if the clock went back), with the queue depths: the daemon
  // reports them to systemd, and their regular arrival shows that the ticker and mu_
  // are alive (the watchdog, daemon/service_notify.h). Must not call back into the
  // TaskManager's Stop. Null: none. Never called without a ticker thread (tick_ms 0).
  std::function<void(const QueueDepths&)> on_tick;
  int64_t on_tick_ms = 2000;
};

// What Submit accepted: the ids, and the journal ticket that makes them durable.
struct SubmitResult {
  std::vector<std::string> ids;
  uint64_t ticket = 0;
  uint64_t wait_handle = 0;  // of the per-task wait Submit registered (0 = none)
  uint64_t load = 0;         // tasks queued or running once these were accepted
};

using EventSink = std::function<void(const v1::TaskEvent&)>;

// What FollowOutput streams: a chunk of a running command's output, or its end.
struct OutputEvent {
  bool is_stderr = false;
  std::string data;
  bool end = false;  // the task is final (or was not running a command): nothing follows
};
using OutputSink = std::function<void(const OutputEvent&)>;

class TaskManager : private WorkerPoolObserver {
 public:
  explicit TaskManager(TaskManagerOptions options);
  ~TaskManager() override;
  TaskManager(const TaskManager&) = delete;
  TaskManager& operator=(const TaskManager&) = delete;

  // Spawns the workers and waits until each has said hello (or one failed to start,
  // e.g. a plugin that does not load: the error says which), then recovers the tasks
  // and what the classifier learned from the journal.
  absl::Status Start();
  // Stops the loop, kills the workers, fails pending waits with UNAVAILABLE.
  void Stop();
  // Refuses new submits (UNAVAILABLE), starts no new task, and waits up to `timeout`
  // for the running ones to finish. Queued tasks stay queued (in the journal). Returns
  // how many tasks were still running when it gave up.
  size_t Drain(absl::Duration timeout);
  // Times out tasks and waits, promotes due retries, evicts old tasks, recycles stuck
  // workers. Called every tick_ms by the ticker thread (or by a test).
  void Tick();

  // Validates and queues all of `specs`, or none (INVALID_ARGUMENT naming the task and
  // the problem; RESOURCE_EXHAUSTED when the queue is full). Returns the ids in order.
  // A spec whose idempotency key is known gets the existing task's id.
  // The tasks are durable once WhenDurable(result.ticket) reports OK.
  // With `each`, also waits on every task of the batch: `each` gets every task's result
  // once, as it becomes final (for a known idempotency key's final task, right away),
  // together with the others that became final in the same operation, on an internal
  // thread (or the calling one, before Submit returns), once the journal holds that
  // state; CancelWait(result.wait_handle) stops it.
  // `run_call`: the caller answers only once the tasks are final (Run), so their
  // acceptance may be committed without fsync — the fsync'd commit of the final state
  // covers it (docs/RELIABILITY.md, "One commit per Run").
  //
  // Ownership: the tasks belong to `caller`. An idempotency key is the caller's own: a
  // key it used before with the same spec gets the existing task, with another spec
  // ALREADY_EXISTS naming that task. PERMISSION_DENIED for a privileged handler the
  // caller may not run; RESOURCE_EXHAUSTED past max_queued_per_owner for the caller.
  absl::StatusOr<SubmitResult> Submit(const Caller& caller,
                                      const google::protobuf::RepeatedPtrField<v1::TaskSpec>& specs,
                                      ResultCallback each = nullptr, bool run_call = false);
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
  // Streams to `sink`, under the manager's lock (so it must only queue), what the
  // command of task `id` (sys.exec) has written in its current run, then with `follow`
  // what it writes, then an end event once the task is final; without `follow`, or for
  // a task that is final or runs no command, the end comes at once. Returns a handle
  // for Unfollow (0: the end was sent already). NOT_FOUND as Get; RESOURCE_EXHAUSTED
  // past max_watchers followers.
  absl::StatusOr<uint64_t> FollowOutput(const Caller& caller, const std::string& id, bool follow,
                                        OutputSink sink);
  void Unfollow(uint64_t handle);
  // Per-owner counts (Stats.owners) only for admins.
  v1::Stats GetStats(const Caller& caller);
  // The queue depths right now (what on_tick reports).
  QueueDepths Depths();
  // Every handler, with `allowed` saying whether the caller may submit it.
  std::vector<v1::HandlerInfo> Handlers(const Caller& caller);

 private:
  // (handler, TaskSpec.function): what the classifier learns about.
  using LearnKey = std::pair<std::string, std::string>;

  // Holds mu_ for one operation; its release ends the operation (EndOperation): the
  // batch's rows go to the journal in one unit, its frames to the workers once the
  // journal holds them, its callbacks run after mu_ is released.
  class ABSL_SCOPED_LOCKABLE OpLock {
   public:
    explicit OpLock(TaskManager* m) ABSL_EXCLUSIVE_LOCK_FUNCTION(m->mu_) : m_(m) { m->mu_.Lock(); }
    ~OpLock() ABSL_UNLOCK_FUNCTION() { m_->EndOperation(); }
    OpLock(const OpLock&) = delete;
    OpLock& operator=(const OpLock&) = delete;

   private:
    TaskManager* const m_;
  };

  struct Subscriber {
    std::unordered_set<std::string> ids;
    std::string owner;    // only this owner's tasks; empty: all (an admin)
    std::string watcher;  // who watches (counted against max_watchers_per_owner)
    EventSink sink;
  };

  // WorkerPoolObserver (called by the pool inside InOperation, mu_ held).
  void InOperation(absl::FunctionRef<void()> fn) override;
  bool OnHello(int worker, const v1::internal::WorkerHello& hello) override;
  void OnDone(int worker, const RunSlot& run, const v1::internal::TaskDone& done) override;
  void OnLost(int worker, const WorkerSlot& was, const WorkerLoss& loss,
              const std::vector<RunSlot>& runs) override;
  void OnSpawnFailed(int worker, PoolKind pool, const absl::Status& error) override;
  void OnOutput(int worker, const RunSlot& run, const v1::internal::TaskOutput& output) override;
  // The task is final: its output log goes, its followers get their end.
  void EndOutputLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Ends the operation OpLock holds, releasing mu_ (see OpLock).
  void EndOperation() ABSL_UNLOCK_FUNCTION(mu_);
  // Hands the batch's rows to the journal now (Submit needs their ticket).
  void FlushRowsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the task for the journal; the operation writes it once.
  void PersistLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLocked(int worker, const v1::internal::WorkerFrame& frame)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TickerLoop();
  void TickLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  QueueDepths DepthsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Submit's pieces (task_manager_submit.cc).
  absl::Status ValidateLocked(const v1::TaskSpec& spec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ownership, privilege and quota checks of a batch, before anything changes.
  absl::Status AdmitLocked(const Caller& caller,
                           const google::protobuf::RepeatedPtrField<v1::TaskSpec>& specs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The privilege checks of one spec ("" when it may run).
  absl::Status MayRunLocked(const Caller& caller, const v1::TaskSpec& spec,
                            const std::string& where) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The existing task of (owner, spec's idempotency key): nullopt when there is none,
  // ALREADY_EXISTS when it was submitted with a different spec.
  absl::StatusOr<std::optional<uint64_t>> KnownKeyLocked(const std::string& owner,
                                                         const v1::TaskSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Creates, classifies and queues the task of `spec`.
  uint64_t AcceptLocked(const Caller& caller, const v1::TaskSpec& spec, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Registers Submit's per-task wait; returns its handle (0 when all are final).
  uint64_t WaitEachLocked(const std::vector<uint64_t>& seqs, ResultCallback each)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> FindOwnedLocked(const Caller& caller, const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // During Start: a Python worker could not start and Python is optional: the Python
  // pools are turned off (and their handlers unknown), with `why` in the log and stats.
  void TurnPythonOffLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For a handler Submit does not know: why, when it is a Python one and Python is off.
  std::string PythonOffHintLocked(absl::string_view handler) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecoverLocked(std::vector<StoredTask> stored) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecoverRunningLocked(uint64_t seq, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Dispatch and outcomes (task_manager_run.cc).
  TaskQueue& QueueFor(const TaskRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int ThreadsOf(PoolKind pool) const;
  void DispatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The task's runs are known to be short (cpu_prefetch).
  bool IsShortLocked(const TaskRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AssignLocked(uint64_t seq, int worker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The timeout of a task starts when it starts: at dispatch, or for a task that waited
  // in a cpu worker, when the one before it finished.
  void StartDeadlineLocked(uint64_t seq, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A task that waited in a cpu worker that died never started: back to the queue, its
  // attempt not counted.
  void RequeueUnstartedLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordRunLocked(TaskRecord& r, const v1::internal::TaskDone& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStateLocked(TaskRecord& r, v1::TaskState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(uint64_t seq, v1::TaskState state, v1::TaskError error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retries the task if `error` is retryable and attempts remain, else finishes it.
  void FailOrRetryLocked(uint64_t seq, v1::TaskState state, v1::TaskError error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelRunLocked(int worker, uint64_t run_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PromoteDueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckDeadlinesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TimeOutLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitLocked(const TaskRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers (or, with an error, ends) a wait.
  void CompleteWaiterLocked(uint64_t handle, absl::Status error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireWaiterLocked(uint64_t handle) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelOneLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddPoolStatsLocked(v1::Stats& stats) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TaskManagerOptions options_;
  Clock* const clock_;
  const int daemon_pid_;
  const int64_t started_us_;
  std::unique_ptr<WorkerPool> owned_pool_;  // when options_.pool is null
  WorkerPool* const pool_;
  std::thread ticker_;

  internal::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // Start returned
  absl::Status startup_error_ ABSL_GUARDED_BY(mu_);
  Recovery recovery_ ABSL_GUARDED_BY(mu_);
  OperationBatch op_ ABSL_GUARDED_BY(mu_);
  TaskTable table_ ABSL_GUARDED_BY(mu_);
  // Run queues per pool: [pool][0] synchronous (all tasks of a cpu pool), [pool][1]
  // asynchronous handlers of an io pool.
  std::array<std::array<TaskQueue, 2>, kPoolKinds> queues_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<int64_t, uint64_t>> delayed_ ABSL_GUARDED_BY(mu_);    // retries
  std::set<std::pair<int64_t, uint64_t>> deadlines_ ABSL_GUARDED_BY(mu_);  // running tasks
  WaiterSet waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t next_run_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  bool python_on_ ABSL_GUARDED_BY(mu_) = false;
  // The Python workers' interpreter and version (from their hello), or why they are off.
  std::string python_status_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::HandlerInfo> handlers_ ABSL_GUARDED_BY(mu_);
  std::map<LearnKey, LearnedStats> learned_ ABSL_GUARDED_BY(mu_);
  uint64_t next_watch_ ABSL_GUARDED_BY(mu_) = 1;
  std::unordered_map<uint64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> watchers_by_owner_ ABSL_GUARDED_BY(mu_);
  // Live output of running commands (task_manager_output.cc): what each current run
  // wrote (at most what its result keeps: the worker streams nothing past the cap),
  // dropped when the task is final; and who follows it.
  struct OutputLog {
    uint64_t run_id = 0;
    std::vector<OutputEvent> chunks;  // adjacent writes to one stream merged
  };
  struct OutputFollower {
    uint64_t seq = 0;
    OutputSink sink;
  };
  absl::flat_hash_map<uint64_t, OutputLog> output_logs_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, OutputFollower> output_followers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_follower_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_TASK_MANAGER_H_
