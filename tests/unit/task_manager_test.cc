// The task manager with a FakeWorkerPool and a FakeClock: retries and their backoff,
// timeouts, waits and their timeouts, crashes, recycling, cancellation, the stuck
// check and recovery from a journal — no processes, no sleeps.
#include "daemon/task_manager.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_worker_pool.h"

namespace taskrt::testing {
namespace {

using daemon::Caller;
using daemon::PoolKind;
using daemon::TaskManager;
using daemon::TaskManagerOptions;
using daemon::WorkerExit;
using google::protobuf::RepeatedPtrField;
using ::testing::HasSubstr;

v1::HandlerInfo Handler(const std::string& name, v1::TaskClass hint, bool async = false) {
  v1::HandlerInfo h;
  h.set_name(name);
  h.set_hint(hint);
  h.set_async(async);
  h.set_source("test");
  return h;
}

v1::TaskSpec Spec(const std::string& handler) {
  v1::TaskSpec s;
  s.set_handler(handler);
  s.set_input("x");
  return s;
}

class TaskManagerTest : public ::testing::Test {
 protected:
  // One cpu worker and one io worker (2 threads) unless a test changes `pool_options`
  // before Start().
  void SetUp() override {
    pool_options.workers = {1, 1, 0, 0};
    pool_options.handlers = {Handler("t.cpu", v1::TASK_CLASS_CPU),
                             Handler("t.io", v1::TASK_CLASS_IO),
                             Handler("t.async", v1::TASK_CLASS_IO, /*async=*/true)};
    pool_options.clock = &clock;
    options.clock = &clock;
    options.tick_ms = 0;  // the test ticks
    options.io_threads = 2;
    options.cpu_prefetch = 0;
    options.stuck_grace_ms = 10000;
  }
  void TearDown() override {
    if (manager) manager->Stop();
  }

  void Start() {
    pool.emplace(pool_options);
    options.pool = &*pool;
    manager = std::make_unique<TaskManager>(options);
    ASSERT_TRUE(manager->Start().ok());
  }

  std::string Submit(v1::TaskSpec spec) {
    RepeatedPtrField<v1::TaskSpec> specs;
    *specs.Add() = std::move(spec);
    auto r = manager->Submit(caller, specs);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->ids[0] : "";
  }

  v1::Task Get(const std::string& id) {
    RepeatedPtrField<std::string> ids;
    *ids.Add() = id;
    auto tasks = manager->Get(caller, ids);
    EXPECT_TRUE(tasks.ok()) << tasks.status();
    return tasks.ok() ? (*tasks)[0] : v1::Task();
  }

  // The RunTask of the n-th dispatch (1-based).
  v1::internal::RunTask RunNo(size_t n) {
    auto runs = pool->Runs(n);
    EXPECT_GE(runs.size(), n);
    return runs.size() >= n ? runs[n - 1] : v1::internal::RunTask();
  }

  FakeClock clock;
  FakeWorkerPoolOptions pool_options;
  TaskManagerOptions options;
  std::optional<FakeWorkerPool> pool;
  std::unique_ptr<TaskManager> manager;
  Caller caller{"uid:1000", false, false};
};

TEST_F(TaskManagerTest, RunsATaskOnThePoolOfItsClassAndRecordsTheResult) {
  Start();
  const std::string id = Submit(Spec("t.cpu"));
  const auto run = RunNo(1);
  EXPECT_EQ(run.task_id(), id);
  EXPECT_EQ(pool->worker(pool->WorkerOf(run.seq())).pool, PoolKind::kCpu);
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_RUNNING);
  pool->Finish(run.seq(), true, "out");
  const v1::Task t = Get(id);
  EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(t.output(), "out");
  EXPECT_EQ(t.decision().executor(), v1::EXECUTOR_PROCESS);
  EXPECT_EQ(t.decision().attempt(), 1);
}

TEST_F(TaskManagerTest, TaskIdsStartWithTheConfiguredPrefix) {
  options.id_prefix = "taskrt-2";
  Start();
  EXPECT_EQ(Submit(Spec("t.io")), "taskrt-2-1");
  EXPECT_EQ(Submit(Spec("t.io")), "taskrt-2-2");
}

TEST_F(TaskManagerTest, RetriesAfterTheBackoffAndDoublesIt) {
  Start();
  v1::TaskSpec spec = Spec("t.io");
  spec.set_max_attempts(3);
  spec.set_retry_backoff_ms(100);
  const std::string id = Submit(spec);
  pool->Finish(RunNo(1).seq(), false, "", v1::FAILURE_KIND_HANDLER_ERROR, /*retryable=*/true);
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_QUEUED);
  clock.AdvanceMs(99);
  manager->Tick();
  EXPECT_EQ(pool->Runs().size(), 1u) << "retried before its backoff";
  clock.AdvanceMs(1);
  manager->Tick();
  const auto second = RunNo(2);
  EXPECT_EQ(second.attempt(), 2);
  pool->Finish(second.seq(), false, "", v1::FAILURE_KIND_HANDLER_ERROR, true);
  clock.AdvanceMs(199);
  manager->Tick();
  EXPECT_EQ(pool->Runs().size(), 2u) << "the second backoff is 200 ms";
  clock.AdvanceMs(1);
  manager->Tick();
  pool->Finish(RunNo(3).seq(), false, "", v1::FAILURE_KIND_HANDLER_ERROR, true);
  const v1::Task t = Get(id);
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.attempts_size(), 2);
  EXPECT_THAT(t.error().message(), HasSubstr("attempt 3 of 3, none left"));
}

