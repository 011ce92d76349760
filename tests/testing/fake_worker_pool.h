// FakeWorkerPool: a daemon::WorkerPool without processes, for unit tests of the task
// manager. Its "workers" say hello at Start with the handlers given, record the frames
// the manager sends them, and finish, crash or die when the test says so; every event
// goes through the observer's InOperation, as with ProcessWorkerPool.
//
// Threading: the WorkerPool methods run under the manager's lock like the real pool's.
// The test-facing methods (Runs, Finish, Crash, ...) may be called from the test thread
// while the manager runs (frames reach Send on the journal's thread once it commits):
// what was sent is kept under the fake's own mutex.
#ifndef TASKRT_TESTS_TESTING_FAKE_WORKER_POOL_H_
#define TASKRT_TESTS_TESTING_FAKE_WORKER_POOL_H_

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "daemon/clock.h"
#include "daemon/worker_pool.h"
#include "taskrt/v1/service.pb.h"

namespace taskrt::testing {

struct FakeWorkerPoolOptions {
  std::array<int, daemon::kPoolKinds> workers = {1, 1, 0, 0};  // per pool kind
  std::vector<v1::HandlerInfo> handlers;  // what every native worker's hello lists
  uint64_t max_tasks = 0;                 // recycle after this many tasks (0 = never)
  daemon::Clock* clock = nullptr;         // for started_us (null: the system clock)
};

// A frame the manager sent: a RunTask or a CancelTask, to which worker.
struct SentFrame {
  int worker = -1;
  pid_t pid = -1;
  v1::internal::WorkerFrame frame;
};

class FakeWorkerPool final : public daemon::WorkerPool {
 public:
  explicit FakeWorkerPool(FakeWorkerPoolOptions options);

  // daemon::WorkerPool
  void Start(daemon::WorkerPoolObserver* observer) override;
  void Stop() override;
  int size() const override { return static_cast<int>(workers_.size()); }
  const daemon::WorkerSlot& worker(int id) const override { return workers_[id]; }
  daemon::PoolCounters counters(daemon::PoolKind pool) const override {
    return counters_[static_cast<int>(pool)];
  }
  void AddRun(int id, const daemon::RunSlot& run) override;
  void MarkCancelled(int id, uint64_t run_id, int64_t now_us) override;
  void Send(int id, pid_t pid, std::string_view frames) override;
  void Kill(int id, daemon::WorkerExit why, std::string reason = "") override;
  void Terminate(int id, daemon::WorkerExit why) override;
  void MaybeRecycle(int id, const v1::internal::TaskDone& done) override;
  void CheckStuck(int64_t now_us, int64_t grace_us) override;
  void DisablePython() override {}

  // For the test.
  // Every RunTask sent so far, in order (waits up to `timeout` until there are `n`).
  std::vector<v1::internal::RunTask> Runs(size_t n = 0, absl::Duration timeout = absl::Seconds(5));
  // Every CancelTask sent so far.
  std::vector<uint64_t> Cancels();
  // The worker that was sent run `run_id` (-1: none).
  int WorkerOf(uint64_t run_id);
  // The worker finishes run `run_id`: ok with `output`, or failed with `failure`.
  void Finish(uint64_t run_id, bool ok, std::string output = "",
              v1::FailureKind failure = v1::FAILURE_KIND_UNSPECIFIED, bool retryable = false,
              int64_t cpu_us = 1000, int64_t wall_us = 1000);
  // Worker `id` dies by `signal` on its own (WorkerExit::kCrashed), or, with `why`,
  // after we killed it. It is replaced at once by a new process that says hello.
  void Die(int id, int signal, daemon::WorkerExit why = daemon::WorkerExit::kCrashed);
  // Every worker being killed (Kill, Terminate) dies now.
  void ReapKilled();
  // Whether worker `id` is being killed, and why.
  bool killed(int id, daemon::WorkerExit* why = nullptr);

 private:
  void Hello(int id);

  const FakeWorkerPoolOptions options_;
  daemon::WorkerPoolObserver* observer_ = nullptr;
  std::vector<daemon::WorkerSlot> workers_;
  std::vector<daemon::WorkerExit> kill_exit_;
  std::array<daemon::PoolCounters, daemon::kPoolKinds> counters_ = {};
  pid_t next_pid_ = 1000;

  std::mutex sent_mu_;
  std::vector<SentFrame> sent_;  // guarded by sent_mu_
};

}  // namespace taskrt::testing

#endif  // TASKRT_TESTS_TESTING_FAKE_WORKER_POOL_H_
