// The Run and Stream RPCs, through the SDK (Client::Run, RunStream, RunMany) and through
// the generated stub: results in spec order, one per index, refused batches named,
// failed tasks reported as results, Run's deadline and idempotency key, and the raw
// stream's Accepted answers and end of call.
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <map>
#include <set>
#include <thread>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "taskrt/v1/service.grpc.pb.h"
#include "tests/integration/daemon_fixture.h"

namespace taskrt::testing {
namespace {

// Loose hang guard for a whole stream: generous, only there so that a lost result fails
// the test instead of hanging it.
constexpr absl::Duration kHangGuard = absl::Seconds(120);

Client::StreamOptions Options(size_t batch_size) {
  Client::StreamOptions options;
  options.batch_size = batch_size;
  options.timeout = kHangGuard;
  return options;
}

class StreamTest : public DaemonTest {
 protected:
  // Every task the daemon knows, by id.
  std::unordered_map<std::string, v1::Task> AllTasks() {
    v1::ListRequest request;
    request.set_limit(100000);
    auto tasks = client_->List(request);
    EXPECT_TRUE(tasks.ok()) << tasks.status();
    std::unordered_map<std::string, v1::Task> by_id;
    if (!tasks.ok()) return by_id;
    for (auto& t : *tasks) by_id.emplace(t.id(), std::move(t));
    return by_id;
  }

  std::unique_ptr<v1::TaskService::Stub> RawStub() {
    return v1::TaskService::NewStub(
        grpc::CreateChannel("unix:" + daemon_->socket_path(), grpc::InsecureChannelCredentials()));
  }
};

class RunTest : public StreamTest {};

// A stream's responses, read to the end, and how the call ended.
struct RawStreamOutcome {
  std::vector<v1::StreamResponse::Accepted> accepted;  // in the order received
  std::vector<v1::TaskResult> results;                 // in the order received
  grpc::Status status;
};

// Writes `requests`, closes the client side, reads every response and finishes the call.
RawStreamOutcome RunRawStream(v1::TaskService::Stub& stub,
                              const std::vector<v1::StreamRequest>& requests) {
  RawStreamOutcome out;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kHangGuard));
  auto stream = stub.Stream(&context);
  for (const auto& request : requests) EXPECT_TRUE(stream->Write(request));
  EXPECT_TRUE(stream->WritesDone());
  v1::StreamResponse response;
  while (stream->Read(&response)) {
    for (const auto& a : response.accepted()) out.accepted.push_back(a);
    for (const auto& r : response.results()) out.results.push_back(r);
  }
  out.status = stream->Finish();
  return out;
}

// --- RunMany / RunStream ---------------------------------------------------------------

TEST_F(StreamTest, RunManyReturnsResultsInTheOrderOfSpecs) {
  constexpr size_t kTasks = 2500;
  std::vector<v1::TaskSpec> specs;
  specs.reserve(kTasks);
  for (size_t i = 0; i < kTasks; ++i) {
    specs.push_back(i % 2 == 0 ? MakeTask("sys.noop", "")
                               : MakeTask("test.echo", absl::StrCat("echo-", i)));
  }
  auto results = client_->RunMany(specs, Options(1000));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), kTasks);

  std::set<std::string> ids;
  for (size_t i = 0; i < kTasks; ++i) {
    const v1::TaskResult& r = (*results)[i];
    SCOPED_TRACE(absl::StrCat("index ", i, " (", specs[i].handler(), ")"));
    ASSERT_FALSE(r.id().empty());
    ids.insert(r.id());
    EXPECT_EQ(r.state(), v1::TASK_STATE_SUCCEEDED) << r.error().message();
    EXPECT_EQ(r.output(), specs[i].input());  // sys.noop: empty; test.echo: its input
    EXPECT_FALSE(r.has_error());
    EXPECT_EQ(r.decision().resolved_class(), v1::TASK_CLASS_IO);  // both hint io
    EXPECT_EQ(r.decision().executor(), i % 2 == 0 ? v1::EXECUTOR_ASYNC : v1::EXECUTOR_THREAD);
    EXPECT_EQ(r.decision().pool(), "io");
    EXPECT_GT(r.decision().finished_unix_us(), 0);
  }
  EXPECT_EQ(ids.size(), kTasks) << "task ids are not distinct";

  // The daemon agrees: each result's id is the task made of the spec at that index.
  auto tasks = AllTasks();
  EXPECT_EQ(tasks.size(), kTasks);
  for (size_t i = 0; i < kTasks; ++i) {
    auto it = tasks.find((*results)[i].id());
    ASSERT_NE(it, tasks.end()) << "index " << i << ": id " << (*results)[i].id();
    EXPECT_EQ(it->second.spec().handler(), specs[i].handler()) << "index " << i;
    EXPECT_EQ(it->second.spec().input(), specs[i].input()) << "index " << i;
    EXPECT_EQ(it->second.state(), v1::TASK_STATE_SUCCEEDED) << "index " << i;
  }
}

