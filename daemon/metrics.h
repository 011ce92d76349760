// Metrics: what the daemon counts for Prometheus (served as /metrics by http_server.h).
//
// Two kinds of figures:
// - events, counted as they happen: finished tasks by handler, state and executor; the
//   queue-wait and run-time histograms per pool; classifier decisions by reason; worker
//   exits by pool and reason; journal commit latency. The task manager and the journal
//   call the methods below.
// - levels, read from the task manager when scraped (Render takes a v1::Stats): tasks
//   by state, queue depth and running tasks per pool, workers by pool and state, what
//   the classifier learned.
//
// Labels are bounded: handler names (registered handlers only: an unknown one is
// refused before it is counted), pools, states, executors, reasons. Never a task id or
// an owner.
//
// Thread-safety: every method may be called from any thread. The event methods take a
// short lock of their own (a cache of label sets) and do a few atomic adds; the task
// manager calls them under its lock.
#ifndef TASKRT_DAEMON_METRICS_H_
#define TASKRT_DAEMON_METRICS_H_

#include <array>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "daemon/pool.h"
#include "daemon/worker_pool.h"
#include "taskrt/v1/service.pb.h"
#include "taskrt/v1/task.pb.h"

namespace prometheus {
class Counter;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace taskrt::daemon {

class Metrics {
 public:
  explicit Metrics(std::string version);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // A task reached a final state (its decision says where and how long it ran).
  void TaskFinished(const v1::Task& task);
  // The classifier resolved a submitted task's class.
  void Decided(v1::Reason reason, v1::TaskClass resolved);
  // A worker process ended (and will be replaced), or could not be started.
  void WorkerExited(PoolKind pool, WorkerExit exit);
  void SpawnFailed(PoolKind pool);
  // One journal transaction took `took`; `synced`: it was fsync'd.
  void JournalCommitted(absl::Duration took, bool synced);

  // The Prometheus text exposition format (version 0.0.4) of everything counted, and of
  // the levels in `stats` (as the daemon itself sees them: every owner's tasks). Every
  // series carries the label daemon="<stats.daemon()>".
  std::string Render(const v1::Stats& stats) const;

 private:
  prometheus::Counter& FinishedCounter(const v1::Task& task);
  prometheus::Histogram& PoolHistogram(prometheus::Family<prometheus::Histogram>& family,
                                       const std::string& pool, const char* lane);

  const std::string version_;
  std::unique_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* finished_;
  prometheus::Family<prometheus::Histogram>* queue_wait_;
  prometheus::Family<prometheus::Histogram>* run_time_;
  prometheus::Family<prometheus::Counter>* decisions_;
  prometheus::Family<prometheus::Counter>* worker_exits_;
  // By v1::Reason and v1::TaskClass (CPU, IO): made once, so counting takes no lookup.
  prometheus::Counter* decided_[v1::REASON_DEFAULT + 1][v1::TASK_CLASS_IO + 1] = {};
  prometheus::Histogram* commit_synced_;
  prometheus::Histogram* commit_unsynced_;

  mutable internal::Mutex mu_;
  // Label sets already made (Family::Add hashes every label; these hash one name, with
  // no allocation per task): by handler, [state * kExecutors + executor]; by pool,
  // [queue wait sync, queue wait async, run time sync, run time async].
  static constexpr int kExecutors = v1::Executor_ARRAYSIZE;
  absl::flat_hash_map<std::string,
                      std::array<prometheus::Counter*, v1::TaskState_ARRAYSIZE * kExecutors>>
      finished_by_handler_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::array<prometheus::Histogram*, 4>> histograms_by_pool_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_METRICS_H_
