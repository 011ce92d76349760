// Fault tests against a real taskrtd process: kill -9 of the daemon under load and a
// restart, kill -9 of workers under load, 50 concurrent clients. Every accepted task
// must end exactly once in a final state, none missing, none executed more often than
// its attempts allow (executions are counted by the test.record handler in a file).
// Also what needs the client and the daemon in separate processes: the SDK's
// asynchronous waits, on gRPC threads of the client's own.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/util.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/status_matchers.h"

namespace taskrt::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::map<std::string, int> CountExecutions(const std::string& path) {
  std::map<std::string, int> counts;
  std::ifstream in(path);
  std::string id;
  while (in >> id) ++counts[id];
  return counts;
}

class CrashRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    record_ = dir_ + "/executions";
  }
  void TearDown() override {
    client_.reset();
    daemon_.reset();  // stops it by its pid
    std::filesystem::remove_all(dir_);
  }

  // Starts taskrtd on dir_, or again after KillDaemon (same socket and journal), and
  // connects client_ to it.
  void StartDaemon() {
    if (daemon_ == nullptr) {
      DaemonProcessOptions options;
      options.binary = TASKRT_DAEMON_PATH;
      options.args = {"--plugin", TASKRT_TEST_PLUGIN_PATH, "--cpu-workers", "2", "--io-threads",
                      "4",        "--durability",          "full"};
      options.dir = dir_;
      auto started = DaemonProcess::Start(options);
      ASSERT_THAT(started, IsOk());
      daemon_ = *std::move(started);
    } else {
      ASSERT_THAT(daemon_->Restart(), IsOk());
    }
    ClientOptions options;
    options.socket_path = daemon_->socket_path();
    auto client = Client::Connect(options);
    ASSERT_THAT(client, IsOk());
    client_ = *std::move(client);
  }

  // kill -9 of the daemon; its workers die with it.
  void KillDaemon() {
    client_.reset();
    ASSERT_THAT(daemon_->Kill(), IsOk());
  }

  std::vector<v1::TaskSpec> Specs(int n, uint32_t attempts) {
    std::vector<v1::TaskSpec> specs;
    for (int i = 0; i < n; ++i) {
      v1::TaskSpec s =
          MakeTask("test.record", record_, i % 2 == 0 ? v1::TASK_CLASS_CPU : v1::TASK_CLASS_IO);
      s.set_max_attempts(attempts);
      s.set_retry_backoff_ms(10);
      specs.push_back(std::move(s));
    }
    return specs;
  }

  std::string dir_, record_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(CrashRecoveryTest, KillNineOfTheDaemonLosesNoTask) {
  constexpr int kTasks = 3000;
  constexpr uint32_t kAttempts = 3;
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::vector<std::string> ids;
  auto specs = Specs(kTasks, kAttempts);
  for (int i = 0; i < kTasks; i += 500) {
    std::vector<v1::TaskSpec> chunk(specs.begin() + i, specs.begin() + i + 500);
    auto got = client_->SubmitBatch(chunk);
    ASSERT_THAT(got, IsOk());
    ids.insert(ids.end(), got->begin(), got->end());
  }
  // A waiter that outlives the daemon: the SDK's Wait resumes after the restart.
  ClientOptions waiter_options;
  waiter_options.socket_path = daemon_->socket_path();
  auto waiter = Client::Connect(waiter_options);
  ASSERT_THAT(waiter, IsOk());
  auto waited =
      std::async(std::launch::async, [&] { return (*waiter)->WaitAll(ids, absl::Seconds(120)); });
  auto waited_async = (*waiter)->WaitFuture(ids.back(), absl::Seconds(120));  // resumes too
  // Let part of the work run, then kill the daemon in the middle of it.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const size_t before_kill = CountExecutions(record_).size();
  ASSERT_NO_FATAL_FAILURE(KillDaemon());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // workers die with it
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  auto tasks = client_->WaitAll(ids, absl::Seconds(120));
  ASSERT_THAT(tasks, IsOk());
  ASSERT_EQ(tasks->size(), ids.size());

  const auto executions = CountExecutions(record_);
  std::map<v1::TaskState, int> by_state;
  int recovered = 0, duplicates = 0, over_limit = 0, lost = 0;
  for (size_t i = 0; i < tasks->size(); ++i) {
    const v1::Task& t = (*tasks)[i];
    EXPECT_EQ(t.id(), ids[i]);
    EXPECT_TRUE(IsFinal(t.state())) << t.id();
    ++by_state[t.state()];
    if (t.decision().recovered()) ++recovered;
    auto e = executions.find(t.id());
    const int n = e == executions.end() ? 0 : e->second;
    if (n > 1) ++duplicates;
    if (n > static_cast<int>(kAttempts)) ++over_limit;
    if (t.state() == v1::TASK_STATE_SUCCEEDED && n == 0) ++lost;
    if (t.state() == v1::TASK_STATE_FAILED) {
      EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_DAEMON_RESTART) << t.error().message();
    }
  }
  auto resumed = waited.get();
  ASSERT_THAT(resumed, IsOk());
  for (const auto& t : *resumed) EXPECT_TRUE(IsFinal(t.state())) << t.id();
  ASSERT_EQ(waited_async.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  auto resumed_async = waited_async.get();
  ASSERT_THAT(resumed_async, IsOk());
  EXPECT_EQ(resumed_async->id(), ids.back());
  EXPECT_TRUE(IsFinal(resumed_async->state()));
  EXPECT_EQ(over_limit, 0);
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(by_state[v1::TASK_STATE_SUCCEEDED] + by_state[v1::TASK_STATE_FAILED], kTasks);
  EXPECT_GT(before_kill, 0u);  // the kill really happened mid-run...
  EXPECT_GT(recovered, 0);     // ...with work left to recover
  std::printf(
      "daemon kill -9: submitted %d, executed before the kill %zu, recovered %d, "
      "succeeded %d, failed %d, lost 0, executed twice %d, over the attempt limit %d\n",
      kTasks, before_kill, recovered, by_state[v1::TASK_STATE_SUCCEEDED],
      by_state[v1::TASK_STATE_FAILED], duplicates, over_limit);
}