TEST_F(StreamTest, RunStreamCallsOnResultOncePerIndexOnTheCallingThread) {
  constexpr size_t kTasks = 1234;
  std::vector<v1::TaskSpec> specs;
  for (size_t i = 0; i < kTasks; ++i) {
    specs.push_back(MakeTask("test.echo", absl::StrCat(i)));
  }
  std::vector<int> calls(kTasks, 0);
  size_t out_of_range = 0;
  size_t wrong_output = 0;
  size_t other_thread = 0;
  const std::thread::id caller = std::this_thread::get_id();
  absl::Status status = client_->RunStream(
      specs,
      [&](size_t i, v1::TaskResult& r) {
        if (std::this_thread::get_id() != caller) ++other_thread;
        if (i >= kTasks) {
          ++out_of_range;
          return;
        }
        ++calls[i];
        if (r.output() != specs[i].input()) ++wrong_output;
      },
      Options(100));  // 13 batches, the last one short
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(out_of_range, 0u);
  EXPECT_EQ(wrong_output, 0u);
  EXPECT_EQ(other_thread, 0u) << "on_result must run on the thread that called RunStream";
  for (size_t i = 0; i < kTasks; ++i) EXPECT_EQ(calls[i], 1) << "index " << i;
}

TEST_F(StreamTest, SpecsSharingAnIdempotencyKeyAllGetTheOneTasksResult) {
  // The same key within one batch (indexes 0, 1) and across batches (index 3).
  std::vector<v1::TaskSpec> specs(5);
  for (size_t i = 0; i < specs.size(); ++i) specs[i] = MakeTask("test.echo", absl::StrCat(i));
  specs[1] = specs[0];  // a key stands for one spec: reusing it with another is refused
  specs[3] = specs[0];
  specs[0].set_idempotency_key("shared");
  specs[1].set_idempotency_key("shared");
  specs[3].set_idempotency_key("shared");
  std::vector<int> calls(specs.size(), 0);
  std::vector<v1::TaskResult> results(specs.size());
  absl::Status status = client_->RunStream(
      specs,
      [&](size_t i, v1::TaskResult& r) {
        ++calls.at(i);
        results[i] = r;
      },
      Options(3));
  ASSERT_TRUE(status.ok()) << status;
  for (size_t i = 0; i < specs.size(); ++i) EXPECT_EQ(calls[i], 1) << "index " << i;
  EXPECT_EQ(results[1].id(), results[0].id());
  EXPECT_EQ(results[3].id(), results[0].id());
  EXPECT_EQ(results[3].output(), "0");  // the task of the first spec with the key
  EXPECT_NE(results[2].id(), results[0].id());
  EXPECT_NE(results[4].id(), results[0].id());
  EXPECT_EQ(AllTasks().size(), 3u);
}

TEST_F(StreamTest, ExplainDecisionAcceptsAStreamResult) {
  std::vector<v1::TaskSpec> specs = {MakeTask("test.echo", "x")};
  auto results = client_->RunMany(specs);
  ASSERT_TRUE(results.ok()) << results.status();
  const v1::TaskResult& r = (*results)[0];
  const std::string text = ExplainDecision(r, specs[0]);
  EXPECT_TRUE(absl::StartsWith(text, absl::StrCat("task ", r.id(), " (test.echo): succeeded\n")))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "ran as ")) << text;
  EXPECT_TRUE(absl::StrContains(ExplainDecision(r), "(?): succeeded")) << ExplainDecision(r);
}

