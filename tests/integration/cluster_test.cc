// A cluster target against three taskrtd processes on loopback TCP with one token
// (docs/CLUSTER.md): spread, routing of ids, batches and idempotency keys across
// daemons, kill -9 and restart of one daemon, a draining daemon. Every daemon is
// stopped by the test, by its pid (DaemonProcess).
#include "client/cluster.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskrt/client.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/status_matchers.h"

namespace taskrt {
namespace {

using ::taskrt::testing::DaemonProcess;
using ::taskrt::testing::DaemonProcessOptions;
using ::taskrt::testing::IsOk;
using ::taskrt::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int kDaemons = 3;

// A loopback port free now (bound and released; the daemon binds it a moment later).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string Owner(const std::string& id) { return std::string(internal::OwnerOfId(id)); }

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/cluster-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    token_file_ = dir_ + "/token";
    {
      std::ofstream out(token_file_);
      out << "c1u5t3r" << std::string(40, 'a') << "\n";
    }
    std::filesystem::permissions(
        token_file_, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    if (tls_) {
      // A self-signed certificate for the name "taskrt-test", shared by the daemons.
      const std::string command = absl::StrCat(
          "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=taskrt-test "
          "-addext subjectAltName=DNS:taskrt-test -keyout ",
          dir_, "/key.pem -out ", dir_, "/cert.pem >/dev/null 2>&1");
      if (std::system(command.c_str()) != 0) GTEST_SKIP() << "no openssl tool";
    }
    for (int i = 0; i < kDaemons; ++i) {
      ports_.push_back(FreePort());
      DaemonProcessOptions options;
      options.binary = TASKRT_DAEMON_PATH;
      options.dir = absl::StrCat(dir_, "/d", i);
      std::filesystem::create_directories(options.dir);
      options.args = {"--listen",        absl::StrCat("127.0.0.1:", ports_[i]),
                      "--token-file",    token_file_,
                      "--id-prefix",     absl::StrCat("node-", i),
                      "--plugin",        TASKRT_TEST_PLUGIN_PATH,
                      "--cpu-workers",   "1",
                      "--drain-timeout", "20s",
                      "--quiet"};
      if (tls_) {
        options.args.insert(options.args.end(),
                            {"--tls-cert", dir_ + "/cert.pem", "--tls-key", dir_ + "/key.pem"});
      }
      auto started = DaemonProcess::Start(options);
      ASSERT_THAT(started, IsOk());
      daemons_.push_back(*std::move(started));
    }
  }
  void TearDown() override {
    daemons_.clear();  // stops each by its pid
    std::filesystem::remove_all(dir_);
  }

  // "ipv4:127.0.0.1:P0,127.0.0.1:P1,..." in the order of `order` (default 0, 1, 2).
  std::string Target(std::vector<int> order = {0, 1, 2}) {
    std::vector<std::string> parts;
    for (int i : order) parts.push_back(absl::StrCat("127.0.0.1:", ports_[i]));
    return absl::StrCat("ipv4:", absl::StrJoin(parts, ","));
  }
  std::unique_ptr<Client> Connect(
      std::string target, ClientOptions::Spread spread = ClientOptions::Spread::kLeastLoaded) {
    ClientOptions options;
    options.target = std::move(target);
    options.token_file = token_file_;
    options.spread = spread;
    options.reconnect_timeout = absl::Seconds(30);
    if (tls_) {
      options.tls_ca_file = dir_ + "/cert.pem";
      options.tls_server_name = "taskrt-test";
    }
    auto client = Client::Connect(options);
    EXPECT_THAT(client, IsOk());
    return client.ok() ? *std::move(client) : nullptr;
  }