TEST_F(CrashRecoveryTest, KillNineOfRandomWorkersUnderLoad) {
  constexpr int kTasks = 2000;
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  auto ids = client_->SubmitBatch(Specs(kTasks, 3));
  ASSERT_THAT(ids, IsOk());
  std::mt19937 rng(42);
  int killed = 0;
  for (int round = 0; round < 6; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto stats = client_->GetStats();
    ASSERT_THAT(stats, IsOk());
    std::vector<int> pids;
    for (const auto& w : stats->workers())
      if (w.pid() > 0) pids.push_back(w.pid());
    if (pids.empty()) continue;
    if (::kill(pids[rng() % pids.size()], SIGKILL) == 0) ++killed;
  }
  auto tasks = client_->WaitAll(*ids, absl::Seconds(120));
  ASSERT_THAT(tasks, IsOk());
  const auto executions = CountExecutions(record_);
  int succeeded = 0, crashed = 0;
  for (const auto& t : *tasks) {
    ASSERT_TRUE(IsFinal(t.state()));
    if (t.state() == v1::TASK_STATE_SUCCEEDED) {
      ++succeeded;
    } else {
      EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_WORKER_CRASHED);
      EXPECT_EQ(t.error().signal_name(), "SIGKILL");
      ++crashed;
    }
    auto e = executions.find(t.id());
    EXPECT_LE(e == executions.end() ? 0 : e->second, 3) << t.id();
  }
  EXPECT_EQ(succeeded + crashed, kTasks);
  EXPECT_GT(killed, 0);
  std::printf(
      "worker kill -9: submitted %d, workers killed %d, succeeded %d, failed with the "
      "signal %d\n",
      kTasks, killed, succeeded, crashed);
}

// A journal that cannot be written at start-up (here: a 4 KiB file-size limit, less than
// the first WAL frames of a new journal, as a full disk would) stops the daemon with a
// clear error instead of a crash.
TEST(JournalSpaceTest, UnwritableJournalAtStartIsAClearError) {
  if (::access("/usr/bin/prlimit", X_OK) != 0) GTEST_SKIP() << "prlimit (util-linux) missing";
  const std::string dir = MakeTempDir();
  DaemonProcessOptions options;
  options.binary = TASKRT_DAEMON_PATH;
  options.wrapper = {"/usr/bin/prlimit", "--fsize=4096"};
  options.dir = dir;
  options.ready_timeout = absl::Seconds(30);
  {
    // Start's error ends with the daemon's log; a daemon that started after all is
    // stopped by the StatusOr's destructor.
    const auto daemon = DaemonProcess::Start(options);
    EXPECT_THAT(daemon, StatusIs(absl::StatusCode::kInternal,
                                 HasSubstr("exited with code 1 during start-up")))
        << "taskrtd started despite an unwritable journal, or died of a signal instead of "
           "reporting the error";
    EXPECT_THAT(daemon, StatusIs(absl::StatusCode::kInternal,
                                 AllOf(HasSubstr("journal"), HasSubstr("disk full"))));
  }
  std::filesystem::remove_all(dir);
}

#ifdef __SANITIZE_THREAD__
constexpr int kConcurrentClients = 10;  // 50 gRPC channels under TSan take minutes
#else
constexpr int kConcurrentClients = 50;
#endif

