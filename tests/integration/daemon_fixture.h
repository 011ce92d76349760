// Starts a real taskrtd in-process on a temporary unix socket, with real worker
// processes and the test plugin, and connects an SDK client to it.
#ifndef TASKRT_TESTS_INTEGRATION_DAEMON_FIXTURE_H_
#define TASKRT_TESTS_INTEGRATION_DAEMON_FIXTURE_H_

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "daemon/daemon.h"
#include "taskrt/client.h"

namespace taskrt::testing {

inline std::string MakeTempDir() {
  char tmpl[] = "/tmp/taskrt-test-XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  return dir == nullptr ? std::string() : std::string(dir);
}

inline daemon::DaemonOptions TestDaemonOptions(const std::string& dir) {
  daemon::DaemonOptions options;
  options.socket_path = dir + "/taskrt.sock";
  options.verbose = false;
  options.tasks.worker_path = TASKRT_WORKER_PATH;
  options.tasks.plugins = {TASKRT_TEST_PLUGIN_PATH};
  options.tasks.cpu_workers = 2;
  options.tasks.io_workers = 1;
  options.tasks.io_threads = 2;
  return options;
}

class DaemonTest : public ::testing::Test {
 protected:
  // Override to change the daemon's options before it starts.
  virtual void Configure(daemon::DaemonOptions& options) {}

  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    StartDaemon();
  }

  // Starts the daemon on dir_ (again, after a Shutdown: same socket and state dir) and
  // connects client_ to it.
  void StartDaemon() {
    daemon::DaemonOptions options = TestDaemonOptions(dir_);
    Configure(options);
    auto d = daemon::Daemon::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    ClientOptions copts;
    copts.socket_path = daemon_->socket_path();
    auto c = Client::Connect(copts);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }

  void TearDown() override {
    client_.reset();
    if (daemon_) daemon_->Shutdown();
    daemon_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Submits and waits, failing the test on an RPC error.
  v1::Task Run(const std::string& handler, const std::string& input,
               v1::TaskClass cls = v1::TASK_CLASS_AUTO, uint64_t timeout_ms = 0) {
    v1::TaskSpec spec = MakeTask(handler, input, cls);
    spec.set_timeout_ms(timeout_ms);
    auto task = client_->Run(spec, absl::Seconds(60));
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? *task : v1::Task();
  }

  std::string dir_;
  std::unique_ptr<daemon::Daemon> daemon_;
  std::unique_ptr<Client> client_;
};

}  // namespace taskrt::testing

#endif  // TASKRT_TESTS_INTEGRATION_DAEMON_FIXTURE_H_