TEST_F(StreamTest, RunManyRefusedFirstBatchSaysNothingOfTheCallWasSubmitted) {
  std::vector<v1::TaskSpec> specs = {MakeTask("no.such.handler", ""), MakeTask("test.echo", "x")};
  auto results = client_->RunMany(specs, Options(1));
  ASSERT_FALSE(results.ok());
  EXPECT_TRUE(absl::StrContains(results.status().message(), "batch 1 of 2")) << results.status();
  EXPECT_TRUE(absl::StrContains(results.status().message(), "no task of this call was submitted"))
      << results.status();
}

TEST_F(StreamTest, RefusedBatchIsNamedAndEarlierBatchesStillComplete) {
  constexpr size_t kBatch = 4;
  std::vector<v1::TaskSpec> specs;
  for (size_t i = 0; i < 2 * kBatch; ++i) {
    specs.push_back(MakeTask("test.echo", absl::StrCat("first-", i)));
  }
  specs[kBatch + 1] = MakeTask("no.such.handler", "");  // task 2 of batch 2
  size_t delivered = 0;
  absl::Status status = client_->RunStream(
      specs, [&](size_t, v1::TaskResult&) { ++delivered; }, Options(kBatch));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "batch 2")) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "'no.such.handler' is not registered")) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "task 2 of 4")) << status;
  // The daemon's "nothing was submitted" is about batch 2 only: the message says batch 1
  // was submitted.
  EXPECT_TRUE(absl::StrContains(status.message(),
                                "4 task(s) of 1 earlier batch(es) of this call were already "
                                "submitted"))
      << status;
  EXPECT_LE(delivered, kBatch);

  // Nothing of batch 2 was submitted; the whole of batch 1 was, and it finishes.
  auto tasks = AllTasks();
  ASSERT_EQ(tasks.size(), kBatch);
  std::vector<std::string> ids;
  for (const auto& [id, t] : tasks) {
    EXPECT_EQ(t.spec().handler(), "test.echo");
    ids.push_back(id);
  }
  auto final_tasks = client_->WaitAll(ids, absl::Seconds(60));
  ASSERT_TRUE(final_tasks.ok()) << final_tasks.status();
  std::set<std::string> outputs;
  for (const auto& t : *final_tasks) {
    EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.id();
    outputs.insert(t.output());
  }
  std::set<std::string> expected;
  for (size_t i = 0; i < kBatch; ++i) expected.insert(specs[i].input());
  EXPECT_EQ(outputs, expected);
}

TEST_F(StreamTest, FailedTasksComeBackAsResults) {
  std::vector<v1::TaskSpec> specs;
  for (int i = 0; i < 30; ++i) {
    switch (i % 3) {
      case 0:
        specs.push_back(MakeTask("test.fail", ""));
        break;
      case 1:
        specs.push_back(MakeTask("test.echo", absl::StrCat("ok-", i)));
        break;
      default:
        specs.push_back(MakeTask("test.throw", ""));
    }
  }
  v1::TaskSpec slow = MakeTask("sys.sleep", R"({"ms": 30000})");
  slow.set_timeout_ms(200);
  specs.push_back(slow);
  auto results = client_->RunMany(specs, Options(7));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const v1::TaskResult& r = (*results)[i];
    SCOPED_TRACE(absl::StrCat("index ", i, " (", specs[i].handler(), ")"));
    EXPECT_FALSE(r.id().empty());
    const std::string& handler = specs[i].handler();
    if (handler == "test.echo") {
      EXPECT_EQ(r.state(), v1::TASK_STATE_SUCCEEDED);
      EXPECT_EQ(r.output(), specs[i].input());
    } else if (handler == "test.fail") {
      EXPECT_EQ(r.state(), v1::TASK_STATE_FAILED);
      EXPECT_EQ(r.error().kind(), v1::FAILURE_KIND_HANDLER_ERROR);
      EXPECT_TRUE(absl::StrContains(r.error().message(), "failed on purpose"))
          << r.error().message();
    } else if (handler == "test.throw") {
      EXPECT_EQ(r.state(), v1::TASK_STATE_FAILED);
      EXPECT_EQ(r.error().kind(), v1::FAILURE_KIND_HANDLER_ERROR);
      EXPECT_TRUE(absl::StrContains(r.error().message(), "thrown on purpose"))
          << r.error().message();
    } else {
      EXPECT_EQ(r.state(), v1::TASK_STATE_TIMED_OUT);
      EXPECT_EQ(r.error().kind(), v1::FAILURE_KIND_TIMEOUT);
      EXPECT_FALSE(r.error().message().empty());
    }
  }
}

