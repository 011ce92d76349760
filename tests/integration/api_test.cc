// The public API's contract: validation, atomic batches, waits, watch, async results,
// and the single-instance lock.
#include <sys/stat.h>

#include <future>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/testing/await_state.h"
#include "tests/testing/status_matchers.h"

namespace taskrt::testing {
namespace {

class ApiTest : public DaemonTest {
 protected:
  void Configure(daemon::DaemonOptions& options) override { options.tasks.max_input_bytes = 1024; }
  size_t TaskCount() {
    v1::ListRequest req;
    req.set_limit(100000);
    auto tasks = client_->List(req);
    return tasks.ok() ? tasks->size() : 0;
  }
};

TEST_F(ApiTest, UnknownHandlerListsTheKnownOnes) {
  auto id = client_->Submit(MakeTask("math.prime", "{}"));
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(id.status().message().find("'math.prime' is not registered"), std::string::npos);
  EXPECT_NE(id.status().message().find("math.primes"), std::string::npos);
  EXPECT_EQ(TaskCount(), 0u);
}

TEST_F(ApiTest, BuiltinInputsAreCheckedAtSubmitAndNothingIsQueued) {
  const std::pair<const char*, const char*> bad[] = {{"sys.sleep", "{ms: 5"},
                                                     {"sys.sleep", R"({"ms": -1})"},
                                                     {"math.primes", R"({"below": "x"})"},
                                                     {"sys.exec", R"({"argv": []})"},
                                                     {"io.read_file", R"({"size": 1})"}};
  for (const auto& [handler, input] : bad) {
    auto id = client_->Submit(MakeTask(handler, input));
    ASSERT_FALSE(id.ok()) << handler << " " << input;
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << handler;
    EXPECT_NE(id.status().message().find(handler), std::string::npos) << id.status().message();
    EXPECT_NE(id.status().message().find("nothing was queued"), std::string::npos)
        << id.status().message();
  }
  // Each handler's error shows its own example input, not another handler's.
  auto sleep = client_->Submit(MakeTask("sys.sleep", "[1]"));
  EXPECT_NE(sleep.status().message().find(R"({"ms": 250})"), std::string::npos)
      << sleep.status().message();
  EXPECT_EQ(TaskCount(), 0u);
  EXPECT_TRUE(client_->Submit(MakeTask("sys.sleep", R"({"ms": 1})")).ok());
}

TEST_F(ApiTest, OversizedInputAndBadFieldsAreRefused) {
  auto id = client_->Submit(MakeTask("test.echo", std::string(2000, 'x')));
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("exceeds the limit of 1024"), std::string::npos);
  v1::TaskSpec bad_class = MakeTask("sys.noop", "");
  bad_class.set_requested_class(static_cast<v1::TaskClass>(7));
  EXPECT_EQ(client_->Submit(bad_class).status().code(), absl::StatusCode::kInvalidArgument);
  v1::TaskSpec no_handler;
  EXPECT_EQ(client_->Submit(no_handler).status().code(), absl::StatusCode::kInvalidArgument);
  v1::TaskSpec long_timeout = MakeTask("sys.noop", "");
  long_timeout.set_timeout_ms(~0ull);
  EXPECT_EQ(client_->Submit(long_timeout).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->SubmitBatch({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TaskCount(), 0u);
}

TEST_F(ApiTest, BatchIsAllOrNothing) {
  std::vector<v1::TaskSpec> specs(5, MakeTask("sys.noop", ""));
  specs[3] = MakeTask("no.such", "");
  auto ids = client_->SubmitBatch(specs);
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.status().message().find("task 4 of 5"), std::string::npos) << ids.status();
  EXPECT_EQ(TaskCount(), 0u);
  specs[3] = MakeTask("sys.noop", "");
  ids = client_->SubmitBatch(specs);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), 5u);
  auto tasks = client_->WaitAll(*ids, absl::Seconds(30));
  ASSERT_TRUE(tasks.ok());
  for (size_t i = 0; i < ids->size(); ++i) EXPECT_EQ((*tasks)[i].id(), (*ids)[i]);
}