TEST_F(CrashRecoveryTest, FiftyConcurrentClientsTotalsAddUp) {
  constexpr int kClients = kConcurrentClients, kEach = 40;
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::atomic<int> succeeded{0}, errors{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      ClientOptions options;
      options.socket_path = daemon_->socket_path();
      auto client = Client::Connect(options);
      if (!client.ok()) {
        ++errors;
        return;
      }
      std::vector<std::string> ids;
      for (int i = 0; i < kEach; ++i) {
        auto id = (*client)->Submit(MakeTask(i % 2 ? "sys.noop" : "test.record", record_));
        if (!id.ok()) {
          ++errors;
          continue;
        }
        ids.push_back(*id);
      }
      auto tasks = (*client)->WaitAll(ids, absl::Seconds(120));
      if (!tasks.ok()) {
        ++errors;
        return;
      }
      for (const auto& t : *tasks) (t.state() == v1::TASK_STATE_SUCCEEDED ? succeeded : errors)++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(succeeded.load(), kClients * kEach);
  auto stats = client_->GetStats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->tasks_submitted(), static_cast<uint64_t>(kClients * kEach));
  EXPECT_EQ(CountExecutions(record_).size(), static_cast<size_t>(kClients * kEach / 2));
}

// A resumable RunMany (StreamOptions::resume) across a kill -9 and restart of the daemon:
// every spec gets exactly one result, and the specs sent again after the restart find
// the tasks the first daemon had accepted instead of creating new ones.
TEST_F(CrashRecoveryTest, KillNineMidStreamAResumableRunManyGetsEveryResultOnce) {
  constexpr int kTasks = 600;
  constexpr uint32_t kAttempts = 3;
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ClientOptions options;
  options.socket_path = daemon_->socket_path();
  auto streamer = Client::Connect(options);
  ASSERT_THAT(streamer, IsOk());
  const auto specs = Specs(kTasks, kAttempts);
  std::vector<int> calls(kTasks, 0);
  std::vector<v1::TaskResult> results(kTasks);
  std::atomic<int> delivered{0};
  auto streamed = std::async(std::launch::async, [&] {
    Client::StreamOptions stream_options;
    stream_options.batch_size = 50;
    stream_options.timeout = absl::Seconds(120);
    stream_options.resume = true;
    return (*streamer)->RunStream(
        specs,
        [&](size_t i, v1::TaskResult& r) {
          ++calls.at(i);
          results[i] = r;
          ++delivered;
        },
        stream_options);
  });
  for (int i = 0; i < 1000 && delivered.load() < 100; ++i) {  // bounded: ~10 s
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const int before_kill = delivered.load();
  ASSERT_NO_FATAL_FAILURE(KillDaemon());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // workers die with it
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ASSERT_EQ(streamed.wait_for(std::chrono::seconds(180)), std::future_status::ready);
  const absl::Status status = streamed.get();
  ASSERT_THAT(status, IsOk());

  EXPECT_GE(before_kill, 100);
  EXPECT_LT(before_kill, kTasks) << "the kill came after the last result: nothing resumed";
  std::set<std::string> ids;
  for (int i = 0; i < kTasks; ++i) {
    EXPECT_EQ(calls[i], 1) << "spec " << i;
    EXPECT_EQ(results[i].state(), v1::TASK_STATE_SUCCEEDED) << "spec " << i;
    ids.insert(results[i].id());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kTasks)) << "two specs got the same task";
  v1::ListRequest request;
  request.set_handler("test.record");
  request.set_limit(10 * kTasks);
  auto listed = client_->List(request);
  ASSERT_THAT(listed, IsOk());
  EXPECT_EQ(listed->size(), static_cast<size_t>(kTasks)) << "a resent spec became a new task";
  const auto executions = CountExecutions(record_);
  for (const std::string& id : ids) {
    auto e = executions.find(id);
    ASSERT_NE(e, executions.end()) << id << " succeeded without running";
    EXPECT_LE(e->second, static_cast<int>(kAttempts)) << id;
  }
}

// A WaitFuture of a task that runs longer than a second gets its result when the task
// ends. Driven by gRPC's callback threads, which pause 100 ms after 1 s without a
// completion, every such result came ~50 ms late; the client's own completion thread
// does not pause. The bound only separates the two cases.
TEST_F(CrashRecoveryTest, AsyncWaitOfATaskLongerThanASecondIsNotHeldBack) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::vector<double> late_ms;
  for (int i = 0; i < 3; ++i) {
    auto id = client_->Submit(MakeTask("sys.sleep", R"({"ms": 1050})"));
    ASSERT_THAT(id, IsOk());
    auto future = client_->WaitFuture(*id, absl::Seconds(30));
    ASSERT_EQ(future.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    auto task = future.get();
    const int64_t now = internal::NowUnixMicros();
    ASSERT_THAT(task, IsOk());
    ASSERT_EQ(task->state(), v1::TASK_STATE_SUCCEEDED);
    late_ms.push_back(static_cast<double>(now - task->decision().finished_unix_us()) / 1000);
  }
  std::sort(late_ms.begin(), late_ms.end());
  EXPECT_LT(late_ms[1], 25.0) << "results arrived " << late_ms[0] << ", " << late_ms[1] << ", "
                              << late_ms[2] << " ms after their tasks finished";
}

}  // namespace
}  // namespace taskrt::testing