// A stream that ends by itself keeps its status: DEADLINE_EXCEEDED for `timeout`,
// UNAVAILABLE when the daemon goes away (not the CANCELLED of a client-side cancel).
TEST_F(StreamTest, RunStreamTimeoutIsDeadlineExceededAndTasksGoOn) {
  std::vector<v1::TaskSpec> specs = {MakeTask("test.echo", "quick"),
                                     MakeTask("sys.sleep", R"({"ms": 2000})")};
  Client::StreamOptions options;
  options.timeout = absl::Milliseconds(300);
  std::vector<int> calls(specs.size(), 0);
  const absl::Time start = absl::Now();
  absl::Status status = client_->RunStream(
      specs, [&](size_t i, v1::TaskResult&) { ++calls.at(i); }, options);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30)) << "hang guard";
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(calls[1], 0) << "the sleep cannot have finished";

  v1::ListRequest request;
  request.set_handler("sys.sleep");
  auto listed = client_->List(request);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  auto done = client_->Wait(listed->front().id(), absl::Seconds(60));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::TASK_STATE_SUCCEEDED);
}

// Without resume (the default), a stream whose daemon goes away ends at once with
// UNAVAILABLE.
TEST_F(StreamTest, RunStreamReportsUnavailableWhenTheDaemonGoesAway) {
  std::vector<v1::TaskSpec> specs = {MakeTask("sys.sleep", R"({"ms": 30000})")};
  Client::StreamOptions options = Options(10);
  absl::Status status;
  std::thread stream([&] {
    status = client_->RunStream(
        specs, [](size_t, v1::TaskResult&) {}, options);
  });
  // Shut down once the task runs (the stream is then waiting for its result).
  v1::ListRequest request;
  request.add_states(v1::TASK_STATE_RUNNING);
  for (int i = 0; i < 600; ++i) {
    auto running = client_->List(request);
    if (running.ok() && !running->empty()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  daemon_->Shutdown();
  stream.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
}

// With resume, a daemon that does not come back within the client's reconnect_timeout
// still ends the call with UNAVAILABLE (after trying to reconnect).
TEST_F(StreamTest, ResumableRunStreamGivesUpAfterTheReconnectTimeout) {
  ClientOptions copts;
  copts.socket_path = daemon_->socket_path();
  copts.reconnect_timeout = absl::Seconds(1);
  auto streamer = Client::Connect(copts);
  ASSERT_TRUE(streamer.ok()) << streamer.status();
  std::vector<v1::TaskSpec> specs = {MakeTask("test.echo", "first"),
                                     MakeTask("sys.sleep", R"({"ms": 30000})")};
  Client::StreamOptions options = Options(1);
  options.resume = true;
  std::atomic<int> delivered{0};
  absl::Status status;
  std::thread stream([&] {
    status = (*streamer)->RunStream(
        specs, [&](size_t, v1::TaskResult&) { ++delivered; }, options);
  });
  for (int i = 0; i < 600 && delivered.load() == 0; ++i) absl::SleepFor(absl::Milliseconds(50));
  ASSERT_EQ(delivered.load(), 1);
  const absl::Time gone = absl::Now();
  daemon_->Shutdown();
  stream.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_GE(absl::Now() - gone, absl::Seconds(1)) << "it did not try to reconnect";
  EXPECT_LT(absl::Now() - gone, absl::Seconds(30)) << "hang guard";
}

// A graceful restart (Drain, then a new daemon on the same socket and journal) in the
// middle of a resumable stream: the tasks the old daemon left queued run on the new one,
// which the resumed stream finds by their keys; no spec runs twice.
TEST_F(StreamTest, ResumableRunStreamCarriesOnAcrossAGracefulRestart) {
  ClientOptions copts;
  copts.socket_path = daemon_->socket_path();
  auto streamer = Client::Connect(copts);
  ASSERT_TRUE(streamer.ok()) << streamer.status();
  constexpr int kTasks = 20;
  std::vector<v1::TaskSpec> specs;
  for (int i = 0; i < kTasks; ++i) {
    specs.push_back(MakeTask("test.echo", absl::StrCat("spec ", i)));
    // Two cpu workers: most of these are still queued when the daemon drains.
    specs.push_back(MakeTask("test.nap", "100", v1::TASK_CLASS_CPU));
  }
  Client::StreamOptions options = Options(4);
  options.resume = true;
  std::vector<int> calls(specs.size(), 0);
  std::vector<v1::TaskResult> results(specs.size());
  std::atomic<int> delivered{0};
  absl::Status status;
  std::thread stream([&] {
    status = (*streamer)->RunStream(
        specs,
        [&](size_t i, v1::TaskResult& r) {
          ++calls.at(i);
          results[i] = r;
          ++delivered;
        },
        options);
  });
  for (int i = 0; i < 600 && delivered.load() < 4; ++i) absl::SleepFor(absl::Milliseconds(10));
  const int before = delivered.load();
  client_.reset();
  daemon_->Drain();
  daemon_.reset();
  StartDaemon();
  stream.join();
  ASSERT_TRUE(status.ok()) << status;
  std::set<std::string> ids;
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(calls[i], 1) << "spec " << i;
    EXPECT_EQ(results[i].state(), v1::TASK_STATE_SUCCEEDED) << "spec " << i;
    if (i % 2 == 0) {
      EXPECT_EQ(results[i].output(), absl::StrCat("spec ", i / 2));
    }
    ids.insert(results[i].id());
  }
  EXPECT_EQ(ids.size(), specs.size()) << "two specs got the same task";
  const uint64_t requeued = daemon_->recovery().requeued;
  auto stats = client_->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  std::printf(
      "graceful restart mid-stream: %d results before it, %llu tasks queued again, %llu "
      "accepted by the new daemon\n",
      before, static_cast<unsigned long long>(requeued),
      static_cast<unsigned long long>(stats->tasks_submitted()));
  EXPECT_GT(requeued + stats->tasks_submitted(), 0u)
      << "nothing was left for the new daemon: the restart was not mid-stream";
  for (const auto& id : ids) {
    auto task = client_->Get(id);
    ASSERT_TRUE(task.ok()) << id << ": " << task.status();
    EXPECT_EQ(task->decision().attempt(), 1) << id << " ran more than once";
  }
}

TEST_F(StreamTest, EmptySpecListIsOkWithoutACall) {
  size_t calls = 0;
  EXPECT_TRUE(client_
                  ->RunStream(
                      {}, [&](size_t, v1::TaskResult&) { ++calls; }, Options(10))
                  .ok());
  EXPECT_EQ(calls, 0u);
  auto results = client_->RunMany({});
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_TRUE(results->empty());
}

// --- Client::Run ---------------------------------------------------------------------

TEST_F(RunTest, ReturnsTheFinalTaskInOneCall) {
  auto task = client_->Run(MakeTask("test.echo", "hello"), absl::Seconds(60));
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_FALSE(task->id().empty());
  EXPECT_EQ(task->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(task->output(), "hello");
  EXPECT_EQ(task->spec().handler(), "test.echo");
  EXPECT_EQ(task->decision().executor(), v1::EXECUTOR_THREAD);
  // Without a timeout too.
  auto noop = client_->Run(MakeTask("sys.noop", ""));
  ASSERT_TRUE(noop.ok()) << noop.status();
  EXPECT_EQ(noop->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_NE(noop->id(), task->id());
  // A failure is a task, not an RPC error.
  auto failed = client_->Run(MakeTask("test.fail", ""), absl::Seconds(60));
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->state(), v1::TASK_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(failed->error().message(), "failed on purpose"));
}

TEST_F(RunTest, InvalidSpecIsRefusedAndNothingIsQueued) {
  auto task = client_->Run(MakeTask("no.such.handler", ""), absl::Seconds(60));
  ASSERT_FALSE(task.ok());
  EXPECT_EQ(task.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(task.status().message(), "'no.such.handler' is not registered"))
      << task.status();
  EXPECT_TRUE(AllTasks().empty());
}

TEST_F(RunTest, TimeoutNamesTheTaskWhichKeepsRunning) {
  auto task = client_->Run(MakeTask("sys.sleep", R"({"ms": 3000})"), absl::Milliseconds(300));
  ASSERT_FALSE(task.ok());
  EXPECT_EQ(task.status().code(), absl::StatusCode::kDeadlineExceeded) << task.status();

  v1::ListRequest request;
  request.set_handler("sys.sleep");
  auto listed = client_->List(request);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  const v1::Task& t = listed->front();
  EXPECT_TRUE(absl::StrContains(task.status().message(), absl::StrCat("task ", t.id(), " ")))
      << task.status();
  EXPECT_TRUE(t.state() == v1::TASK_STATE_RUNNING || t.state() == v1::TASK_STATE_SUCCEEDED)
      << StateName(t.state());

  auto done = client_->Wait(t.id(), absl::Seconds(60));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(done->output(), R"({"slept_ms":3000})");
}

TEST_F(RunTest, SameIdempotencyKeyReturnsTheExistingTask) {
  v1::TaskSpec first = MakeTask("test.echo", "first");
  first.set_idempotency_key("my-key");
  auto a = client_->Run(first, absl::Seconds(60));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->output(), "first");
  EXPECT_EQ(a->spec().idempotency_key(), "my-key");

  auto b = client_->Run(first, absl::Seconds(60));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->id(), a->id());
  EXPECT_EQ(b->state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(b->output(), "first");  // the existing task, not a new run
  EXPECT_EQ(AllTasks().size(), 1u);

  // The same key with another spec is refused and names the task that has it.
  v1::TaskSpec second = MakeTask("test.echo", "second");
  second.set_idempotency_key("my-key");
  auto c = client_->Run(second, absl::Seconds(60));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kAlreadyExists) << c.status();
  EXPECT_NE(c.status().message().find(a->id()), std::string::npos) << c.status();
  EXPECT_EQ(AllTasks().size(), 1u);
}

