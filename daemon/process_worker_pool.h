// ProcessWorkerPool: the WorkerPool of real processes — taskrt-worker for the native
// pools, `python -m taskrt._worker` for the Python ones — each connected to the daemon
// by a socketpair carrying length-prefixed WorkerFrames (common/frame.h).
//
// Threading: one internal event-loop thread (asio) reads and writes the sockets, reaps
// dead workers and runs the respawn and kill-grace timers; each of its events runs
// inside observer->InOperation() (the owner's lock), like every call of the owner. So
// all state below is guarded by the owner's mutex. Writes are attempted from the
// calling thread first (MSG_DONTWAIT): most fit in the socket buffer, which saves a hop
// to the loop thread per round trip.
#ifndef TASKRT_DAEMON_PROCESS_WORKER_POOL_H_
#define TASKRT_DAEMON_PROCESS_WORKER_POOL_H_

#include <array>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "asio/io_context.hpp"
#include "asio/local/stream_protocol.hpp"
#include "common/frame.h"
#include "daemon/clock.h"
#include "daemon/worker_pool.h"

namespace taskrt::daemon {

struct ProcessWorkerPoolOptions {
  std::array<int, kPoolKinds> workers = {2, 1, 0, 0};    // processes per pool kind
  std::array<int, kPoolKinds> threads = {1, 4, 1, 256};  // thread-pool size of each worker
  std::string worker_path;                               // taskrt-worker
  std::vector<std::string> plugins;                      // --plugin of native workers
  std::string python;                                    // interpreter of Python workers
  std::string python_path;                               // prepended to their PYTHONPATH
  std::vector<std::string> python_modules;               // --module of Python workers
  uint64_t cpu_memory_limit_bytes = 0;                   // RLIMIT_AS of cpu workers (0 = none)
  size_t max_output_bytes = internal::kDefaultMaxOutputBytes;
  uint64_t worker_max_tasks = 0;  // recycle after this many tasks (0 = never)
  int64_t worker_max_rss_kb = 0;  // ...or once a sync run's peak RSS exceeds this (0 = never)
  int64_t kill_grace_ms = 2000;   // Terminate: SIGTERM, then SIGKILL after this
  Clock* clock = nullptr;         // null: SystemClock()
};

class ProcessWorkerPool final : public WorkerPool {
 public:
  explicit ProcessWorkerPool(ProcessWorkerPoolOptions options);
  ~ProcessWorkerPool() override;

  void Start(WorkerPoolObserver* observer) override;
  void Stop() override;
  int size() const override { return static_cast<int>(procs_.size()); }
  const WorkerSlot& worker(int id) const override { return procs_[id]->view; }
  PoolCounters counters(PoolKind pool) const override { return counters_[static_cast<int>(pool)]; }
  void AddRun(int id, const RunSlot& run) override;
  void MarkCancelled(int id, uint64_t run_id, int64_t now_us) override;
  void Send(int id, pid_t pid, std::string_view frames) override;
  void Kill(int id, WorkerExit why, std::string reason = "") override;
  void Terminate(int id, WorkerExit why) override;
  void MaybeRecycle(int id, const v1::internal::TaskDone& done) override;
  void CheckStuck(int64_t now_us, int64_t grace_us) override;
  void DisablePython() override;

 private:
  struct Process {
    explicit Process(asio::io_context& io) : socket(io) {}
    WorkerSlot view;
    asio::local::stream_protocol::socket socket;
    internal::FrameDecoder decoder;
    std::array<char, 65536> buf{};
    std::string outbox, inflight;
    bool writing = false;
    WorkerExit kill_exit = WorkerExit::kKilled;  // why we killed it (when view.killed)
    std::string kill_reason;                     // ...in words, for its tasks' errors
    int quick_deaths = 0;  // consecutive deaths soon after start (respawn backoff)
  };

  // Inside an operation of the observer.
  void Spawn(int id);
  void OnReadable(int id, pid_t pid, size_t n);
  void OnGone(int id, pid_t pid);
  void StartWrite(int id);
  // The loop thread's entry points: each runs its event as one operation.
  void SpawnOnLoop(int id);
  void ReadOnLoop(int id);

  const ProcessWorkerPoolOptions options_;
  Clock* const clock_;
  WorkerPoolObserver* observer_ = nullptr;
  asio::io_context io_;
  std::thread loop_thread_;
  std::vector<std::unique_ptr<Process>> procs_;
  std::array<PoolCounters, kPoolKinds> counters_ = {};
  bool python_off_ = false;
  bool stopping_ = false;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_PROCESS_WORKER_POOL_H_