TEST_F(TaskManagerTest, ANonRetryableFailureIsFinalAtOnce) {
  Start();
  v1::TaskSpec spec = Spec("t.io");
  spec.set_max_attempts(5);
  const std::string id = Submit(spec);
  pool->Finish(RunNo(1).seq(), false, "", v1::FAILURE_KIND_HANDLER_ERROR, /*retryable=*/false);
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_FAILED);
}

TEST_F(TaskManagerTest, AnIoTaskPastItsTimeoutIsCancelledThroughItsContext) {
  Start();
  v1::TaskSpec spec = Spec("t.io");
  spec.set_timeout_ms(50);
  const std::string id = Submit(spec);
  const auto run = RunNo(1);
  clock.AdvanceMs(49);
  manager->Tick();
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_RUNNING);
  clock.AdvanceMs(1);
  manager->Tick();
  const v1::Task t = Get(id);
  EXPECT_EQ(t.state(), v1::TASK_STATE_TIMED_OUT);
  EXPECT_THAT(t.error().message(), HasSubstr("cancelled through its context"));
  EXPECT_THAT(pool->Cancels(), ::testing::ElementsAre(run.seq()));
  // Its late result is stale: the task stays timed out.
  pool->Finish(run.seq(), true, "late");
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_TIMED_OUT);
}

TEST_F(TaskManagerTest, AnOkResultAfterTheDeadlineIsATimeoutNotASuccess) {
  Start();
  v1::TaskSpec spec = Spec("t.io");
  spec.set_timeout_ms(50);
  const std::string id = Submit(spec);
  clock.AdvanceMs(60);  // past the deadline, before the daemon's tick saw it
  pool->Finish(RunNo(1).seq(), true, "finished anyway");
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_TIMED_OUT);
}

TEST_F(TaskManagerTest, ACpuTaskPastItsTimeoutCostsItsWorkerWhichIsReplaced) {
  Start();
  v1::TaskSpec spec = Spec("t.cpu");
  spec.set_timeout_ms(1000);
  const std::string id = Submit(spec);
  const int worker = pool->WorkerOf(RunNo(1).seq());
  const pid_t pid = pool->worker(worker).pid;
  clock.AdvanceMs(1000);
  manager->Tick();
  WorkerExit why;
  ASSERT_TRUE(pool->killed(worker, &why));
  EXPECT_EQ(why, WorkerExit::kKilled);
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_TIMED_OUT);
  pool->ReapKilled();
  EXPECT_NE(pool->worker(worker).pid, pid);
  // The replacement takes the next task.
  Submit(Spec("t.cpu"));
  EXPECT_EQ(pool->WorkerOf(RunNo(2).seq()), worker);
}