TEST_F(RunTest, WithoutAKeyEachCallGetsItsOwnRunKey) {
  auto a = client_->Run(MakeTask("test.echo", "x"), absl::Seconds(60));
  auto b = client_->Run(MakeTask("test.echo", "x"), absl::Seconds(60));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(absl::StartsWith(a->spec().idempotency_key(), "run-")) << a->spec().idempotency_key();
  EXPECT_TRUE(absl::StartsWith(b->spec().idempotency_key(), "run-")) << b->spec().idempotency_key();
  EXPECT_GT(a->spec().idempotency_key().size(), 4u);
  EXPECT_NE(a->spec().idempotency_key(), b->spec().idempotency_key());
  EXPECT_NE(a->id(), b->id());
}

// --- The raw Stream RPC --------------------------------------------------------------

TEST_F(StreamTest, RawStreamAnswersEachBatchAndEndsAfterAllResults) {
  auto stub = RawStub();
  std::vector<v1::StreamRequest> requests(2);
  requests[0].set_tag(7);
  for (int i = 0; i < 3; ++i)
    *requests[0].add_tasks() = MakeTask("test.echo", "a" + std::to_string(i));
  requests[1].set_tag(8);
  *requests[1].add_tasks() = MakeTask("sys.noop", "");
  *requests[1].add_tasks() = MakeTask("test.fail", "");
  RawStreamOutcome out = RunRawStream(*stub, requests);
  EXPECT_TRUE(out.status.ok()) << out.status.error_code() << ": " << out.status.error_message();

  ASSERT_EQ(out.accepted.size(), 2u);
  EXPECT_EQ(out.accepted[0].tag(), 7u);
  EXPECT_EQ(out.accepted[1].tag(), 8u);
  std::map<std::string, std::string> input_of;  // task id -> spec input
  for (size_t b = 0; b < out.accepted.size(); ++b) {
    const auto& a = out.accepted[b];
    EXPECT_EQ(a.code(), 0) << a.message();
    ASSERT_EQ(a.task_ids_size(), requests[b].tasks_size()) << "tag " << a.tag();
    for (int k = 0; k < a.task_ids_size(); ++k) {
      EXPECT_TRUE(input_of.emplace(a.task_ids(k), requests[b].tasks(k).input()).second)
          << "duplicate id " << a.task_ids(k);
    }
  }
  ASSERT_EQ(input_of.size(), 5u);

  std::map<std::string, int> results_per_id;
  for (const auto& r : out.results) {
    ++results_per_id[r.id()];
    ASSERT_TRUE(input_of.count(r.id())) << "result for unknown task " << r.id();
    EXPECT_TRUE(IsFinal(r.state())) << r.id();
  }
  for (const auto& [id, input] : input_of) EXPECT_EQ(results_per_id[id], 1) << id;
  // The results are those of the tasks the ids name.
  for (const auto& r : out.results) {
    if (r.id() == out.accepted[1].task_ids(1)) {
      EXPECT_EQ(r.state(), v1::TASK_STATE_FAILED);
    } else {
      EXPECT_EQ(r.state(), v1::TASK_STATE_SUCCEEDED);
      EXPECT_EQ(r.output(), input_of[r.id()]);
    }
  }
}