TEST_F(ApiTest, UnknownIdsAreNotFound) {
  EXPECT_EQ(client_->Get("nope-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Wait("nope-1", absl::Seconds(1)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Cancel({"nope-1"}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ApiTest, WaitGivesUpWithDeadlineExceededAndTaskGoesOn) {
  auto id = client_->Submit(MakeTask("sys.sleep", R"({"ms": 1500})"));
  ASSERT_TRUE(id.ok());
  auto early = client_->Wait(*id, absl::Milliseconds(100));
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.status().code(), absl::StatusCode::kDeadlineExceeded);
  auto later = client_->Wait(*id, absl::Seconds(30));
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(ApiTest, AsyncCallbackAndFuture) {
  auto a = client_->Submit(MakeTask("sys.sleep", R"({"ms": 50})"));
  auto b = client_->Submit(MakeTask("math.primes", R"({"below": 5000})"));
  ASSERT_TRUE(a.ok() && b.ok());
  std::promise<absl::StatusOr<v1::Task>> got;
  client_->WaitAsync(*a, [&got](absl::StatusOr<v1::Task> t) { got.set_value(std::move(t)); });
  auto fut = client_->WaitFuture(*b);
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  auto tb = fut.get();
  ASSERT_TRUE(tb.ok());
  EXPECT_EQ(tb->state(), v1::TASK_STATE_SUCCEEDED);
  auto fa = got.get_future();
  ASSERT_EQ(fa.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  auto ta = fa.get();
  ASSERT_TRUE(ta.ok());
  EXPECT_EQ(ta->decision().executor(), v1::EXECUTOR_ASYNC);
}

// Many asynchronous waits at once all complete, each with its own task; destroying the
// client cancels those still in flight, whose callbacks then get CANCELLED.
TEST_F(ApiTest, ManyAsyncWaitsCompleteAndDestroyingTheClientCancelsTheRest) {
  constexpr int kWaits = 200;
  std::vector<std::string> ids;
  for (int i = 0; i < kWaits; ++i) {
    auto id = client_->Submit(MakeTask("sys.sleep", R"({"ms": 20})"));
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  std::vector<std::future<absl::StatusOr<v1::Task>>> futures;
  for (const auto& id : ids) futures.push_back(client_->WaitFuture(id, absl::Seconds(60)));
  for (int i = 0; i < kWaits; ++i) {
    ASSERT_EQ(futures[i].wait_for(std::chrono::seconds(60)), std::future_status::ready);
    auto task = futures[i].get();
    ASSERT_TRUE(task.ok()) << task.status();
    EXPECT_EQ(task->id(), ids[i]);
    EXPECT_EQ(task->state(), v1::TASK_STATE_SUCCEEDED);
  }

  auto slow = client_->Submit(MakeTask("sys.sleep", R"({"ms": 60000})"));
  ASSERT_TRUE(slow.ok()) << slow.status();
  auto pending = client_->WaitFuture(*slow);
  client_.reset();
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  absl::StatusOr<v1::Task> cancelled = pending.get();
  EXPECT_TRUE(absl::IsCancelled(cancelled.status())) << cancelled.status();
}

// An asynchronous wait keeps trying while the daemon is away (as Wait does); destroying
// the client meanwhile ends it with CANCELLED instead of leaving it behind.
TEST_F(ApiTest, DestroyingTheClientWhileAWaitRetriesCancelsIt) {
  auto id = client_->Submit(MakeTask("sys.sleep", R"({"ms": 60000})"));
  ASSERT_TRUE(id.ok()) << id.status();
  auto pending = client_->WaitFuture(*id);
  absl::SleepFor(absl::Milliseconds(200));
  daemon_->Shutdown();
  EXPECT_EQ(pending.wait_for(std::chrono::milliseconds(700)), std::future_status::timeout)
      << "the wait gave up at once instead of retrying";
  client_.reset();
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  absl::StatusOr<v1::Task> cancelled = pending.get();
  EXPECT_TRUE(absl::IsCancelled(cancelled.status())) << cancelled.status();
}

TEST_F(ApiTest, WatchStreamsEveryStateWithItsDecision) {
  std::vector<v1::TaskEvent> events;
  absl::Mutex mu;
  std::thread watcher([&] {
    v1::WatchRequest req;
    auto status = client_->Watch(
        req,
        [&](const v1::TaskEvent& e) {
          absl::MutexLock lock(&mu);
          events.push_back(e);
          // Only this test submits math.primes: stop after its final event.
          return !(e.handler() == "math.primes" && e.state() == v1::TASK_STATE_SUCCEEDED);
        },
        absl::Seconds(30));
    EXPECT_TRUE(status.ok()) << status;
  });
  // Give the watch a moment to be registered, then run a task through.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto id = client_->Submit(MakeTask("math.primes", R"({"below": 20000})"));
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(client_->Wait(*id, absl::Seconds(30)).ok());
  watcher.join();
  std::vector<v1::TaskState> states;
  for (const auto& e : events) {
    if (e.task_id() != *id) continue;
    states.push_back(e.state());
    EXPECT_EQ(e.handler(), "math.primes");
    EXPECT_EQ(e.decision().resolved_class(), v1::TASK_CLASS_CPU);
  }
  ASSERT_EQ(states.size(), 3u);
  EXPECT_EQ(states[0], v1::TASK_STATE_QUEUED);
  EXPECT_EQ(states[1], v1::TASK_STATE_RUNNING);
  EXPECT_EQ(states[2], v1::TASK_STATE_SUCCEEDED);
}

TEST_F(ApiTest, SecondDaemonOnTheSameSocketIsRefused) {
  auto second = daemon::Daemon::Start(TestDaemonOptions(dir_));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(second.status().message().find("already serving"), std::string::npos);
  // The first one still answers.
  EXPECT_EQ(Run("sys.noop", "").state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(ApiTest, ListAndStatsReflectTheTaskTable) {
  ASSERT_EQ(Run("sys.noop", "").state(), v1::TASK_STATE_SUCCEEDED);
  ASSERT_EQ(Run("test.fail", "").state(), v1::TASK_STATE_FAILED);
  v1::ListRequest failed;
  failed.add_states(v1::TASK_STATE_FAILED);
  auto tasks = client_->List(failed);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ((*tasks)[0].spec().handler(), "test.fail");
  auto stats = client_->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->tasks_submitted(), 2u);
  EXPECT_EQ(stats->tasks_by_state().at("TASK_STATE_SUCCEEDED"), 1u);
  EXPECT_EQ(stats->pools_size(), 2);
}

// The per-state counts in GetStats are kept as tasks change state and leave the table;
// they must match the table itself (read through List) after every kind of change.
class StatsCountTest : public DaemonTest {
 protected:
  void Configure(daemon::DaemonOptions& options) override { options.tasks.max_retained = 5; }
};

TEST_F(StatsCountTest, StateCountsMatchTheTaskTable) {
  for (int i = 0; i < 8; ++i) ASSERT_EQ(Run("sys.noop", "").state(), v1::TASK_STATE_SUCCEEDED);
  ASSERT_EQ(Run("test.fail", "").state(), v1::TASK_STATE_FAILED);
  // Two CPU sleeps hold the cpu pool, so a third queues; then cancel the queued one.
  std::vector<std::string> running;
  for (int i = 0; i < 2; ++i) {
    auto id = client_->Submit(MakeTask("sys.sleep", R"({"ms": 30000})", v1::TASK_CLASS_CPU));
    ASSERT_TRUE(id.ok()) << id.status();
    running.push_back(*id);
  }
  auto queued = client_->Submit(MakeTask("sys.noop", "", v1::TASK_CLASS_CPU));
  ASSERT_TRUE(queued.ok()) << queued.status();
  auto extra = client_->Submit(MakeTask("sys.noop", "", v1::TASK_CLASS_CPU));
  ASSERT_TRUE(extra.ok()) << extra.status();
  ASSERT_TRUE(client_->Cancel({*queued}).ok());
  ASSERT_THAT(AwaitState(*client_, running[1], v1::TASK_STATE_RUNNING), IsOk());
  v1::ListRequest all;
  all.set_limit(1000);
  auto tasks = client_->List(all);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  std::map<std::string, uint64_t> expected;
  for (const auto& t : *tasks) ++expected[v1::TaskState_Name(t.state())];
  auto stats = client_->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const std::map<std::string, uint64_t> got(stats->tasks_by_state().begin(),
                                            stats->tasks_by_state().end());
  EXPECT_EQ(got, expected);
  // Retention kept 5 final tasks; the running, queued and the cancelled one are counted.
  EXPECT_EQ(got.at("TASK_STATE_RUNNING"), 2u);
  EXPECT_EQ(got.at("TASK_STATE_QUEUED"), 1u);
  ASSERT_TRUE(client_->Cancel(running).ok());
}

TEST(DaemonStartTest, SocketAndItsNewDirectoryArePrivate) {
  const std::string dir = MakeTempDir();
  daemon::DaemonOptions options = TestDaemonOptions(dir);
  options.socket_path = dir + "/run/taskrt/t.sock";
  auto d = daemon::Daemon::Start(options);
  ASSERT_TRUE(d.ok()) << d.status();
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/run/taskrt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(options.socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  (*d)->Shutdown();
  EXPECT_NE(::stat(options.socket_path.c_str(), &st), 0);  // removed at shutdown
  std::filesystem::remove_all(dir);
}

TEST(DaemonStartTest, ServesLoopbackTcpToo) {
  const std::string dir = MakeTempDir();
  daemon::DaemonOptions options = TestDaemonOptions(dir);
  options.listen = {"127.0.0.1:0"};
  auto d = daemon::Daemon::Start(options);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ((*d)->tcp_ports().size(), 1u);
  ClientOptions copts;
  copts.target = absl::StrCat("127.0.0.1:", (*d)->tcp_ports()[0]);
  copts.token_file = (*d)->token_file();  // created 0600 in the state directory
  auto client = Client::Connect(copts);
  ASSERT_TRUE(client.ok()) << client.status();
  auto task = (*client)->Run(MakeTask("sys.noop", ""), absl::Seconds(30));
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->state(), v1::TASK_STATE_SUCCEEDED);
  (*d)->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST(DaemonStartTest, BadPluginIsAClearStartupError) {
  const std::string dir = MakeTempDir();
  daemon::DaemonOptions options = TestDaemonOptions(dir);
  options.tasks.plugins = {"/no/such/plugin.so"};
  auto d = daemon::Daemon::Start(options);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("/no/such/plugin.so"), std::string::npos) << d.status();
  std::filesystem::remove_all(dir);
}

TEST(DaemonStartTest, NonLoopbackListenIsRefused) {
  const std::string dir = MakeTempDir();
  daemon::DaemonOptions options = TestDaemonOptions(dir);
  options.listen = {"0.0.0.0:7070"};
  auto d = daemon::Daemon::Start(options);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("loopback"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(ClientConnectTest, NoDaemonSaysHowToStartOne) {
  ClientOptions options;
  options.socket_path = "/tmp/taskrt-no-such-dir/taskrt.sock";
  options.connect_timeout = absl::Milliseconds(300);
  auto c = Client::Connect(options);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(c.status().message().find("taskrtd"), std::string::npos) << c.status();
}

}  // namespace
}  // namespace taskrt::testing
