// Output limit (taskrtd --max-output-bytes): a task whose result is too large fails or is
// truncated alone; the io worker that ran it, and another client's task on it, go on.
// Security tests: before the limit, one command printing 300 MB made a frame the daemon
// refused, and the daemon killed the io worker with every task on it.
#include <thread>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/integration/daemon_fixture.h"
#include "tests/testing/await_state.h"
#include "tests/testing/status_matchers.h"

namespace taskrt::testing {
namespace {

using json = nlohmann::json;

constexpr size_t kDefaultLimit = 16u << 20;  // taskrtd's default --max-output-bytes

// The parameter is the daemon's --max-output-bytes; 0 leaves the default.
class OutputLimitTest : public DaemonTest, public ::testing::WithParamInterface<size_t> {
 protected:
  void Configure(daemon::DaemonOptions& options) override {
    if (GetParam() > 0) options.tasks.max_output_bytes = GetParam();
  }

  size_t Limit() const { return GetParam() > 0 ? GetParam() : kDefaultLimit; }

  // The pid of the (only) io worker once it is ready.
  int IoWorkerPid() {
    for (int i = 0; i < 500; ++i) {
      auto stats = client_->GetStats();
      if (stats.ok()) {
        for (const auto& w : stats->workers()) {
          if (w.pool() == "io" && w.state() != "starting" && w.pid() > 0) return w.pid();
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

  uint64_t IoRespawns() {
    auto stats = client_->GetStats();
    if (!stats.ok()) return ~0ull;
    for (const auto& p : stats->pools())
      if (p.name() == "io") return p.respawns();
    return 0;
  }

  // Another client of the same daemon (another user's tasks, as far as the io worker
  // is concerned), with a sleep RUNNING on the io worker.
  std::pair<std::unique_ptr<Client>, std::string> OtherClientSleeping(int ms) {
    ClientOptions copts;
    copts.socket_path = daemon_->socket_path();
    auto other = Client::Connect(copts);
    EXPECT_TRUE(other.ok()) << other.status();
    if (!other.ok()) return {};
    auto id = (*other)->Submit(MakeTask("sys.sleep", absl::StrCat(R"({"ms": )", ms, "}")));
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return {};
    EXPECT_THAT(AwaitState(**other, *id, v1::TASK_STATE_RUNNING), IsOk());
    return {std::move(*other), *id};
  }

  // The other client's sleep succeeded on `pid`, and that worker is still the io worker.
  void ExpectOtherTaskAndWorkerUnharmed(Client& other, const std::string& id, int pid) {
    auto sleeper = other.Wait(id, absl::Seconds(60));
    ASSERT_TRUE(sleeper.ok()) << sleeper.status();
    EXPECT_EQ(sleeper->state(), v1::TASK_STATE_SUCCEEDED) << sleeper->error().message();
    EXPECT_EQ(sleeper->decision().worker_pid(), pid);
    v1::Task next = Run("sys.noop", "");
    EXPECT_EQ(next.state(), v1::TASK_STATE_SUCCEEDED);
    EXPECT_EQ(next.decision().worker_pid(), pid) << "the io worker was replaced";
    EXPECT_EQ(IoWorkerPid(), pid);
    EXPECT_EQ(IoRespawns(), 0u);
  }
};

std::string LimitName(const ::testing::TestParamInfo<size_t>& info) {
  return info.param == 0 ? "DefaultLimit" : absl::StrCat(info.param, "Bytes");
}

INSTANTIATE_TEST_SUITE_P(, OutputLimitTest, ::testing::Values(size_t{0}, size_t{1} << 20),
                         LimitName);

// 300 MB of NUL bytes: each takes 6 bytes in the JSON result ("\u0000"), so this is
// also the case where the encoding multiplies what was captured.
TEST_P(OutputLimitTest, ExecOf300MbSucceedsTruncatedAndOtherTasksGoOn) {
  const int pid = IoWorkerPid();
  ASSERT_GT(pid, 0);
  auto [other, sleeper_id] = OtherClientSleeping(1500);
  ASSERT_TRUE(other);
  v1::Task big = Run("sys.exec", R"({"argv": ["sh", "-c",
      "head -c 300000000 /dev/zero; head -c 3000000 /dev/zero >&2; echo tail >&2; exit 3"]})");
  ASSERT_EQ(big.state(), v1::TASK_STATE_SUCCEEDED) << big.error().message();
  EXPECT_EQ(big.decision().worker_pid(), pid);
  EXPECT_LE(big.output().size(), Limit());
  const json out = json::parse(big.output(), nullptr, false);
  ASSERT_TRUE(out.is_object());
  EXPECT_EQ(out["exit_code"], 3);
  EXPECT_TRUE(out["stdout_truncated"].get<bool>());
  EXPECT_TRUE(out["stderr_truncated"].get<bool>());
  EXPECT_EQ(out["stdout_bytes"].get<uint64_t>(), 300000000u);
  EXPECT_EQ(out["stderr_bytes"].get<uint64_t>(), 3000005u);
  const std::string so = out["stdout"], se = out["stderr"];
  // Both streams keep a share of the limit, and what is kept is the start of each.
  EXPECT_GT(so.size(), Limit() / 6 / 4);
  EXPECT_GT(se.size(), Limit() / 6 / 4);
  EXPECT_EQ(so.find_first_not_of('\0'), std::string::npos);
  EXPECT_EQ(se.find_first_not_of('\0'), std::string::npos);
  ExpectOtherTaskAndWorkerUnharmed(*other, sleeper_id, pid);
}

// Plain text is kept up to the limit itself (no escapes to pay for).
TEST_P(OutputLimitTest, ExecKeepsPlainTextUpToTheLimit) {
  v1::Task t = Run("sys.exec", R"({"argv": ["sh", "-c", "yes | head -c 50000000"]})");
  ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.error().message();
  EXPECT_LE(t.output().size(), Limit());
  const json out = json::parse(t.output(), nullptr, false);
  ASSERT_TRUE(out.is_object());
  EXPECT_EQ(out["exit_code"], 0);
  EXPECT_TRUE(out["stdout_truncated"].get<bool>());
  EXPECT_FALSE(out["stderr_truncated"].get<bool>());
  EXPECT_EQ(out["stdout_bytes"].get<uint64_t>(), 50000000u);
  const std::string so = out["stdout"];
  // "y\n" costs 3 bytes of JSON per 2 bytes of output.
  EXPECT_GT(so.size(), Limit() / 2);
  EXPECT_EQ(so.rfind("y\ny\n", 0), 0u);
}

TEST_P(OutputLimitTest, PluginOutputOverTheLimitFailsOnlyThatTask) {
  const int pid = IoWorkerPid();
  ASSERT_GT(pid, 0);
  auto [other, sleeper_id] = OtherClientSleeping(1000);
  ASSERT_TRUE(other);
  const size_t too_big = Limit() + 1;
  v1::Task big = Run("test.big_output", absl::StrCat(too_big), v1::TASK_CLASS_IO);
  ASSERT_EQ(big.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(big.error().kind(), v1::FAILURE_KIND_OUTPUT_TOO_LARGE) << big.error().message();
  EXPECT_NE(big.error().message().find(absl::StrCat("output of ", too_big, " bytes")),
            std::string::npos)
      << big.error().message();
  EXPECT_NE(big.error().message().find("--max-output-bytes"), std::string::npos);
  EXPECT_TRUE(big.output().empty());
  EXPECT_EQ(big.decision().worker_pid(), pid);
  EXPECT_EQ(FailureName(big.error().kind()), "output-too-large");
  // Exactly the limit is still allowed.
  v1::Task fits = Run("test.big_output", absl::StrCat(Limit()), v1::TASK_CLASS_IO);
  ASSERT_EQ(fits.state(), v1::TASK_STATE_SUCCEEDED) << fits.error().message();
  EXPECT_EQ(fits.output().size(), Limit());
  ExpectOtherTaskAndWorkerUnharmed(*other, sleeper_id, pid);
}

// An error message is capped at 64 KiB and kept valid UTF-8, so that no error can make
// a frame too large or unparsable.
TEST_P(OutputLimitTest, HugeOrInvalidErrorMessagesAreCapped) {
  const int pid = IoWorkerPid();
  ASSERT_GT(pid, 0);
  v1::Task t = Run("test.big_error", "1000000 invalid", v1::TASK_CLASS_IO);
  ASSERT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.error().kind(), v1::FAILURE_KIND_HANDLER_ERROR) << t.error().message();
  EXPECT_LE(t.error().message().size(), 64u << 10);
  EXPECT_EQ(t.error().message().rfind("a\xc3\xa9\xc3\xa9", 0), 0u);
  EXPECT_NE(t.error().message().find("1000000 bytes in all"), std::string::npos);
  v1::Task small = Run("test.big_error", "10 invalid", v1::TASK_CLASS_IO);
  ASSERT_EQ(small.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(small.error().message(), "a\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9?");
  EXPECT_EQ(small.decision().worker_pid(), pid);
  EXPECT_EQ(IoWorkerPid(), pid);
  EXPECT_EQ(IoRespawns(), 0u);
}

}  // namespace
}  // namespace taskrt::testing