TEST_F(StreamTest, RawStreamRefusesAnEmptyBatchAndGoesOn) {
  auto stub = RawStub();
  std::vector<v1::StreamRequest> requests(2);
  requests[0].set_tag(1);  // no tasks
  requests[1].set_tag(2);
  *requests[1].add_tasks() = MakeTask("test.echo", "after");
  RawStreamOutcome out = RunRawStream(*stub, requests);
  EXPECT_TRUE(out.status.ok()) << out.status.error_code() << ": " << out.status.error_message();

  ASSERT_EQ(out.accepted.size(), 2u);
  const v1::StreamResponse::Accepted* empty = nullptr;
  const v1::StreamResponse::Accepted* good = nullptr;
  for (const auto& a : out.accepted) (a.tag() == 1 ? empty : good) = &a;
  ASSERT_NE(empty, nullptr);
  ASSERT_NE(good, nullptr);
  EXPECT_EQ(empty->code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_FALSE(empty->message().empty());
  EXPECT_EQ(empty->task_ids_size(), 0);
  EXPECT_EQ(good->tag(), 2u);
  EXPECT_EQ(good->code(), 0) << good->message();
  ASSERT_EQ(good->task_ids_size(), 1);
  ASSERT_EQ(out.results.size(), 1u);
  EXPECT_EQ(out.results[0].id(), good->task_ids(0));
  EXPECT_EQ(out.results[0].output(), "after");
  EXPECT_EQ(AllTasks().size(), 1u);
}

// service.proto: "repeated Accepted accepted = 1;  // in the order of the requests".
// A client that leaves `tag` at its default (0) can only match answers by that order.
TEST_F(StreamTest, RawStreamAnswersInTheOrderOfTheRequests) {
  auto stub = RawStub();
  std::vector<v1::StreamRequest> requests(3);
  requests[0].set_tag(1);
  *requests[0].add_tasks() = MakeTask("test.echo", "one");
  requests[1].set_tag(2);  // refused: no tasks
  requests[2].set_tag(3);
  *requests[2].add_tasks() = MakeTask("no.such.handler", "");  // refused
  RawStreamOutcome out = RunRawStream(*stub, requests);
  EXPECT_TRUE(out.status.ok()) << out.status.error_code() << ": " << out.status.error_message();
  ASSERT_EQ(out.accepted.size(), 3u);
  EXPECT_EQ(out.accepted[0].tag(), 1u);
  EXPECT_EQ(out.accepted[1].tag(), 2u);
  EXPECT_EQ(out.accepted[2].tag(), 3u);
  for (const auto& a : out.accepted) {
    EXPECT_EQ(a.code() == 0, a.tag() == 1) << "tag " << a.tag() << ": " << a.message();
  }
}

}  // namespace
// With a result backlog of 1 the daemon pauses reading batches whenever a result waits
// to be written, and reads on after each write: every batch must still be read, answered
// and run, and the call end OK (no batch lost, no pause left hanging).
class StreamBackpressureTest : public StreamTest {
 protected:
  void Configure(daemon::DaemonOptions& options) override { options.stream_result_backlog = 1; }
};

TEST_F(StreamBackpressureTest, PausedReadingResumesAndEveryBatchRuns) {
  std::vector<v1::TaskSpec> specs;
  for (int i = 0; i < 3000; ++i) specs.push_back(MakeTask("test.echo", std::to_string(i)));
  Client::StreamOptions options;
  options.batch_size = 7;  // many small batches: many pauses
  options.timeout = kHangGuard;
  auto results = client_->RunMany(specs, options);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ((*results)[i].state(), v1::TASK_STATE_SUCCEEDED);
    EXPECT_EQ((*results)[i].output(), std::to_string(i));
  }
}

}  // namespace taskrt::testing
