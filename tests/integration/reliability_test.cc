// Promises about accepted tasks: durable across restarts, retried when they may be,
// deduplicated by idempotency key, refused (not half-accepted) when the queue is full,
// drained on a graceful stop.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/testing/await_state.h"
#include "tests/testing/status_matchers.h"

namespace taskrt::testing {
namespace {

class ReliabilityTest : public DaemonTest {
 protected:
  void Configure(daemon::DaemonOptions& options) override {
    options.tasks.cpu_workers = 1;
    options.drain_timeout = absl::Seconds(10);
    Adjust(options);
  }
  virtual void Adjust(daemon::DaemonOptions& options) {}

  // Stops the daemon abruptly (running tasks are left RUNNING in the journal) and
  // starts a new one on the same socket and state directory.
  void Restart() {
    client_.reset();
    daemon_->Shutdown();
    daemon_.reset();
    StartDaemon();
  }

  void AwaitRunning(const std::string& id) {
    ASSERT_THAT(AwaitState(*client_, id, v1::TASK_STATE_RUNNING), IsOk());
  }

  v1::TaskSpec Spec(const std::string& handler, const std::string& input, uint32_t attempts = 1) {
    v1::TaskSpec spec = MakeTask(handler, input);
    spec.set_max_attempts(attempts);
    spec.set_retry_backoff_ms(10);
    return spec;
  }
};

TEST_F(ReliabilityTest, RestartKeepsFinishedRequeuesQueuedAndRerunsRunning) {
  auto done = client_->Run(Spec("math.primes", R"({"below": 1000})"), absl::Seconds(30));
  ASSERT_TRUE(done.ok());
  auto once = client_->Submit(Spec("test.burn", "60000"));  // 1 attempt
  ASSERT_TRUE(once.ok());
  AwaitRunning(*once);
  auto queued = client_->Submit(Spec("math.primes", R"({"below": 2000})"));
  ASSERT_TRUE(queued.ok());
  Restart();
  EXPECT_EQ(daemon_->recovery().finished, 1u);
  EXPECT_EQ(daemon_->recovery().requeued, 1u);
  EXPECT_EQ(daemon_->recovery().failed, 1u);

  auto old = client_->Get(done->id());
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(old->output(), done->output());

  auto q = client_->Wait(*queued, absl::Seconds(30));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_TRUE(q->decision().recovered());
  EXPECT_NE(q->decision().evidence().find("recovered after daemon restart"), std::string::npos);

  auto o = client_->Wait(*once, absl::Seconds(30));
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(o->error().kind(), v1::FAILURE_KIND_DAEMON_RESTART);
  EXPECT_NE(o->error().message().find("no attempt was left"), std::string::npos);
}

TEST_F(ReliabilityTest, RunningTaskWithAttemptsLeftIsRerunAfterRestart) {
  auto id = client_->Submit(Spec("test.burn", "1500", /*attempts=*/2));
  ASSERT_TRUE(id.ok());
  AwaitRunning(*id);
  Restart();
  EXPECT_EQ(daemon_->recovery().rerun, 1u);
  auto t = client_->Wait(*id, absl::Seconds(30));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(t->decision().attempt(), 2);
  EXPECT_TRUE(t->decision().recovered());
  ASSERT_EQ(t->attempts_size(), 1);
  EXPECT_EQ(t->attempts(0).error().kind(), v1::FAILURE_KIND_DAEMON_RESTART);
}

TEST_F(ReliabilityTest, CrashesAreRetriedUntilAttemptsRunOut) {
  auto t = client_->Run(Spec("test.crash", "", /*attempts=*/3), absl::Seconds(60));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t->error().kind(), v1::FAILURE_KIND_WORKER_CRASHED);
  EXPECT_NE(t->error().message().find("attempt 3 of 3"), std::string::npos) << t->error().message();
  EXPECT_EQ(t->decision().attempt(), 3);
  ASSERT_EQ(t->attempts_size(), 2);
  EXPECT_EQ(t->attempts(0).attempt(), 1);
  EXPECT_EQ(t->attempts(1).error().signal_name(), "SIGSEGV");
  EXPECT_NE(t->attempts(0).decision().worker_pid(), t->attempts(1).decision().worker_pid());
}

TEST_F(ReliabilityTest, RetryableHandlerErrorIsRetriedPlainErrorIsNot) {
  const std::string counter = dir_ + "/flaky";
  auto t = client_->Run(Spec("test.flaky", counter + " 3", /*attempts=*/5), absl::Seconds(60));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(t->output(), "succeeded on call 3");
  EXPECT_EQ(t->attempts_size(), 2);
  EXPECT_TRUE(t->attempts(0).error().retryable());
  auto f = client_->Run(Spec("test.fail", "", /*attempts=*/5), absl::Seconds(60));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(f->attempts_size(), 0);  // not retryable: one attempt only
}

TEST_F(ReliabilityTest, TimeoutIsRetriedToo) {
  v1::TaskSpec spec = Spec("test.hang", "", /*attempts=*/2);
  spec.set_timeout_ms(200);
  auto t = client_->Run(spec, absl::Seconds(60));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->state(), v1::TASK_STATE_TIMED_OUT);
  EXPECT_EQ(t->attempts_size(), 1);
  EXPECT_EQ(t->attempts(0).error().kind(), v1::FAILURE_KIND_TIMEOUT);
}

