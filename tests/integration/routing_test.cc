// Every built-in handler through a real daemon, and where each class of task runs.
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/integration/daemon_fixture.h"

namespace taskrt::testing {
namespace {

using json = nlohmann::json;

class RoutingTest : public DaemonTest {};

TEST_F(RoutingTest, ListsBuiltinAndPluginHandlers) {
  auto handlers = client_->ListHandlers();
  ASSERT_TRUE(handlers.ok()) << handlers.status();
  std::map<std::string, v1::HandlerInfo> by_name;
  for (const auto& h : *handlers) by_name[h.name()] = h;
  for (const char* name : {"sys.noop", "sys.sleep", "sys.exec", "math.primes", "hash.sha256",
                           "io.read_file", "test.crash", "test.burn"}) {
    EXPECT_EQ(by_name.count(name), 1u) << name;
  }
  EXPECT_TRUE(by_name["sys.sleep"].async());
  EXPECT_FALSE(by_name["math.primes"].async());
  EXPECT_EQ(by_name["math.primes"].hint(), v1::TASK_CLASS_CPU);
  EXPECT_EQ(by_name["sys.noop"].source(), "builtin");
  EXPECT_EQ(by_name["test.crash"].source(), TASKRT_TEST_PLUGIN_PATH);
}

TEST_F(RoutingTest, CpuTaskRunsInAWorkerProcessNotTheDaemon) {
  v1::Task t = Run("math.primes", R"({"below": 100000})");
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.error().message();
  EXPECT_EQ(json::parse(t.output())["count"], 9592);
  const v1::Decision& d = t.decision();
  EXPECT_EQ(d.requested_class(), v1::TASK_CLASS_AUTO);
  EXPECT_EQ(d.resolved_class(), v1::TASK_CLASS_CPU);
  EXPECT_EQ(d.reason(), v1::REASON_HANDLER_HINT);
  EXPECT_EQ(d.executor(), v1::EXECUTOR_PROCESS);
  EXPECT_EQ(d.pool(), "cpu");
  EXPECT_GT(d.worker_pid(), 0);
  EXPECT_NE(d.worker_pid(), ::getpid());
  EXPECT_EQ(d.daemon_pid(), ::getpid());  // the daemon runs in this test process
  EXPECT_GT(d.cpu_time_us(), 0);
  EXPECT_GT(d.run_time_us(), 0);
  EXPECT_GT(d.peak_rss_kb(), 0);
  EXPECT_EQ(d.attempt(), 1);
  EXPECT_GT(d.submitted_unix_us(), 0);
  EXPECT_GE(d.started_unix_us(), d.submitted_unix_us());
  EXPECT_GE(d.finished_unix_us(), d.started_unix_us());
  EXPECT_FALSE(d.evidence().empty());
}

TEST_F(RoutingTest, CpuTaskForcedOntoIoRunsOnAThreadAndGetsAHint) {
  v1::Task t = Run("math.primes", R"({"below": 1500000})", v1::TASK_CLASS_IO);
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
  const v1::Decision& d = t.decision();
  EXPECT_EQ(d.reason(), v1::REASON_CLIENT_DECLARED);
  EXPECT_EQ(d.resolved_class(), v1::TASK_CLASS_IO);
  EXPECT_EQ(d.executor(), v1::EXECUTOR_THREAD);
  EXPECT_EQ(d.pool(), "io");
  // On a loaded machine the thread may get less than a core: the hint follows what
  // was measured, so check it against the measurement itself.
  const double ratio = static_cast<double>(d.cpu_time_us()) / d.run_time_us();
  EXPECT_EQ(d.hint().find("declared IO but used") != std::string::npos, ratio >= 0.8)
      << d.hint() << " cpu " << d.cpu_time_us() << " run " << d.run_time_us();
}

TEST_F(RoutingTest, SleepRunsOnTheAsyncLoop) {
  v1::Task t = Run("sys.sleep", R"({"ms": 20})");
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(t.decision().executor(), v1::EXECUTOR_ASYNC);
  EXPECT_EQ(t.decision().resolved_class(), v1::TASK_CLASS_IO);
  EXPECT_GE(t.decision().run_time_us(), 20'000);
}

TEST_F(RoutingTest, AsyncSleepsHoldNoThread) {
  // 300 sleeps of 300 ms on an io worker with 2 threads: on threads this would take
  // 45 s; on the loop they overlap. The bound is loose on purpose.
  std::vector<v1::TaskSpec> specs(300, MakeTask("sys.sleep", R"({"ms": 300})"));
  const auto start = std::chrono::steady_clock::now();
  auto ids = client_->SubmitBatch(specs);
  ASSERT_TRUE(ids.ok()) << ids.status();
  auto tasks = client_->WaitAll(*ids, absl::Seconds(60));
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& t : *tasks) {
    ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
    ASSERT_EQ(t.decision().executor(), v1::EXECUTOR_ASYNC);
  }
  EXPECT_LT(secs, 15.0);
}

TEST_F(RoutingTest, SleepForcedOntoCpuPoolRunsInProcesses) {
  v1::Task t = Run("sys.sleep", R"({"ms": 30})", v1::TASK_CLASS_CPU);
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(t.decision().executor(), v1::EXECUTOR_PROCESS);
  EXPECT_NE(t.decision().hint().find("declared CPU but used"), std::string::npos)
      << t.decision().hint();
}

TEST_F(RoutingTest, ExecCapturesOutputExitStatusAndUsage) {
  const std::string input = json{
      {"argv", {"/bin/sh", "-c", "cat; echo err >&2; echo $FOO; pwd; exit 3"}},
      {"env", {{"FOO", "bar"}}},
      {"cwd", "/tmp"},
      {"stdin", "from-stdin\n"}}.dump();
  v1::Task t = Run("sys.exec", input);
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.error().message();
  EXPECT_EQ(t.decision().executor(), v1::EXECUTOR_ASYNC);
  json out = json::parse(t.output());
  EXPECT_EQ(out["exit_code"], 3);
  EXPECT_EQ(out["signal"], 0);
  EXPECT_EQ(out["stdout"], "from-stdin\nbar\n/tmp\n");
  EXPECT_EQ(out["stderr"], "err\n");
  EXPECT_GT(out["peak_rss_kb"].get<int64_t>(), 0);
}

TEST_F(RoutingTest, ExecWithoutInputReadsEndOfFileAndInheritsTheEnvironment) {
  // No "stdin": the command reads /dev/null (cat ends at once) and, with no "env",
  // gets the worker's environment unchanged (PATH is set there).
  const std::string input =
      json{{"argv",
            {"/bin/sh", "-c", "cat; test -n \"$PATH\" && echo path-set; ls -l /proc/self/fd/0"}}}
          .dump();
  v1::Task t = Run("sys.exec", input);
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.error().message();
  json out = json::parse(t.output());
  EXPECT_EQ(out["exit_code"], 0) << out["stderr"];
  const std::string stdout_text = out["stdout"];
  EXPECT_EQ(stdout_text.rfind("path-set\n", 0), 0u) << stdout_text;
  EXPECT_NE(stdout_text.find("/dev/null"), std::string::npos) << stdout_text;
}

TEST_F(RoutingTest, ExecCapturesLargeOutputOfConcurrentCommandsIntact) {
  // Several commands writing more than the 64 KiB read buffer to both pipes at once: the
  // reads of all children share the worker's loop and that buffer, and no byte may go to
  // the wrong child or be lost. (About 1 MB in all: ThreadSanitizer makes large messages
  // through the uninstrumented gRPC library very slow.)
  constexpr int kChildren = 4;
  constexpr size_t kOut = 140000, kErr = 90000;
  std::vector<std::string> ids;
  for (int i = 0; i < kChildren; ++i) {
    const std::string script = absl::StrCat("yes ", i, "-out | head -c ", kOut, "; yes ", i,
                                            "-err | head -c ", kErr, " >&2");
    auto id =
        client_->Submit(MakeTask("sys.exec", json{{"argv", {"/bin/sh", "-c", script}}}.dump()));
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  auto done = client_->WaitAll(ids, absl::Seconds(60));
  ASSERT_TRUE(done.ok()) << done.status();
  for (int i = 0; i < kChildren; ++i) {
    const v1::Task& t = (*done)[i];
    ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.error().message();
    json out = json::parse(t.output());
    const std::string so = out["stdout"], se = out["stderr"];
    ASSERT_EQ(so.size(), kOut) << i;
    ASSERT_EQ(se.size(), kErr) << i;
    // Whole-string comparisons (one pass each; also cheap under ThreadSanitizer).
    auto lines = [](const std::string& line, size_t size) {
      std::string text;
      while (text.size() < size) text += line;
      text.resize(size);
      return text;
    };
    EXPECT_TRUE(so == lines(absl::StrCat(i, "-out\n"), so.size())) << "stdout of child " << i;
    EXPECT_TRUE(se == lines(absl::StrCat(i, "-err\n"), se.size())) << "stderr of child " << i;
    EXPECT_FALSE(out["stdout_truncated"].get<bool>());
  }
}

TEST_F(RoutingTest, ExecReportsSignalOfKilledCommand) {
  v1::Task t = Run("sys.exec", R"({"argv": ["/bin/sh", "-c", "kill -9 $$"]})");
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
  json out = json::parse(t.output());
  EXPECT_EQ(out["signal"], 9);
  EXPECT_EQ(out["signal_name"], "SIGKILL");
}

TEST_F(RoutingTest, ExecOfMissingCommandIsInvalidInput) {
  v1::Task t = Run("sys.exec", R"({"argv": ["/no/such/command"]})");
  ASSERT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_INVALID_INPUT);
  EXPECT_NE(t.error().message().find("/no/such/command"), std::string::npos);
}

TEST_F(RoutingTest, Sha256OfDataAndFile) {
  v1::Task t = Run("hash.sha256", R"({"data": "abc"})");
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(json::parse(t.output())["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string path = dir_ + "/abc.txt";
  std::ofstream(path) << "abc";
  t = Run("hash.sha256", json{{"path", path}}.dump());
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(json::parse(t.output())["bytes"], 3);
  EXPECT_EQ(t.decision().executor(), v1::EXECUTOR_PROCESS);
}

TEST_F(RoutingTest, ReadFileRunsOnAThread) {
  const std::string path = dir_ + "/data.bin";
  std::ofstream(path, std::ios::binary) << std::string("hello\0world", 11);
  v1::Task t = Run("io.read_file", json{{"path", path}}.dump());
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(t.output(), std::string("hello\0world", 11));
  EXPECT_EQ(t.decision().executor(), v1::EXECUTOR_THREAD);
  t = Run("io.read_file", R"({"path": "/no/such/file"})");
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_INVALID_INPUT);
}

// A built-in handler's bad input is refused at Submit, nothing queued (ApiTest covers
// each handler).
TEST_F(RoutingTest, NoopAndBadHandlerInput) {
  EXPECT_EQ(Run("sys.noop", "").state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(client_->Submit(MakeTask("math.primes", "not json")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Submit(MakeTask("sys.sleep", R"({"ms": -5})")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A low threshold keeps the test stable on a loaded machine, where a busy loop may get
// only part of a core (cpu/wall below 1); sleeping stays near 0 either way.
class LearningTest : public DaemonTest {
 protected:
  void Configure(daemon::DaemonOptions& options) override {
    options.tasks.classifier.cpu_threshold = 0.2;
  }
};

TEST_F(LearningTest, ClassifierLearnsUnhintedHandlers) {
  // No hint, no declaration: the first runs use the default class (CPU)...
  v1::Task first = Run("test.nap", "60");
  EXPECT_EQ(first.decision().reason(), v1::REASON_DEFAULT);
  EXPECT_EQ(first.decision().resolved_class(), v1::TASK_CLASS_CPU);
  Run("test.nap", "60");
  Run("test.nap", "60");
  Run("test.burn", "60");
  Run("test.burn", "60");
  Run("test.burn", "60");
  // ...then what was measured decides.
  v1::Task nap = Run("test.nap", "20");
  EXPECT_EQ(nap.decision().reason(), v1::REASON_LEARNED);
  EXPECT_EQ(nap.decision().resolved_class(), v1::TASK_CLASS_IO);
  EXPECT_EQ(nap.decision().executor(), v1::EXECUTOR_THREAD);
  EXPECT_NE(nap.decision().evidence().find("over 3 runs"), std::string::npos);
  v1::Task burn = Run("test.burn", "20");
  EXPECT_EQ(burn.decision().reason(), v1::REASON_LEARNED);
  EXPECT_EQ(burn.decision().resolved_class(), v1::TASK_CLASS_CPU);
  auto stats = client_->GetStats();
  ASSERT_TRUE(stats.ok());
  bool found = false;
  for (const auto& l : stats->learned()) {
    if (l.handler() == "test.burn") {
      found = true;
      EXPECT_EQ(l.learned_class(), v1::TASK_CLASS_CPU);
      EXPECT_GE(l.cpu_ratio(), 0.2);  // the test threshold
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(RoutingTest, CpuTasksSpreadOverTheCpuPool) {
  std::vector<v1::TaskSpec> specs(4, MakeTask("test.burn", "150", v1::TASK_CLASS_CPU));
  auto ids = client_->SubmitBatch(specs);
  ASSERT_TRUE(ids.ok());
  auto tasks = client_->WaitAll(*ids, absl::Seconds(60));
  ASSERT_TRUE(tasks.ok());
  std::set<int> pids;
  for (const auto& t : *tasks) pids.insert(t.decision().worker_pid());
  EXPECT_EQ(pids.size(), 2u);  // both cpu workers took part
  auto stats = client_->GetStats();
  ASSERT_TRUE(stats.ok());
  int cpu_workers = 0;
  for (const auto& w : stats->workers()) {
    if (w.pool() == "cpu") {
      ++cpu_workers;
      EXPECT_EQ(pids.count(w.pid()), 1u);
    }
  }
  EXPECT_EQ(cpu_workers, 2);
}

}  // namespace
}  // namespace taskrt::testing