TEST_F(TaskManagerTest, AWaitTimesOutOnItsOwnDeadlineAndAnotherIsAnswered) {
  Start();
  const std::string id = Submit(Spec("t.io"));
  RepeatedPtrField<std::string> ids;
  *ids.Add() = id;
  std::optional<absl::StatusOr<std::vector<v1::Task>>> short_wait, long_wait;
  manager->Wait(caller, ids, 1000, [&](auto r) { short_wait = std::move(r); });
  manager->Wait(caller, ids, 0, [&](auto r) { long_wait = std::move(r); });
  clock.AdvanceMs(999);
  manager->Tick();
  EXPECT_FALSE(short_wait.has_value());
  clock.AdvanceMs(1);
  manager->Tick();
  ASSERT_TRUE(short_wait.has_value());
  EXPECT_EQ(short_wait->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(short_wait->status().message(), HasSubstr(id));
  EXPECT_FALSE(long_wait.has_value());
  pool->Finish(RunNo(1).seq(), true, "done");
  ASSERT_TRUE(long_wait.has_value());
  ASSERT_TRUE(long_wait->ok());
  EXPECT_EQ((**long_wait)[0].output(), "done");
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(TaskManagerTest, EachFiresBeforeSubmitReturnsForAKnownKeysFinalTask) {
  Start();
  v1::TaskSpec spec = Spec("t.io");
  spec.set_idempotency_key("k1");
  const std::string id = Submit(spec);
  pool->Finish(RunNo(1).seq(), true, "first");
  RepeatedPtrField<v1::TaskSpec> specs;
  *specs.Add() = spec;
  std::vector<v1::TaskResult> got;
  auto r = manager->Submit(caller, specs, [&](std::vector<v1::TaskResult> results) {
    for (auto& x : results) got.push_back(std::move(x));
  });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ids[0], id);
  ASSERT_EQ(got.size(), 1u) << "the result of a known final task comes right away";
  EXPECT_EQ(got[0].output(), "first");
  EXPECT_EQ(pool->Runs().size(), 1u) << "the same task, not run again";
}

TEST_F(TaskManagerTest, ACrashedWorkersTaskIsRetriedThenFailsWithTheSignal) {
  Start();
  v1::TaskSpec spec = Spec("t.cpu");
  spec.set_max_attempts(2);
  const std::string id = Submit(spec);
  pool->Die(pool->WorkerOf(RunNo(1).seq()), SIGSEGV);
  v1::Task t = Get(id);
  EXPECT_EQ(t.state(), v1::TASK_STATE_QUEUED);
  ASSERT_EQ(t.attempts_size(), 1);
  EXPECT_EQ(t.attempts(0).error().signal_name(), "SIGSEGV");
  clock.AdvanceMs(500);  // the default backoff
  manager->Tick();
  pool->Die(pool->WorkerOf(RunNo(2).seq()), SIGKILL);
  t = Get(id);
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_WORKER_CRASHED);
  EXPECT_THAT(t.error().message(), HasSubstr("SIGKILL"));
  EXPECT_EQ(pool->counters(PoolKind::kCpu).respawns, 2u);
}

TEST_F(TaskManagerTest, ShortTasksHeldBehindACrashedOneAreRequeuedUncounted) {
  options.cpu_prefetch = 4;
  Start();
  // Three runs teach the manager that t.cpu is short (0.5 ms).
  for (int i = 1; i <= 3; ++i) {
    Submit(Spec("t.cpu"));
    pool->Finish(RunNo(i).seq(), true, "", v1::FAILURE_KIND_UNSPECIFIED, false, 100, 500);
  }
  const v1::Stats stats = manager->GetStats(caller);
  ASSERT_EQ(stats.learned_size(), 1);
  EXPECT_EQ(stats.learned(0).runs(), 3u) << "short runs count as runs";
  EXPECT_EQ(stats.learned(0).samples(), 0u) << "but runs under 1 ms teach no cpu ratio";
  EXPECT_DOUBLE_EQ(stats.learned(0).mean_wall_us(), 500);
  const std::string a = Submit(Spec("t.cpu"));
  const std::string b = Submit(Spec("t.cpu"));
  ASSERT_EQ(pool->Runs(5).size(), 5u) << "the second short task waits in the same worker";
  pool->Die(pool->WorkerOf(RunNo(4).seq()), SIGKILL);
  EXPECT_EQ(Get(a).state(), v1::TASK_STATE_FAILED);
  const v1::Task tb = Get(b);
  EXPECT_EQ(tb.attempts_size(), 0);
  // Requeued and dispatched to the replacement at once, as its first attempt.
  EXPECT_EQ(RunNo(6).task_id(), b);
  EXPECT_EQ(RunNo(6).attempt(), 1);
}