TEST_F(ReliabilityTest, IdempotencyKeyReturnsTheSameTask) {
  v1::TaskSpec spec = Spec("math.primes", R"({"below": 100})");
  spec.set_idempotency_key("order-42");
  auto a = client_->Submit(spec);
  auto b = client_->Submit(spec);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  auto batch = client_->SubmitBatch({spec, spec});
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ((*batch)[0], *a);
  EXPECT_EQ((*batch)[1], *a);
  ASSERT_TRUE(client_->Wait(*a, absl::Seconds(30)).ok());
  Restart();  // the key survives a restart with its task
  auto c = client_->Submit(spec);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, *a);
  auto stats = client_->GetStats();
  ASSERT_TRUE(stats.ok());
}

class BackpressureTest : public ReliabilityTest {
 protected:
  void Adjust(daemon::DaemonOptions& options) override { options.tasks.max_queued = 3; }
};

TEST_F(BackpressureTest, FullQueueRefusesTheWholeBatch) {
  auto first = client_->SubmitBatch(std::vector<v1::TaskSpec>(2, Spec("test.burn", "2000")));
  ASSERT_TRUE(first.ok());
  auto over = client_->SubmitBatch(std::vector<v1::TaskSpec>(2, Spec("test.burn", "10")));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("--max-queued"), std::string::npos);
  v1::ListRequest all;
  auto listed = client_->List(all);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 2u);  // nothing of the refused batch was accepted
  EXPECT_TRUE(client_->Submit(Spec("test.burn", "10")).ok());  // one still fits
  ASSERT_TRUE(client_->Cancel(*first).ok());
}

TEST_F(ReliabilityTest, DrainLetsRunningFinishAndKeepsQueued) {
  // Long enough that the drain surely starts while it runs (sanitizer builds are slow).
  auto running = client_->Submit(Spec("test.burn", "1500"));
  ASSERT_TRUE(running.ok());
  AwaitRunning(*running);
  auto queued = client_->Submit(Spec("math.primes", R"({"below": 100})"));
  ASSERT_TRUE(queued.ok());
  std::thread drainer([this] { daemon_->Drain(); });
  // New work is refused while draining (bounded wait for the drain to begin).
  absl::Status refused;
  for (int i = 0; i < 200; ++i) {
    refused = client_->Submit(Spec("sys.noop", "")).status();
    if (!refused.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  drainer.join();
  Restart();
  auto r = client_->Get(*running);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state(), v1::TASK_STATE_SUCCEEDED);  // it finished during the drain
  EXPECT_FALSE(r->decision().recovered());
  auto q = client_->Wait(*queued, absl::Seconds(30));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_TRUE(q->decision().recovered());
}

// AddressSanitizer and ThreadSanitizer reserve terabytes of address space, which an
// RLIMIT_AS limit forbids: no memory limit in sanitizer builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr uint64_t kTestMemoryLimit = 0;
#else
constexpr uint64_t kTestMemoryLimit = 1ull << 30;
#endif

class WorkerHealthTest : public ReliabilityTest {
 protected:
  void Adjust(daemon::DaemonOptions& options) override {
    options.tasks.worker_max_tasks = 2;
    options.tasks.cpu_memory_limit_bytes = kTestMemoryLimit;
  }
};

TEST_F(WorkerHealthTest, WorkerIsRecycledAfterMaxTasks) {
  std::vector<int> pids;
  for (int i = 0; i < 3; ++i) {
    auto t = client_->Run(Spec("test.pid", ""), absl::Seconds(30));
    ASSERT_TRUE(t.ok());
    ASSERT_EQ(t->state(), v1::TASK_STATE_SUCCEEDED);
    pids.push_back(t->decision().worker_pid());
  }
  EXPECT_EQ(pids[0], pids[1]);
  EXPECT_NE(pids[1], pids[2]);  // replaced after its 2nd task
  auto stats = client_->GetStats();
  ASSERT_TRUE(stats.ok());
  for (const auto& p : stats->pools()) {
    if (p.name() == "cpu") {
      EXPECT_GE(p.recycled(), 1u);
      EXPECT_EQ(p.respawns(), 0u);  // a recycling is not a crash
    }
  }
}

TEST_F(WorkerHealthTest, TaskOverTheMemoryLimitFailsWithMemoryLimit) {
  if (kTestMemoryLimit == 0) GTEST_SKIP() << "RLIMIT_AS cannot be combined with a sanitizer";
  auto big = client_->Run(Spec("test.alloc", "2048"), absl::Seconds(60));
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(big->error().kind(), v1::FAILURE_KIND_MEMORY_LIMIT) << big->error().message();
  auto small = client_->Run(Spec("test.alloc", "16"), absl::Seconds(60));
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->state(), v1::TASK_STATE_SUCCEEDED);
}