  bool tls_ = false;
  std::string dir_, token_file_;
  std::vector<int> ports_;
  std::vector<std::unique_ptr<DaemonProcess>> daemons_;
};

TEST_F(ClusterTest, SubmitsAreSpreadAndIdsRouteToTheirOwner) {
  for (auto spread : {ClientOptions::Spread::kLeastLoaded, ClientOptions::Spread::kRoundRobin}) {
    auto client = Connect(Target(), spread);
    ASSERT_NE(client, nullptr);
    EXPECT_EQ(client->daemons(), 3u);
    std::map<std::string, int> per_daemon;
    std::vector<std::string> ids;
    for (int i = 0; i < 3000; ++i) {
      auto id = client->Submit(MakeTask("sys.noop", ""));
      ASSERT_THAT(id, IsOk());
      ++per_daemon[Owner(*id)];
      ids.push_back(*id);
    }
    ASSERT_EQ(per_daemon.size(), 3u);
    for (const auto& [name, n] : per_daemon) EXPECT_GE(n, 3000 / 5) << name;  // >= 20 %
    // Waits on ids of all three daemons, in the caller's order.
    auto tasks = client->WaitAll(ids, absl::Seconds(60));
    ASSERT_THAT(tasks, IsOk());
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_EQ((*tasks)[i].id(), ids[i]);
      EXPECT_EQ((*tasks)[i].state(), v1::TASK_STATE_SUCCEEDED);
    }
  }
  auto client = Connect(Target());
  // Get, Cancel and an unknown owner.
  std::vector<std::string> sleeping;
  for (int i = 0; i < 6; ++i) {
    auto id = client->Submit(MakeTask("sys.sleep", R"({"ms": 20000})", v1::TASK_CLASS_IO));
    ASSERT_THAT(id, IsOk());
    sleeping.push_back(*id);
  }
  std::set<std::string> owners;
  for (const std::string& id : sleeping) {
    owners.insert(Owner(id));
    auto task = client->Get(id);
    ASSERT_THAT(task, IsOk());
    EXPECT_EQ(task->id(), id);
  }
  EXPECT_EQ(owners.size(), 3u);
  // A watch of ids on all three daemons, open while they are cancelled, sees each end.
  std::set<std::string> ended;
  absl::Status watched;
  std::thread watcher([&] {
    v1::WatchRequest watch;
    for (const std::string& id : sleeping) watch.add_task_ids(id);
    watched = client->Watch(
        watch,
        [&](const v1::TaskEvent& e) {
          if (IsFinal(e.state())) ended.insert(e.task_id());
          return ended.size() < sleeping.size();
        },
        absl::Seconds(30));
  });
  absl::SleepFor(absl::Milliseconds(500));  // the watches are open
  auto cancelled = client->Cancel(sleeping);
  watcher.join();
  EXPECT_THAT(watched, IsOk());
  EXPECT_EQ(ended.size(), sleeping.size());
  ASSERT_THAT(cancelled, IsOk());
  ASSERT_EQ(cancelled->size(), sleeping.size());
  for (size_t i = 0; i < sleeping.size(); ++i) {
    EXPECT_EQ((*cancelled)[i].id(), sleeping[i]);
    EXPECT_EQ((*cancelled)[i].state(), v1::TASK_STATE_CANCELLED);
  }
  EXPECT_THAT(client->Get("node-9-1"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("daemon 'node-9'")));
  auto listed = client->List();
  ASSERT_THAT(listed, IsOk());
  EXPECT_EQ(listed->size(), 100u);  // the limit of the merged list
  auto stats = client->ClusterStats();
  ASSERT_EQ(stats.size(), 3u);
  for (int i = 0; i < kDaemons; ++i) {
    ASSERT_THAT(stats[i].stats, IsOk());
    EXPECT_EQ(stats[i].name, absl::StrCat("node-", i));
  }
}

class ClusterTlsTest : public ClusterTest {
 protected:
  void SetUp() override {
    tls_ = true;
    ClusterTest::SetUp();
  }
};

TEST_F(ClusterTlsTest, EveryDaemonOverTlsWithTheToken) {
  auto client = Connect(Target());
  ASSERT_NE(client, nullptr);
  std::vector<std::string> ids;
  std::set<std::string> owners;
  for (int i = 0; i < 30; ++i) {
    auto id = client->Submit(MakeTask("sys.noop", ""));
    ASSERT_THAT(id, IsOk());
    owners.insert(Owner(*id));
    ids.push_back(*id);
  }
  EXPECT_EQ(owners.size(), 3u);
  ASSERT_THAT(client->WaitAll(ids, absl::Seconds(30)), IsOk());
  // Without TLS the daemons answer nothing: no daemon of the target is reachable.
  ClientOptions plain;
  plain.target = Target();
  plain.token_file = token_file_;
  plain.connect_timeout = absl::Seconds(1);
  EXPECT_THAT(Client::Connect(plain), StatusIs(absl::StatusCode::kUnavailable));
}

