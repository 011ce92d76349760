// The plugin API end to end: a real in-process taskrtd on a temporary socket, its
// worker processes loading tests/plugins/api_plugin.cc (built with -fvisibility=hidden)
// and the example plugin, driven through the SDK.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "daemon/daemon.h"
#include "taskrt/client.h"
#include "tests/integration/daemon_fixture.h"

namespace taskrt {
namespace {

// The shared in-process daemon (tests/integration/daemon_fixture.h), with this
// directory's plugins instead of the fault plugin.
class PluginTest : public testing::DaemonTest {
 protected:
  void Configure(daemon::DaemonOptions& options) override {
    options.tasks.plugins = {TASKRT_API_PLUGIN_PATH, TASKRT_EXAMPLE_PLUGIN_PATH};
    options.tasks.cpu_workers = 1;
  }

  // Runs one attempt of the task in the io pool and returns it final.
  v1::Task Run(const std::string& handler, const std::string& input, uint64_t timeout_ms = 0) {
    v1::TaskSpec spec = MakeTask(handler, input, v1::TASK_CLASS_IO);
    spec.set_timeout_ms(timeout_ms);
    spec.set_max_attempts(1);
    auto task = client_->Run(spec, absl::Seconds(60));
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? *task : v1::Task();
  }
};

TEST_F(PluginTest, HiddenVisibilityPluginLoadsAndListsAsyncHandlers) {
  auto handlers = client_->ListHandlers();
  ASSERT_TRUE(handlers.ok()) << handlers.status();
  auto find = [&](const std::string& name) -> const v1::HandlerInfo* {
    for (const auto& h : *handlers) {
      if (h.name() == name) return &h;
    }
    return nullptr;
  };
  const v1::HandlerInfo* late_ok = find("test_api.late_ok");
  ASSERT_NE(late_ok, nullptr) << "the -fvisibility=hidden plugin did not register";
  EXPECT_FALSE(late_ok->async());
  EXPECT_EQ(late_ok->source(), TASKRT_API_PLUGIN_PATH);
  const v1::HandlerInfo* after = find("test_api.async_after");
  ASSERT_NE(after, nullptr);
  EXPECT_TRUE(after->async());
  const v1::HandlerInfo* delay = find("example.delay");
  ASSERT_NE(delay, nullptr);
  EXPECT_TRUE(delay->async());
}

TEST_F(PluginTest, AsyncHandlerCompletesFromATimerOnTheLoop) {
  const v1::Task task = Run("test_api.async_after", "x");
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED) << task.error().message();
  EXPECT_EQ(task.output(), "waited x");
  EXPECT_EQ(task.decision().executor(), v1::EXECUTOR_ASYNC);
  EXPECT_GE(task.decision().run_time_us(), 50'000);
}

TEST_F(PluginTest, AsyncHandlerMayFinishFromAnotherThread) {
  const v1::Task task = Run("test_api.async_thread", "");
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED) << task.error().message();
  EXPECT_EQ(task.output(), "from a thread");
}

TEST_F(PluginTest, ExampleDelayAnswersLaterAndTimesOut) {
  const v1::Task done = Run("example.delay", "30");
  EXPECT_EQ(done.state(), v1::TASK_STATE_SUCCEEDED) << done.error().message();
  EXPECT_EQ(done.output(), "after 30 ms");
  const v1::Task late = Run("example.delay", "10000", /*timeout_ms=*/200);
  EXPECT_EQ(late.state(), v1::TASK_STATE_TIMED_OUT);
  const v1::Task bad = Run("example.delay", "soon");
  EXPECT_EQ(bad.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(bad.error().kind(), v1::FAILURE_KIND_INVALID_INPUT);
}

TEST_F(PluginTest, AsyncCallbackThatThrowsFailsItsTaskOnly) {
  const v1::Task task = Run("test_api.async_throw", "");
  EXPECT_EQ(task.state(), v1::TASK_STATE_FAILED);
  EXPECT_NE(task.error().message().find("thrown on purpose"), std::string::npos)
      << task.error().message();
  // The worker survived: its next task runs.
  EXPECT_EQ(Run("test_api.async_after", "again").state(), v1::TASK_STATE_SUCCEEDED);
}

// taskrt/handler.h: a result returned after ctx.cancelled() turned true is dropped, so
// an OK at the deadline cannot report a timed-out task as succeeded.
TEST_F(PluginTest, OkReturnedAfterTheDeadlineIsATimeout) {
  for (int i = 0; i < 3; ++i) {
    const v1::Task task = Run("test_api.late_ok", "", /*timeout_ms=*/100);
    EXPECT_EQ(task.state(), v1::TASK_STATE_TIMED_OUT) << "output: " << task.output();
    EXPECT_EQ(task.error().kind(), v1::FAILURE_KIND_TIMEOUT);
  }
}

TEST_F(PluginTest, AsyncOkAfterTheDeadlineIsATimeout) {
  for (int i = 0; i < 3; ++i) {
    const v1::Task task = Run("test_api.async_late_ok", "", /*timeout_ms=*/100);
    EXPECT_EQ(task.state(), v1::TASK_STATE_TIMED_OUT) << "output: " << task.output();
  }
}

TEST_F(PluginTest, OkReturnedAfterACancelIsCancelled) {
  v1::TaskSpec spec = MakeTask("test_api.late_ok", "", v1::TASK_CLASS_IO);
  spec.set_max_attempts(1);
  auto id = client_->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();
  // Bounded: the task starts within a few seconds or the test fails.
  for (int i = 0; i < 500; ++i) {
    auto task = client_->Get(*id);
    ASSERT_TRUE(task.ok()) << task.status();
    if (task->state() == v1::TASK_STATE_RUNNING) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(client_->Cancel({*id}).ok());
  auto task = client_->Wait(*id, absl::Seconds(30));
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->state(), v1::TASK_STATE_CANCELLED);
  EXPECT_TRUE(task->output().empty()) << task->output();
}

}  // namespace
}  // namespace taskrt
