// Isolation: crashes, aborts, hangs and timeouts take down one worker, never the
// daemon or other tasks; cancellation of queued and running tasks.
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "tests/integration/daemon_fixture.h"
#include "tests/testing/await_state.h"
#include "tests/testing/status_matchers.h"

namespace taskrt::testing {
namespace {

// One cpu worker, so that tests control what is queued behind what.
class FaultTest : public DaemonTest {
 protected:
  void Configure(daemon::DaemonOptions& options) override { options.tasks.cpu_workers = 1; }

  int CpuWorkerPid() {
    for (int i = 0; i < 500; ++i) {  // respawn takes a moment
      auto stats = client_->GetStats();
      if (stats.ok()) {
        for (const auto& w : stats->workers()) {
          if (w.pool() == "cpu" && w.state() == "idle") return w.pid();
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

  // Waits until `id` is RUNNING (bounded).
  void AwaitRunning(const std::string& id) {
    ASSERT_THAT(AwaitState(*client_, id, v1::TASK_STATE_RUNNING), IsOk());
  }

  uint64_t CpuRespawns() {
    auto stats = client_->GetStats();
    for (const auto& p : stats->pools())
      if (p.name() == "cpu") return p.respawns();
    return 0;
  }
};

TEST_F(FaultTest, SegfaultFailsOnlyThatTaskAndTheWorkerIsReplaced) {
  const int before = CpuWorkerPid();
  ASSERT_GT(before, 0);
  v1::Task t = Run("test.crash", "");
  ASSERT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_WORKER_CRASHED);
  EXPECT_EQ(t.error().signal(), SIGSEGV);
  EXPECT_EQ(t.error().signal_name(), "SIGSEGV");
  EXPECT_NE(t.error().message().find("SIGSEGV"), std::string::npos);
  EXPECT_EQ(t.decision().worker_pid(), before);
  // The daemon lives on and a new worker serves the next task.
  v1::Task next = Run("math.primes", R"({"below": 1000})");
  EXPECT_EQ(next.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_NE(next.decision().worker_pid(), before);
  EXPECT_GE(CpuRespawns(), 1u);
}

TEST_F(FaultTest, AbortIsReportedWithSigabrt) {
  v1::Task t = Run("test.abort", "");
  ASSERT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.error().signal_name(), "SIGABRT");
}

TEST_F(FaultTest, CrashInIoWorkerFailsItsTasksOnly) {
  // A long sleep on the io worker, then a crash forced onto the io pool.
  auto sleeper = client_->Submit(MakeTask("sys.sleep", R"({"ms": 60000})"));
  ASSERT_TRUE(sleeper.ok());
  AwaitRunning(*sleeper);
  v1::Task crash = Run("test.crash", "", v1::TASK_CLASS_IO);
  EXPECT_EQ(crash.error().kind(), v1::FAILURE_KIND_WORKER_CRASHED);
  auto s = client_->Wait(*sleeper, absl::Seconds(30));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->error().kind(), v1::FAILURE_KIND_WORKER_CRASHED);  // it was in that worker
  // A cpu-pool task was never affected, and the io pool is back.
  EXPECT_EQ(Run("math.primes", R"({"below": 1000})").state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(Run("sys.noop", "").state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(FaultTest, HungCpuTaskIsKilledAtItsTimeout) {
  const int before = CpuWorkerPid();
  v1::Task t = Run("test.hang", "", v1::TASK_CLASS_AUTO, /*timeout_ms=*/300);
  ASSERT_EQ(t.state(), v1::TASK_STATE_TIMED_OUT);
  EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_TIMEOUT);
  EXPECT_NE(t.error().message().find("killed"), std::string::npos) << t.error().message();
  const int after = CpuWorkerPid();
  EXPECT_GT(after, 0);
  EXPECT_NE(after, before);
  EXPECT_NE(::kill(before, 0), 0);  // the old worker is gone (and reaped)
}

TEST_F(FaultTest, IoTaskPastItsTimeoutIsCancelledThroughItsContext) {
  v1::Task t = Run("sys.sleep", R"({"ms": 30000})", v1::TASK_CLASS_AUTO, 200);
  ASSERT_EQ(t.state(), v1::TASK_STATE_TIMED_OUT);
  EXPECT_NE(t.error().message().find("context"), std::string::npos);
  // The io worker was not killed for it.
  auto stats = client_->GetStats();
  for (const auto& p : stats->pools()) {
    if (p.name() == "io") {
      EXPECT_EQ(p.respawns(), 0u);
    }
  }
}

TEST_F(FaultTest, CancelQueuedThenRunningCpuTask) {
  auto running = client_->Submit(MakeTask("test.burn", "60000", v1::TASK_CLASS_CPU));
  ASSERT_TRUE(running.ok());
  AwaitRunning(*running);
  auto queued = client_->Submit(MakeTask("math.primes", R"({"below": 10})"));
  ASSERT_TRUE(queued.ok());
  auto after = client_->Cancel({*queued});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)[0].state(), v1::TASK_STATE_CANCELLED);
  EXPECT_NE((*after)[0].error().message().find("queued"), std::string::npos);

  auto c = client_->Cancel({*running});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[0].state(), v1::TASK_STATE_CANCELLED);
  auto waited = client_->Wait(*running, absl::Seconds(10));
  ASSERT_TRUE(waited.ok());
  EXPECT_EQ(waited->state(), v1::TASK_STATE_CANCELLED);
  // Cancelling a final task changes nothing.
  auto again = client_->Cancel({*running});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(Run("math.primes", R"({"below": 10})").state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(FaultTest, CancelRunningIoTask) {
  auto id = client_->Submit(MakeTask("sys.exec", R"({"argv": ["sleep", "60"]})"));
  ASSERT_TRUE(id.ok());
  AwaitRunning(*id);
  auto c = client_->Cancel({*id});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[0].state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(Run("sys.noop", "").state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(FaultTest, HigherPriorityRunsFirst) {
  auto blocker = client_->Submit(MakeTask("test.burn", "1500", v1::TASK_CLASS_CPU));
  ASSERT_TRUE(blocker.ok());
  AwaitRunning(*blocker);
  v1::TaskSpec low = MakeTask("test.pid", "", v1::TASK_CLASS_CPU);
  v1::TaskSpec high = low;
  high.set_priority(10);
  auto low_id = client_->Submit(low);
  auto high_id = client_->Submit(high);
  ASSERT_TRUE(low_id.ok() && high_id.ok());
  auto tasks = client_->WaitAll({*low_id, *high_id}, absl::Seconds(60));
  ASSERT_TRUE(tasks.ok());
  EXPECT_LT((*tasks)[1].decision().started_unix_us(), (*tasks)[0].decision().started_unix_us());
}

TEST_F(FaultTest, HandlerErrorsAndExceptionsAreReported) {
  v1::Task t = Run("test.fail", "");
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_HANDLER_ERROR);
  EXPECT_NE(t.error().message().find("on purpose"), std::string::npos);
  t = Run("test.throw", "");
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_NE(t.error().message().find("thrown on purpose"), std::string::npos);
}

// Short tasks wait in a busy cpu worker (--cpu-prefetch): test.nap is learned short from
// three quick runs, then a long nap heads the worker and short ones queue behind it.
class PrefetchTest : public FaultTest {
 protected:
  // The long nap, running in the only cpu worker, and `n` short ones held behind it.
  std::pair<std::string, std::vector<std::string>> LongThenShort(int n) {
    for (int i = 0; i < 3; ++i) EXPECT_EQ(Run("test.nap", "0").state(), v1::TASK_STATE_SUCCEEDED);
    auto head = client_->Submit(MakeTask("test.nap", "1500"));
    EXPECT_TRUE(head.ok());
    AwaitRunning(*head);
    std::vector<std::string> behind;
    for (int i = 0; i < n; ++i) {
      auto id = client_->Submit(MakeTask("test.nap", "0"));
      EXPECT_TRUE(id.ok());
      behind.push_back(*id);
    }
    for (const auto& id : behind) AwaitRunning(id);  // assigned: held by the worker
    return {*head, behind};
  }
};

TEST_F(PrefetchTest, CancellingAWaitingTaskLeavesTheRunningOneAlone) {
  const int pid = CpuWorkerPid();
  auto [head, behind] = LongThenShort(2);
  auto cancelled = client_->Cancel({behind[0]});
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ((*cancelled)[0].state(), v1::TASK_STATE_CANCELLED);
  EXPECT_NE((*cancelled)[0].error().message().find("had not started"), std::string::npos)
      << (*cancelled)[0].error().message();
  auto h = client_->Wait(head, absl::Seconds(30));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(h->decision().worker_pid(), pid);  // not killed for the other's cancel
  auto other = client_->Wait(behind[1], absl::Seconds(30));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(CpuRespawns(), 0u);
}

TEST_F(PrefetchTest, TasksWaitingInAWorkerThatDiesAreRunAgainWithoutLosingAnAttempt) {
  const int pid = CpuWorkerPid();
  ASSERT_GT(pid, 0);
  auto [head, behind] = LongThenShort(3);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto h = client_->Wait(head, absl::Seconds(30));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(h->error().kind(), v1::FAILURE_KIND_WORKER_CRASHED);
  for (const auto& id : behind) {
    auto t = client_->Wait(id, absl::Seconds(30));
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->state(), v1::TASK_STATE_SUCCEEDED) << t->error().message();
    EXPECT_EQ(t->decision().attempt(), 1) << "a task that never started keeps its attempt";
    EXPECT_NE(t->decision().worker_pid(), pid);
  }
}

// A long task is never held behind another: it waits in the daemon's queue for an idle
// worker (and its timeout, from when it starts, is not spent waiting).
TEST_F(PrefetchTest, LongTasksWaitInTheQueueNotInABusyWorker) {
  auto [head, behind] = LongThenShort(1);
  v1::TaskSpec burn = MakeTask("test.burn", "200", v1::TASK_CLASS_CPU);
  burn.set_timeout_ms(5000);
  auto id = client_->Submit(burn);
  ASSERT_TRUE(id.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto queued = client_->Get(*id);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->state(), v1::TASK_STATE_QUEUED);
  auto t = client_->Wait(*id, absl::Seconds(30));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->state(), v1::TASK_STATE_SUCCEEDED) << t->error().message();
}

}  // namespace
}  // namespace taskrt::testing