// A daemon that never answered: new tasks go to the others, but a key's owner and a list
// of every daemon's tasks cannot be known without it, and the error names its address.
TEST_F(ClusterTest, ADaemonThatNeverAnsweredIsNamedNotSkipped) {
  const std::string dead = absl::StrCat("127.0.0.1:", FreePort());
  auto client = Connect(absl::StrCat(Target({0}), ",", dead));
  ASSERT_NE(client, nullptr);
  auto id = client->Submit(MakeTask("sys.noop", ""));
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(Owner(*id), "node-0");
  v1::TaskSpec keyed = MakeTask("sys.noop", "");
  keyed.set_idempotency_key("never-answered");
  EXPECT_THAT(client->Submit(keyed), StatusIs(absl::StatusCode::kUnavailable, HasSubstr(dead)));
  EXPECT_THAT(client->List(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr(dead)));
  auto task = client->Wait(*id, absl::Seconds(30));
  ASSERT_THAT(task, IsOk());
  EXPECT_EQ(task->state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(ClusterTest, KeysHaveOneOwnerWhateverTheOrderOfTheAddresses) {
  auto a = Connect(Target({0, 1, 2}));
  auto b = Connect(Target({2, 0, 1}));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<v1::TaskSpec> specs;
  for (int i = 0; i < 30; ++i) {
    v1::TaskSpec s = MakeTask("sys.noop", "");
    s.set_idempotency_key(absl::StrCat("order-", i));
    specs.push_back(s);
  }
  // One batch whose keys belong to several daemons.
  auto first = a->SubmitBatch(specs);
  ASSERT_THAT(first, IsOk());
  std::set<std::string> owners;
  for (size_t i = 0; i < specs.size(); ++i) {
    owners.insert(Owner((*first)[i]));
    std::vector<std::string> names = {"node-0", "node-1", "node-2"};
    EXPECT_EQ(Owner((*first)[i]), names[internal::KeyOwner(names, specs[i].idempotency_key())]);
  }
  EXPECT_EQ(owners.size(), 3u);
  // The retry, through another client with the addresses in another order, one by one
  // and with Run: the same tasks, not new ones.
  for (size_t i = 0; i < specs.size(); ++i) {
    auto again = b->Submit(specs[i]);
    ASSERT_THAT(again, IsOk());
    EXPECT_EQ(*again, (*first)[i]);
  }
  auto run = b->Run(specs[0], absl::Seconds(30));
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->id(), (*first)[0]);
  uint64_t submitted = 0;
  for (const auto& d : b->ClusterStats()) {
    ASSERT_THAT(d.stats, IsOk());
    submitted += d.stats->tasks_submitted();
  }
  EXPECT_EQ(submitted, specs.size());
}

TEST_F(ClusterTest, RunManySpansTheDaemonsAndKeepsItsOrder) {
  auto client = Connect(Target());
  std::vector<v1::TaskSpec> specs;
  for (int i = 0; i < 600; ++i) specs.push_back(MakeTask("test.echo", absl::StrCat(i)));
  auto results = client->RunMany(specs);
  ASSERT_THAT(results, IsOk());
  std::set<std::string> owners;
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ((*results)[i].state(), v1::TASK_STATE_SUCCEEDED);
    EXPECT_EQ((*results)[i].output(), absl::StrCat(i));
    owners.insert(Owner((*results)[i].id()));
  }
  EXPECT_EQ(owners.size(), 3u);
}

TEST_F(ClusterTest, KillNineOfOneDaemonLosesNoTaskAndRunsEachOnce) {
  auto client = Connect(Target());
  const std::string record = dir_ + "/executions";
  std::vector<std::string> ids;
  for (int i = 0; i < 60; ++i) {
    v1::TaskSpec s = MakeTask("test.record", record);
    s.set_max_attempts(3);
    auto id = client->Submit(s);
    ASSERT_THAT(id, IsOk());
    ids.push_back(*id);
  }
  ASSERT_THAT(daemons_[1]->Kill(), IsOk());
  ASSERT_THAT(daemons_[1]->Restart(), IsOk());
  auto tasks = client->WaitAll(ids, absl::Seconds(120));
  ASSERT_THAT(tasks, IsOk());
  for (const v1::Task& t : *tasks) EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.id();
  // Every task ran at least once, and a task of the killed daemon at most once more
  // than its successful run (a run cut off by the kill is re-run: its attempts allow it).
  std::map<std::string, int> runs;
  std::ifstream in(record);
  for (std::string line; std::getline(in, line);) ++runs[line];
  for (const std::string& id : ids) {
    EXPECT_GE(runs[id], 1) << id;
    EXPECT_LE(runs[id], Owner(id) == "node-1" ? 2 : 1) << id;
  }
}