TEST_F(TaskManagerTest, AWorkerIsRecycledAfterMaxTasksAndItsTasksGoOn) {
  pool_options.max_tasks = 2;
  Start();
  Submit(Spec("t.cpu"));
  pool->Finish(RunNo(1).seq(), true);
  const int worker = pool->WorkerOf(RunNo(1).seq());
  const std::string second = Submit(Spec("t.cpu"));
  pool->Finish(RunNo(2).seq(), true);
  WorkerExit why;
  ASSERT_TRUE(pool->killed(worker, &why));
  EXPECT_EQ(why, WorkerExit::kRecycled);
  const std::string third = Submit(Spec("t.cpu"));
  EXPECT_EQ(pool->Runs().size(), 2u) << "a retiring worker takes no task";
  pool->ReapKilled();
  EXPECT_EQ(pool->counters(PoolKind::kCpu).recycled, 1u);
  EXPECT_EQ(pool->counters(PoolKind::kCpu).respawns, 0u);
  EXPECT_EQ(RunNo(3).task_id(), third);
  EXPECT_EQ(Get(second).state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(TaskManagerTest, CancelWorksQueuedRunningOnIoAndRunningOnCpu) {
  Start();
  const std::string cpu = Submit(Spec("t.cpu"));
  const std::string queued = Submit(Spec("t.cpu"));  // the one cpu worker is busy
  const std::string io = Submit(Spec("t.io"));
  ASSERT_EQ(pool->Runs(2).size(), 2u);
  RepeatedPtrField<std::string> ids;
  for (const auto& id : {queued, io, cpu}) *ids.Add() = id;
  auto cancelled = manager->Cancel(caller, ids);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  for (const auto& t : *cancelled) EXPECT_EQ(t.state(), v1::TASK_STATE_CANCELLED) << t.id();
  EXPECT_THAT((*cancelled)[0].error().message(), HasSubstr("while queued"));
  EXPECT_EQ(pool->Cancels().size(), 1u) << "the io task is cancelled through its context";
  WorkerExit why;
  EXPECT_TRUE(pool->killed(pool->WorkerOf(RunNo(1).seq()), &why)) << "the cpu worker is stopped";
  EXPECT_EQ(pool->Runs().size(), 2u) << "the cancelled queued task never ran";
}

TEST_F(TaskManagerTest, AnIoWorkerWhoseTaskIgnoresCancellationIsReplaced) {
  Start();
  const std::string id = Submit(Spec("t.io"));
  const auto run = RunNo(1);
  RepeatedPtrField<std::string> ids;
  *ids.Add() = id;
  ASSERT_TRUE(manager->Cancel(caller, ids).ok());
  const int worker = pool->WorkerOf(run.seq());
  clock.AdvanceMs(options.stuck_grace_ms - 1);
  manager->Tick();
  EXPECT_FALSE(pool->killed(worker));
  clock.AdvanceMs(1);
  manager->Tick();
  WorkerExit why;
  ASSERT_TRUE(pool->killed(worker, &why));
  EXPECT_EQ(why, WorkerExit::kStuck);
}

TEST_F(TaskManagerTest, AnotherOwnersTaskIsNotFound) {
  Start();
  const std::string id = Submit(Spec("t.io"));
  Caller other{"uid:2000", false, false};
  RepeatedPtrField<std::string> ids;
  *ids.Add() = id;
  EXPECT_EQ(manager->Get(other, ids).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager->Cancel(other, ids).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Get(id).state(), v1::TASK_STATE_RUNNING);
}

// The one test here with the ticker thread (what the daemon's systemd status and
// watchdog hang on): it waits for the thread, but time still moves only by hand.
TEST_F(TaskManagerTest, OnTickReportsTheQueueDepthsOncePerPeriodWithoutTheLock) {
  // std::mutex, not absl::Mutex: TSan sees pthread locking, not Debian's uninstrumented
  // Abseil (common/mutex.h has the same reason).
  std::mutex mu;
  std::condition_variable changed;
  std::vector<daemon::QueueDepths> reports;
  options.tick_ms = 1;
  options.on_tick_ms = 1000;
  options.on_tick = [&](const daemon::QueueDepths& d) {
    manager->Depths();  // would deadlock if the hook ran under the manager's lock
    std::lock_guard<std::mutex> lock(mu);
    reports.push_back(d);
    changed.notify_all();
  };
  Start();
  auto reported = [&](size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    changed.wait_for(lock, std::chrono::seconds(10), [&] { return reports.size() >= n; });
    return reports.size();
  };
  ASSERT_EQ(reported(1), 1u);  // the first tick reports (nothing yet)
  Submit(Spec("t.cpu"));
  Submit(Spec("t.cpu"));  // one cpu worker: one runs, one waits
  ::usleep(50 * 1000);    // ~50 ticks, but the fake clock stands still: no new report
  ASSERT_EQ(reported(1), 1u);
  clock.AdvanceMs(1000);
  ASSERT_EQ(reported(2), 2u);
  manager->Drain(absl::ZeroDuration());
  clock.AdvanceMs(1000);
  ASSERT_EQ(reported(3), 3u);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(reports[0].queued + reports[0].running, 0u);
  EXPECT_EQ(reports[1].queued, 1u);
  EXPECT_EQ(reports[1].running, 1u);
  EXPECT_FALSE(reports[1].draining);
  EXPECT_TRUE(reports[2].draining);
}

class TaskManagerRecoveryTest : public TaskManagerTest {
 protected:
  void SetUp() override {
    TaskManagerTest::SetUp();
    char tmpl[] = "/tmp/taskrt-tm-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    TaskManagerTest::TearDown();
    manager.reset();
    journal_.reset();
    std::filesystem::remove_all(dir_);
  }
  void OpenJournal() {
    auto j = daemon::Journal::Open(dir_ + "/journal.db", daemon::Durability::kProcess);
    ASSERT_TRUE(j.ok()) << j.status();
    journal_ = std::move(*j);
    options.journal = journal_.get();
  }
  std::string dir_;
  std::unique_ptr<daemon::Journal> journal_;
};

TEST_F(TaskManagerRecoveryTest, RunningTasksAreRerunOrFailedAndQueuedOnesRequeued) {
  OpenJournal();
  Start();
  v1::TaskSpec rerun = Spec("t.cpu");
  rerun.set_max_attempts(2);
  const std::string a = Submit(rerun);
  const std::string queued = Submit(Spec("t.cpu"));  // waits for the one cpu worker
  const std::string b = Submit(Spec("t.io"));        // one attempt, running
  const std::string done = Submit(Spec("t.io"));
  ASSERT_EQ(pool->Runs(3).size(), 3u);
  pool->Finish(RunNo(3).seq(), true, "kept");
  ASSERT_EQ(Get(done).state(), v1::TASK_STATE_SUCCEEDED);
  manager->Stop();  // as if the daemon died: nothing more reaches the journal
  manager.reset();
  journal_->Close();
  journal_.reset();

  OpenJournal();
  Start();
  const TaskManager::Recovery rec = manager->recovery();
  EXPECT_EQ(rec.finished, 1u);
  EXPECT_EQ(rec.requeued, 1u);
  EXPECT_EQ(rec.rerun, 1u);
  EXPECT_EQ(rec.failed, 1u);
  EXPECT_EQ(Get(done).output(), "kept");
  const v1::Stats stats = manager->GetStats(caller);
  ASSERT_EQ(stats.learned_size(), 1) << "what was learned survives the restart";
  EXPECT_EQ(stats.learned(0).handler(), "t.io");
  EXPECT_EQ(stats.learned(0).runs(), 1u);
  const v1::Task tb = Get(b);
  EXPECT_EQ(tb.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(tb.error().kind(), v1::FAILURE_KIND_DAEMON_RESTART);
  const auto run = RunNo(1);  // the new pool's first dispatch: the re-run
  EXPECT_EQ(run.task_id(), a);
  EXPECT_EQ(run.attempt(), 2);
  EXPECT_TRUE(Get(a).decision().recovered());
  pool->Finish(run.seq(), true);
  EXPECT_EQ(RunNo(2).task_id(), queued);
}

}  // namespace
}  // namespace taskrt::testing