class StuckIoTest : public ReliabilityTest {
 protected:
  void Adjust(daemon::DaemonOptions& options) override { options.tasks.stuck_grace_ms = 300; }
};

TEST_F(StuckIoTest, IoWorkerWithAThreadStuckAfterCancellationIsRecycled) {
  // test.hang ignores cancellation; forced onto an io thread it stays stuck after its
  // timeout. A sleep on the same io worker is caught in the recycling and retried.
  auto sleeper = client_->Submit(Spec("sys.sleep", R"({"ms": 3000})", /*attempts=*/2));
  ASSERT_TRUE(sleeper.ok());
  AwaitRunning(*sleeper);
  v1::TaskSpec hang = Spec("test.hang", "");
  hang.set_requested_class(v1::TASK_CLASS_IO);
  hang.set_timeout_ms(200);
  auto h = client_->Run(hang, absl::Seconds(30));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->state(), v1::TASK_STATE_TIMED_OUT);
  auto s = client_->Wait(*sleeper, absl::Seconds(30));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->state(), v1::TASK_STATE_SUCCEEDED);  // its 2nd attempt, on the new worker
  ASSERT_EQ(s->attempts_size(), 1);
  EXPECT_NE(s->attempts(0).error().message().find("kept running"), std::string::npos)
      << s->attempts(0).error().message();
  EXPECT_EQ(client_->Run(Spec("sys.noop", ""), absl::Seconds(30))->state(),
            v1::TASK_STATE_SUCCEEDED);
}

TEST(StateDirTest, CorruptJournalStopsStartWithAClearError) {
  const std::string dir = MakeTempDir();
  daemon::DaemonOptions options = TestDaemonOptions(dir);
  options.state_dir = dir + "/state";
  ::mkdir(options.state_dir.c_str(), 0700);
  std::ofstream(options.state_dir + "/journal.db", std::ios::binary) << std::string(8192, 'Z');
  auto d = daemon::Daemon::Start(options);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_NE(d.status().message().find("journal.db"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(StateDirTest, UnusableStateDirIsAClearError) {
  const std::string dir = MakeTempDir();
  daemon::DaemonOptions options = TestDaemonOptions(dir);
  options.state_dir = "/dev/null/state";
  auto d = daemon::Daemon::Start(options);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("--state-dir"), std::string::npos) << d.status();
  std::filesystem::remove_all(dir);
}

TEST(StateDirTest, TwoDaemonsCannotShareAStateDir) {
  const std::string dir = MakeTempDir();
  daemon::DaemonOptions a = TestDaemonOptions(dir);
  a.state_dir = dir + "/state";
  auto first = daemon::Daemon::Start(a);
  ASSERT_TRUE(first.ok()) << first.status();
  daemon::DaemonOptions b = a;
  b.socket_path = dir + "/other.sock";
  auto second = daemon::Daemon::Start(b);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("own --state-dir"), std::string::npos);
  (*first)->Shutdown();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace taskrt::testing