TEST_F(ClusterTest, ADrainingDaemonGetsNoNewTasks) {
  auto client = Connect(Target());
  // node-2 runs a long task, so that after SIGTERM it stays in its drain.
  v1::TaskSpec hold = MakeTask("sys.sleep", R"({"ms": 4000})", v1::TASK_CLASS_IO);
  std::string held;
  for (int i = 0; i < 10 && held.empty(); ++i) {
    auto id = client->Submit(hold);
    ASSERT_THAT(id, IsOk());
    if (Owner(*id) == "node-2") held = *id;
  }
  ASSERT_FALSE(held.empty());
  ASSERT_EQ(::kill(daemons_[2]->pid(), SIGTERM), 0);
  absl::SleepFor(absl::Milliseconds(300));
  std::map<std::string, int> per_daemon;
  for (int i = 0; i < 60; ++i) {
    auto id = client->Submit(MakeTask("sys.noop", ""));
    ASSERT_THAT(id, IsOk());
    ++per_daemon[Owner(*id)];
  }
  EXPECT_EQ(per_daemon.count("node-2"), 0u);
  EXPECT_GT(per_daemon["node-0"], 0);
  EXPECT_GT(per_daemon["node-1"], 0);
  auto task = client->Wait(held, absl::Seconds(30));  // it finishes before the drain ends
  ASSERT_THAT(task, IsOk());
  EXPECT_EQ(task->state(), v1::TASK_STATE_SUCCEEDED);
}

}  // namespace
}  // namespace taskrt

namespace taskrt {
namespace {

// The rules both SDKs follow (python/taskrt pins the same values).
TEST(ClusterRulesTest, HashOwnerAndTargets) {
  EXPECT_EQ(internal::Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(internal::Fnv1a64("a"), 0xaf63dc4c8601ec8cull);  // the published test vector
  const std::vector<std::string> names = {"node-0", "node-1", "node-2"};
  std::string owners;
  for (int i = 0; i < 8; ++i) {
    absl::StrAppend(&owners, internal::KeyOwner(names, absl::StrCat("order-", i)));
  }
  EXPECT_EQ(owners, "00220211");
  // The order of the names does not change the owner.
  const std::vector<std::string> reversed = {"node-2", "node-1", "node-0"};
  for (int i = 0; i < 50; ++i) {
    const std::string key = absl::StrCat("k", i);
    EXPECT_EQ(names[internal::KeyOwner(names, key)], reversed[internal::KeyOwner(reversed, key)]);
  }
  EXPECT_EQ(internal::OwnerOfId("taskrt-1-42"), "taskrt-1");
  EXPECT_EQ(internal::OwnerOfId("nodash"), "");
  auto list = internal::ResolveClusterTarget("ipv4:127.0.0.1:1,127.0.0.1:2");
  ASSERT_THAT(list, testing::IsOk());
  EXPECT_THAT(list->addresses, ::testing::ElementsAre("ipv4:127.0.0.1:1", "ipv4:127.0.0.1:2"));
  EXPECT_TRUE(list->cluster());
  auto one = internal::ResolveClusterTarget("127.0.0.1:7070");
  ASSERT_THAT(one, testing::IsOk());
  EXPECT_FALSE(one->cluster());
  auto dns = internal::ResolveClusterTarget("dns:///localhost:7070");
  ASSERT_THAT(dns, testing::IsOk());
  EXPECT_EQ(dns->dns_host, "localhost");
  EXPECT_TRUE(dns->cluster());
  EXPECT_THAT(internal::ResolveClusterTarget("dns:///localhost"),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no port")));
}

}  // namespace
}  // namespace taskrt
