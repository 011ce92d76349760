// taskrt-bench: throughput, latency and scaling figures of a taskrtd, each compared
// against its performance target (kTargets below).
//
//   build/bin/taskrt-bench                 # starts build/bin/taskrtd on a temporary socket
//   build/bin/taskrt-bench --quick --json  # small sizes, one JSON object per line
//   build/bin/taskrt-bench --socket /run/user/1000/taskrt/taskrt.sock  # a running daemon
//
// Scenarios (select with --scenario NAME, repeatable; see bench/README.md):
//   noop_throughput   N sys.noop tasks from one client over one Stream call: tasks/s
//   noop_throughput_8_clients  the same from 8 concurrent clients, each its own Client
//   grpc_unary        Client::Get of a nonexistent id (NOT_FOUND) x2000: p50 in µs, the
//                     reference for noop_latency_p50 (runs whenever noop_latency does)
//   noop_latency      sequential Run(sys.noop), one round trip each: p50 and p99 in µs
//   fsync             4 KiB write + fdatasync where the journal lives: p50 in µs (reference)
//   cpu_scaling       16 math.primes of ~0.25 s one after another vs all at once on the
//                     cpu pool: efficiency = speedup / min(cores, cpu workers, 16)
//   sleep_1000        1000 concurrent sys.sleep 1 s: wall seconds (ideal 1.0)
//   sleep_10000       10000 of them; sleep_100000 100000 (neither in --quick unless named)
//   mixed             4 CPU tasks of ~2 s + 200 sys.sleep 100 ms submitted together:
//                     I/O latency p99 and makespan against the ideal
//   exec_true         sys.exec /bin/true xN vs `seq N | xargs -P<cores> -n1 /bin/true`
//   durable_ratio     noop throughput of this daemon vs one started with --durability=none
//                     (also that daemon's sequential latency, as a reference)
//   queued_memory     daemon memory per queued task, 1,000,000 queued (not in --quick)
//   unread_stream_memory  daemon memory held for a Stream whose client never reads
//                     (reference, not in --quick)
//
// Every wait is bounded (kWaitTimeout), so a broken daemon fails a scenario instead of
// hanging the run. Exit status: 0 when every selected scenario produced its figures
// (whether or not they meet their targets), 1 otherwise, 2 on bad options.
#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "common/status_macros.h"
#include "common/util.h"
#include "nlohmann/json.hpp"
#include "taskrt/client.h"
#include "taskrt/v1/service.grpc.pb.h"
#include "tests/testing/daemon_process.h"

extern char** environ;

namespace taskrt::bench {
namespace {

using testing::DaemonProcess;
using testing::DaemonProcessOptions;
using testing::StopRunningDaemons;
using v1::Task;
using v1::TaskResult;
using v1::TaskSpec;

constexpr absl::Duration kWaitTimeout = absl::Seconds(120);
constexpr size_t kChunk = 1000;  // tasks per stream batch
constexpr int kScalingTasks = 16;

struct BenchOptions {
  std::string socket_path;      // empty: start our own daemon
  DaemonProcessOptions daemon;  // temp_prefix "taskrt-bench"
  bool quick = false;
  bool json = false;
  std::vector<std::string> scenarios;  // empty: all (in --quick: all but sleep_10000)
  int64_t primes_below = 0;            // 0: calibrated (~0.25 s per task, quick ~0.1 s)
};

// One line of output: a figure, or an error that kept the scenario from producing it.
struct Result {
  std::string scenario;
  std::optional<double> value;
  std::string unit;
  std::string notes;
  std::string error;
};

// ---- targets --------------------------------------------------------------------------

enum class Direction { kAtLeast, kAtMost };

// A performance target: the figure of `scenario` (in `unit`) should be at least / at most
// `value`; or, when `relative_to` is set, at least / at most `value` times the figure of
// that scenario measured earlier in the same run. With `plus` too, the bound is
// `scale` x (figure of `plus` + `value` x figure of `relative_to`).
struct Target {
  const char* scenario;
  double value;
  const char* unit;
  Direction direction;
  const char* relative_to;  // nullptr: `value` is absolute
  const char* plus = nullptr;
  double scale = 1;
};

constexpr Target kTargets[] = {
    {"noop_throughput", 100000, "tasks/s", Direction::kAtLeast, nullptr},
    {"noop_throughput_8_clients", 100000, "tasks/s", Direction::kAtLeast, nullptr},
    // A Run waits for one journal commit (its final state, fsync'd under
    // --durability full) on top of a gRPC round trip and the worker's.
    {"noop_latency_p50", 1.5, "us", Direction::kAtMost, "grpc_unary_p50", "fsync_p50"},
    {"noop_latency_p99", 1.5, "us", Direction::kAtMost, "grpc_unary_p50", "fsync_p50", 2},
    {"cpu_scaling", 95, "%", Direction::kAtLeast, nullptr},
    {"sleep_10000", 1.1, "s", Direction::kAtMost, nullptr},
    {"sleep_100000", 2.0, "s", Direction::kAtMost, nullptr},
    {"mixed_io_p99", 110, "ms", Direction::kAtMost, nullptr},
    {"mixed_makespan", 1.05, "x ideal", Direction::kAtMost, nullptr},
    {"exec_true", 0.9, "tasks/s", Direction::kAtLeast, "exec_xargs"},
    {"durable_ratio", 0.5, "x", Direction::kAtLeast, nullptr},
    {"queued_memory", 1024, "B/task", Direction::kAtMost, nullptr},
};

const Target* FindTarget(const std::string& scenario) {
  for (const Target& target : kTargets) {
    if (scenario == target.scenario) return &target;
  }
  return nullptr;
}

// A result with its target resolved against the figures measured so far.
struct Judged {
  std::optional<double> target;
  std::optional<double> ratio;  // >= 1 means met
  std::optional<bool> met;
  std::string text;  // e.g. ">= 100000", "<= 1.5 x grpc_unary_p50 = 180"
};

Judged Judge(const Result& result, const std::map<std::string, double>& figures) {
  Judged judged;
  const Target* target = FindTarget(result.scenario);
  if (target == nullptr) return judged;
  const char* op = target->direction == Direction::kAtLeast ? ">=" : "<=";
  if (target->relative_to != nullptr) {
    std::string bound = absl::StrFormat("%g x %s", target->value, target->relative_to);
    if (target->plus != nullptr) bound = absl::StrCat(target->plus, " + ", bound);
    if (target->scale != 1) bound = absl::StrFormat("%g x (%s)", target->scale, bound);
    auto it = figures.find(target->relative_to);
    auto plus = target->plus != nullptr ? figures.find(target->plus) : figures.end();
    if (it == figures.end() || (target->plus != nullptr && plus == figures.end())) {
      judged.text = absl::StrFormat("%s %s (not measured)", op, bound);
      return judged;
    }
    const double offset = target->plus != nullptr ? plus->second : 0;
    judged.target = target->scale * (offset + target->value * it->second);
    judged.text = absl::StrFormat("%s %s", op, bound);
  } else {
    judged.target = target->value;
    judged.text = absl::StrFormat("%s %g", op, target->value);
  }
  if (result.value && *judged.target > 0 && *result.value > 0) {
    judged.ratio = target->direction == Direction::kAtLeast ? *result.value / *judged.target
                                                            : *judged.target / *result.value;
    judged.met = *judged.ratio >= 1.0;
  } else if (result.value) {
    judged.met = target->direction == Direction::kAtLeast ? *result.value >= *judged.target
                                                          : *result.value <= *judged.target;
  }
  return judged;
}

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Fails unless every task succeeded; the message counts the others and shows the first.
// T is Task (from Run) or TaskResult (from a stream).
template <typename T>
absl::Status AllSucceeded(const std::vector<T>& tasks) {
  size_t failed = 0;
  const T* first = nullptr;
  for (const T& task : tasks) {
    if (task.state() == v1::TASK_STATE_SUCCEEDED) continue;
    if (failed++ == 0) first = &task;
  }
  if (failed == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("%d of %d tasks did not succeed; first: %s %s: %s",
                                             failed, tasks.size(), first->id(),
                                             StateName(first->state()), first->error().message()));
}

// Runs `specs` over one Stream call (Client::RunMany): batches of `submit_chunk`,
// results streamed back as tasks finish, all within kWaitTimeout.
absl::StatusOr<std::vector<TaskResult>> RunStreamed(Client& client,
                                                    const std::vector<TaskSpec>& specs,
                                                    size_t submit_chunk = kChunk,
                                                    bool resume = false) {
  Client::StreamOptions options;
  options.batch_size = submit_chunk;
  options.timeout = kWaitTimeout;
  options.resume = resume;
  absl::StatusOr<std::vector<TaskResult>> tasks = client.RunMany(specs, options);
  if (!tasks.ok()) return tasks.status();
  absl::Status status = AllSucceeded(*tasks);
  if (!status.ok()) return status;
  return tasks;
}

Result Measured(const std::string& scenario, double value, const std::string& unit,
                std::string notes) {
  return Result{scenario, value, unit, std::move(notes), ""};
}

Result Failed(const std::string& scenario, const std::string& unit, const absl::Status& status) {
  return Result{scenario, std::nullopt, unit, "", status.ToString()};
}

// No figure, on purpose (not an error): `why` says why.
Result Skipped(const std::string& scenario, const std::string& unit, std::string why) {
  return Result{scenario, std::nullopt, unit, "skipped: " + std::move(why), ""};
}

// ---- scenarios ----------------------------------------------------------------------

struct Context {
  Client& client;
  const Shape& shape;
  const BenchOptions& options;
  const ClientOptions& client_options;  // to connect more clients to the same daemon
  bool own_daemon;                      // the bench started the daemon it measures
  // math.primes calibration: one task below `probe_below` ran for `probe_seconds`.
  int64_t probe_below = 0;
  double probe_seconds = 0;
};

// The run time of a finished task: the worker's measurement, else submit to finish.
double RunSeconds(const Task& task) {
  const auto& d = task.decision();
  if (d.run_time_us() > 0) return d.run_time_us() / 1e6;
  return (d.finished_unix_us() - d.submitted_unix_us()) / 1e6;
}

absl::StatusOr<Task> RunOk(Client& client, const TaskSpec& spec) {
  absl::StatusOr<Task> task = client.Run(spec, kWaitTimeout);
  if (!task.ok()) return task.status();
  absl::Status status = AllSucceeded(std::vector<Task>{*task});
  if (!status.ok()) return status;
  return task;
}

TaskSpec PrimesTask(int64_t below) {
  return MakeTask("math.primes", absl::StrCat(R"({"below":)", below, "}"), v1::TASK_CLASS_CPU);
}

// A math.primes size for which one task takes about `seconds`: --primes-below when given,
// else scaled from one timed probe task (the cost of trial division grows ~N^1.5).
absl::StatusOr<int64_t> PrimesBelowFor(Context& ctx, double seconds) {
  if (ctx.options.primes_below > 0) return ctx.options.primes_below;
  if (ctx.probe_below == 0) {
    const int64_t probe = ctx.options.quick ? 300000 : 1000000;
    absl::StatusOr<Task> task = RunOk(ctx.client, PrimesTask(probe));
    if (!task.ok()) return task.status();
    ctx.probe_below = probe;
    ctx.probe_seconds = std::max(1e-4, RunSeconds(*task));
  }
  const double below = ctx.probe_below * std::pow(seconds / ctx.probe_seconds, 1.0 / 1.5);
  return static_cast<int64_t>(std::clamp(below, 1000.0, 4e9));
}

// N sys.noop through `client`, batched: tasks/s.
absl::StatusOr<double> NoopRate(Client& client, int n) {
  const std::vector<TaskSpec> specs(n, MakeTask("sys.noop", ""));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<TaskResult>> tasks = RunStreamed(client, specs);
  const double wall = Since(start);
  if (!tasks.ok()) return tasks.status();
  return n / wall;
}

std::vector<Result> NoopThroughput(Context& ctx) {
  const int n = ctx.options.quick ? 2000 : 20000;
  const std::vector<TaskSpec> specs(n, MakeTask("sys.noop", ""));
  double rate[2] = {0, 0};  // the SDK's default, then StreamOptions::resume
  for (int resume = 0; resume < 2; ++resume) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<TaskResult>> tasks =
        RunStreamed(ctx.client, specs, kChunk, resume == 1);
    const double wall = Since(start);
    if (!tasks.ok()) {
      return {Failed(resume ? "noop_throughput_resumable" : "noop_throughput", "tasks/s",
                     tasks.status())};
    }
    rate[resume] = n / wall;
  }
  return {Measured("noop_throughput", rate[0], "tasks/s",
                   absl::StrFormat("%d sys.noop, one client, one Stream call, batches of %d; "
                                   "%.2f s",
                                   n, kChunk, n / rate[0])),
          Measured("noop_throughput_resumable", rate[1], "tasks/s",
                   absl::StrFormat("reference, no target: noop_throughput with "
                                   "StreamOptions::resume (an idempotency key per task), run "
                                   "second; %.2f s, %.2f x the default",
                                   n / rate[1], rate[1] / rate[0]))};
}

// Sequential Run(sys.noop) round trips in µs, after a warm-up, and where each one's time
// went: the task's own timestamps (accepted by the daemon, started and finished in the
// worker) against the client's clock on both sides (one machine, one clock).
constexpr int kLatencyWarmup = 20;
struct Sequential {
  std::vector<double> total, in, to_worker, in_worker, out;

  std::string Phases() const {
    return absl::StrFormat(
        "p50 phases: client->accepted %.0f, accepted->worker start %.0f, in worker %.0f, "
        "worker end->client %.0f us",
        Percentile(in, 50), Percentile(to_worker, 50), Percentile(in_worker, 50),
        Percentile(out, 50));
  }
};
absl::StatusOr<Sequential> SequentialMicros(Client& client, int m) {
  const TaskSpec spec = MakeTask("sys.noop", "");
  Sequential s;
  for (int i = 0; i < m + kLatencyWarmup; ++i) {
    const int64_t sent = internal::NowUnixMicros();
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<Task> task = client.Run(spec, absl::Seconds(10));
    const double us = Since(start) * 1e6;
    const int64_t received = internal::NowUnixMicros();
    absl::Status status = task.ok() ? AllSucceeded(std::vector<Task>{*task}) : task.status();
    if (!status.ok()) return status;
    if (i < kLatencyWarmup) continue;
    const v1::Decision& d = task->decision();
    s.total.push_back(us);
    s.in.push_back(static_cast<double>(d.submitted_unix_us() - sent));
    s.to_worker.push_back(static_cast<double>(d.started_unix_us() - d.submitted_unix_us()));
    s.in_worker.push_back(static_cast<double>(d.finished_unix_us() - d.started_unix_us()));
    s.out.push_back(static_cast<double>(received - d.finished_unix_us()));
  }
  return s;
}

std::vector<Result> NoopLatency(Context& ctx) {
  const int m = ctx.options.quick ? 200 : 2000;
  absl::StatusOr<Sequential> runs = SequentialMicros(ctx.client, m);
  if (!runs.ok()) {
    return {Failed("noop_latency_p50", "us", runs.status()),
            Failed("noop_latency_p99", "us", runs.status())};
  }
  const std::string notes =
      absl::StrFormat("sequential Run(sys.noop) x%d (one round trip each), after %d warm-up; %s", m,
                      kLatencyWarmup, runs->Phases());
  return {Measured("noop_latency_p50", Percentile(runs->total, 50), "us", notes),
          Measured("noop_latency_p99", Percentile(runs->total, 99), "us", notes)};
}

// The cost of making one commit durable on the filesystem the daemon's journal is on
// (the bench's temporary directory, or /tmp under --socket): 4 KiB write + fdatasync.
std::vector<Result> Fsync(Context& ctx) {
  const int m = ctx.options.quick ? 50 : 300;
  const std::string dir = ctx.own_daemon ? ctx.client_options.socket_path.substr(
                                               0, ctx.client_options.socket_path.rfind('/'))
                                         : "/tmp";
  const std::string path = dir + "/fsync-probe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return {Failed("fsync_p50", "us",
                   absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno))))};
  }
  const std::string page(4096, 'x');
  std::vector<double> micros;
  absl::Status status;
  for (int i = 0; i < m && status.ok(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (::pwrite(fd, page.data(), page.size(), static_cast<off_t>(i) * 4096) !=
            static_cast<ssize_t>(page.size()) ||
        ::fdatasync(fd) != 0) {
      status =
          absl::InternalError(absl::StrCat("write/fdatasync ", path, ": ", std::strerror(errno)));
    }
    micros.push_back(Since(start) * 1e6);
  }
  ::close(fd);
  ::unlink(path.c_str());
  if (!status.ok()) return {Failed("fsync_p50", "us", status)};
  return {Measured("fsync_p50", Percentile(micros, 50), "us",
                   absl::StrFormat("reference, no target: 4 KiB pwrite + fdatasync x%d in %s; "
                                   "p99 %.0f us; a Run with --durability full waits for one "
                                   "such commit (its final state; its acceptance is written "
                                   "to the WAL without one)",
                                   m, dir, Percentile(micros, 99)))};
}

std::vector<Result> CpuScaling(Context& ctx) {
  auto fail = [](const absl::Status& status) {
    return std::vector<Result>{Failed("cpu_scaling", "%", status),
                               Failed("cpu_scaling_speedup", "x", status)};
  };
  if (ctx.shape.cpu_workers == 0) {
    return fail(absl::FailedPreconditionError("the daemon reports no cpu workers"));
  }
  // Warm-up: one task per worker, so spawn or first-touch costs stay out of both runs.
  absl::StatusOr<std::vector<TaskResult>> warm =
      RunStreamed(ctx.client, std::vector<TaskSpec>(ctx.shape.cpu_workers, PrimesTask(1000)));
  if (!warm.ok()) return fail(warm.status());
  const double per_task = ctx.options.quick ? 0.1 : 0.25;
  absl::StatusOr<int64_t> below = PrimesBelowFor(ctx, per_task);
  if (!below.ok()) return fail(below.status());
  const TaskSpec spec = PrimesTask(*below);

  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kScalingTasks; ++i) {
    absl::StatusOr<Task> task = RunOk(ctx.client, spec);
    if (!task.ok()) return fail(task.status());
  }
  const double t_seq = Since(start);
  start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<TaskResult>> par =
      RunStreamed(ctx.client, std::vector<TaskSpec>(kScalingTasks, spec));
  if (!par.ok()) return fail(par.status());
  const double t_par = Since(start);

  // The ideal speedup: one task per process, as many processes as run at once, no more
  // than there are cores to run them or tasks to run.
  const int ideal = std::min({ctx.shape.cores, ctx.shape.cpu_workers, kScalingTasks});
  const double speedup = t_seq / t_par;
  const std::string notes = absl::StrFormat(
      "%d x math.primes below %d (%.3f s per task measured, aimed at %.2f s): one at a "
      "time %.2f s, all at once %.2f s; ideal min(%d cores, %d cpu workers) = %d",
      kScalingTasks, *below, t_seq / kScalingTasks, per_task, t_seq, t_par, ctx.shape.cores,
      ctx.shape.cpu_workers, ideal);
  return {Measured("cpu_scaling", 100 * speedup / ideal, "%", notes),
          Measured("cpu_scaling_speedup", speedup, "x", notes)};
}

std::vector<Result> Sleeps(Context& ctx, int n) {
  constexpr size_t kSleepChunk = 1000;  // small batches: the first sleeps start sooner
  const std::string name = absl::StrCat("sleep_", n);
  const std::vector<TaskSpec> specs(n, MakeTask("sys.sleep", R"({"ms":1000})"));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<TaskResult>> tasks = RunStreamed(ctx.client, specs, kSleepChunk);
  const double wall = Since(start);
  if (!tasks.ok()) return {Failed(name, "s", tasks.status())};
  return {Measured(name, wall, "s",
                   absl::StrFormat("%d concurrent sys.sleep 1000 ms, one Stream call, batches "
                                   "of %d; ideal 1.00 s",
                                   n, std::min<size_t>(n, kSleepChunk)))};
}

std::vector<Result> NoopThroughput8Clients(Context& ctx) {
  constexpr int kClients = 8;
  const int per_client = ctx.options.quick ? 500 : 5000;
  const std::string name = "noop_throughput_8_clients";
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(ctx.client_options);
    if (!client.ok()) return {Failed(name, "tasks/s", client.status())};
    clients.push_back(*std::move(client));
  }
  const std::vector<TaskSpec> specs(per_client, MakeTask("sys.noop", ""));
  std::vector<absl::Status> statuses(kClients);
  std::latch ready(kClients + 1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      ready.arrive_and_wait();
      statuses[i] = RunStreamed(*clients[i], specs).status();
    });
  }
  ready.arrive_and_wait();
  const auto start = std::chrono::steady_clock::now();
  for (std::thread& thread : threads) thread.join();
  const double wall = Since(start);
  for (const absl::Status& status : statuses) {
    if (!status.ok()) return {Failed(name, "tasks/s", status)};
  }
  return {Measured(name, kClients * per_client / wall, "tasks/s",
                   absl::StrFormat("%d clients at once, each its own Client: %d sys.noop, "
                                   "one Stream call each, batches of %d; %.2f s",
                                   kClients, per_client, kChunk, wall))};
}

std::vector<Result> GrpcUnary(Context& ctx) {
  const int m = ctx.options.quick ? 500 : 2000;
  constexpr int kWarmup = 50;
  const std::string id = "bench-no-such-task";
  std::vector<double> micros;
  micros.reserve(m);
  for (int i = 0; i < m + kWarmup; ++i) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<Task> task = ctx.client.Get(id);
    const double us = Since(start) * 1e6;
    if (task.ok() || !absl::IsNotFound(task.status())) {
      return {Failed(
          "grpc_unary_p50", "us",
          task.ok() ? absl::InternalError("Get of a nonexistent id succeeded") : task.status())};
    }
    if (i >= kWarmup) micros.push_back(us);
  }
  return {Measured("grpc_unary_p50", Percentile(micros, 50), "us",
                   absl::StrFormat("reference, no target: Client::Get of a nonexistent id "
                                   "(NOT_FOUND), a minimal unary round trip through the "
                                   "daemon's gRPC stack, x%d; p99 %.0f us",
                                   m, Percentile(micros, 99)))};
}

std::vector<Result> Mixed(Context& ctx) {
  constexpr int kCpuTasks = 4;
  constexpr int kIoTasks = 200;
  constexpr int kSleepMs = 100;
  const double cpu_seconds = ctx.options.quick ? 0.5 : 2.0;
  auto fail = [](const absl::Status& status) {
    return std::vector<Result>{Failed("mixed_io_p99", "ms", status),
                               Failed("mixed_makespan", "x ideal", status)};
  };
  if (ctx.shape.cpu_workers == 0) {
    return fail(absl::FailedPreconditionError("the daemon reports no cpu workers"));
  }
  absl::StatusOr<int64_t> below = PrimesBelowFor(ctx, cpu_seconds);
  if (!below.ok()) return fail(below.status());
  // One CPU task alone first: the CPU work of the mix is kCpuTasks times its run time.
  absl::StatusOr<Task> solo = RunOk(ctx.client, PrimesTask(*below));
  if (!solo.ok()) return fail(solo.status());
  const double solo_seconds = RunSeconds(*solo);

  std::vector<TaskSpec> specs(kCpuTasks, PrimesTask(*below));
  specs.insert(specs.end(), kIoTasks,
               MakeTask("sys.sleep", absl::StrCat(R"({"ms":)", kSleepMs, "}")));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<TaskResult>> tasks = RunStreamed(ctx.client, specs);
  const double wall = Since(start);
  if (!tasks.ok()) return fail(tasks.status());
  std::vector<double> io_ms;
  for (size_t i = kCpuTasks; i < tasks->size(); ++i) {
    const auto& d = (*tasks)[i].decision();
    io_ms.push_back((d.finished_unix_us() - d.submitted_unix_us()) / 1e3);
  }
  const int lanes = std::min(ctx.shape.cores, ctx.shape.cpu_workers);
  const double cpu_work = kCpuTasks * solo_seconds;
  const double ideal = std::max(cpu_work / lanes, kSleepMs / 1e3);
  const std::string notes = absl::StrFormat(
      "%d x math.primes below %d (%.2f s alone, aimed at %.2f s) + %d sys.sleep %d ms in "
      "one stream batch; I/O finished-submitted p50 %.1f ms p99 %.1f ms; makespan %.2f s, "
      "ideal %.2f s = max(cpu work %.2f s / min(%d cores, %d cpu workers), %.1f s)",
      kCpuTasks, *below, solo_seconds, cpu_seconds, kIoTasks, kSleepMs, Percentile(io_ms, 50),
      Percentile(io_ms, 99), wall, ideal, cpu_work, ctx.shape.cores, ctx.shape.cpu_workers,
      kSleepMs / 1e3);
  return {Measured("mixed_io_p99", Percentile(io_ms, 99), "ms", notes),
          Measured("mixed_makespan", wall / ideal, "x ideal", notes)};
}

// Runs `command` with /bin/sh -c (posix_spawn, default signals, nothing blocked): its
// wall seconds, or an error unless it exited 0.
absl::StatusOr<double> TimeShell(const std::string& command) {
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  posix_spawnattr_t attr;
  internal::InitCleanSpawnAttr(&attr);
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int err = posix_spawn(&pid, "/bin/sh", nullptr, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return absl::InternalError(absl::StrCat("posix_spawn /bin/sh: ", strerror(err)));
  int status = 0;
  while (waitpid(pid, &status, 0) == -1 && errno == EINTR) {
  }
  const double wall = Since(start);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat("`", command, "` did not exit 0 (status ", status, ")"));
  }
  return wall;
}

std::vector<Result> ExecTrue(Context& ctx) {
  const int n = ctx.options.quick ? 200 : 1000;
  const int parallel = ctx.shape.cores;
  const std::string command = absl::StrFormat("seq %d | xargs -P%d -n1 /bin/true", n, parallel);
  absl::StatusOr<double> xargs = TimeShell(command);
  if (!xargs.ok()) {
    return {Failed("exec_xargs", "tasks/s", xargs.status()),
            Failed("exec_true", "tasks/s", xargs.status())};
  }
  Result reference =
      Measured("exec_xargs", n / *xargs, "tasks/s",
               absl::StrFormat("reference, no target: /bin/sh -c '%s'; %.2f s", command, *xargs));
  const TaskSpec spec = MakeTask("sys.exec", R"({"argv":["/bin/true"]})");
  absl::StatusOr<Task> warm = RunOk(ctx.client, spec);
  if (!warm.ok()) return {reference, Failed("exec_true", "tasks/s", warm.status())};
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<TaskResult>> tasks =
      RunStreamed(ctx.client, std::vector<TaskSpec>(n, spec));
  const double wall = Since(start);
  if (!tasks.ok()) return {reference, Failed("exec_true", "tasks/s", tasks.status())};
  int nonzero = 0;
  for (const TaskResult& task : *tasks) {
    const auto out = nlohmann::json::parse(task.output(), nullptr, false);
    if (!out.is_object() || out.value("exit_code", -1) != 0) ++nonzero;
  }
  if (nonzero > 0) {
    return {
        reference,
        Failed("exec_true", "tasks/s",
               absl::InternalError(absl::StrCat(nonzero, " of ", n, " /bin/true did not exit 0")))};
  }
  const std::string executor =
      tasks->empty() ? "" : ExecutorName((*tasks)[0].decision().executor());
  return {reference,
          Measured("exec_true", n / wall, "tasks/s",
                   absl::StrFormat("%d sys.exec /bin/true (%s), one Stream call, batches of %d; "
                                   "%.2f s vs xargs -P%d %.2f s",
                                   n, executor, kChunk, wall, parallel, *xargs))};
}

// `args` without any `flag VALUE` or `flag=VALUE`.
std::vector<std::string> WithoutFlag(const std::vector<std::string>& args,
                                     const std::string& flag) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag) {
      ++i;
      continue;
    }
    if (args[i].rfind(flag + "=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

// Resident memory of a process in bytes (VmRSS), or an error.
absl::StatusOr<int64_t> ResidentBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    int64_t kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %" SCNd64 " kB", &kb) == 1) return kb * 1024;
  }
  return absl::NotFoundError(absl::StrCat("no VmRSS in /proc/", pid, "/status"));
}

// Daemon memory per queued task: a second daemon with the same options (and room for
// the queue) has its cpu pool held by long sleeps declared CPU, then gets N no-op CPU
// tasks that all stay queued; the figure is its growth in resident memory over N.
std::vector<Result> QueuedMemory(Context& ctx) {
  const std::string name = "queued_memory";
  if (!ctx.own_daemon) {
    return {Skipped(name, "B/task",
                    "measuring a running daemon (--socket): needs a daemon the bench starts")};
  }
  const int n = ctx.options.quick ? 100000 : 1000000;
  constexpr int kBatch = 10000;
  DaemonProcessOptions options = ctx.options.daemon;
  options.args = WithoutFlag(WithoutFlag(options.args, "--max-queued"), "--drain-timeout");
  options.args.push_back(absl::StrCat("--max-queued=", n + 1000));
  // One client holds them all: lift the per-owner share too (WithoutFlag keeps
  // --max-queued-per-owner apart from --max-queued).
  options.args = WithoutFlag(options.args, "--max-queued-per-owner");
  options.args.push_back(absl::StrCat("--max-queued-per-owner=", n + 1000));
  options.args.push_back("--drain-timeout=0s");  // the blockers would hold the stop
  absl::StatusOr<std::unique_ptr<DaemonProcess>> other = DaemonProcess::Start(options);
  if (!other.ok()) return {Failed(name, "B/task", other.status())};
  absl::Status status;
  int64_t before = 0, after = 0;
  uint32_t queued = 0;
  double submit_seconds = 0;
  {
    ClientOptions client_options;
    client_options.socket_path = (*other)->socket_path();
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(client_options);
    status = client.status();
    if (status.ok()) {
      TaskSpec blocker = MakeTask("sys.sleep", R"({"ms": 600000})", v1::TASK_CLASS_CPU);
      status =
          (*client)->SubmitBatch(std::vector<TaskSpec>(ctx.shape.cpu_workers, blocker)).status();
    }
    absl::StatusOr<int64_t> rss = status.ok() ? ResidentBytes((*other)->pid()) : status;
    status = rss.status();
    if (status.ok()) before = *rss;
    const std::vector<TaskSpec> batch(kBatch, MakeTask("sys.noop", "", v1::TASK_CLASS_CPU));
    const absl::Time start = absl::Now();
    for (int done = 0; status.ok() && done < n; done += kBatch) {
      status = (*client)->SubmitBatch(batch).status();
    }
    submit_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    absl::StatusOr<v1::Stats> stats = status.ok() ? (*client)->GetStats() : status;
    status = stats.status();
    if (status.ok()) {
      for (const auto& pool : stats->pools()) {
        if (pool.name() == "cpu") queued = pool.queued();
      }
      if (queued < static_cast<uint32_t>(n)) {
        status = absl::InternalError(
            absl::StrCat("only ", queued, " of ", n, " tasks were still queued"));
      }
    }
    rss = status.ok() ? ResidentBytes((*other)->pid()) : status;
    status = rss.status();
    if (status.ok()) after = *rss;
  }  // the client goes before its daemon
  const absl::Status stopped = (*other)->Stop();
  if (status.ok()) status = stopped;
  if (!status.ok()) return {Failed(name, "B/task", status)};
  return {Measured(name, static_cast<double>(after - before) / n, "B/task",
                   absl::StrFormat("%d sys.noop queued behind %d cpu-pool sleeps (a second "
                                   "daemon, same options); RSS %.0f -> %.0f MiB; submitted at "
                                   "%.0f tasks/s, SubmitBatch x%d",
                                   n, ctx.shape.cpu_workers, before / 1048576.0, after / 1048576.0,
                                   n / submit_seconds, kBatch))};
}

// What a Stream costs the daemon when its client sends batches and never reads: the
// daemon's own bound (DaemonOptions::stream_result_backlog results) plus whatever gRPC
// buffers on the way. A second daemon, so its RSS holds nothing else.
std::vector<Result> UnreadStreamMemory(Context& ctx) {
  const std::string name = "unread_stream_memory";
  if (!ctx.own_daemon) {
    return {Skipped(name, "MiB",
                    "measuring a running daemon (--socket): needs a daemon the bench starts")};
  }
  const int batches = ctx.options.quick ? 20 : 200;
  constexpr int kBatch = 1000;
  absl::StatusOr<std::unique_ptr<DaemonProcess>> other = DaemonProcess::Start(ctx.options.daemon);
  if (!other.ok()) return {Failed(name, "MiB", other.status())};
  absl::Status status;
  int64_t before = 0, after = 0;
  uint64_t accepted = 0;
  std::atomic<int> written{0};
  {
    ClientOptions client_options;
    client_options.socket_path = (*other)->socket_path();
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(client_options);
    status = client.status();
    absl::StatusOr<int64_t> rss = status.ok() ? ResidentBytes((*other)->pid()) : status;
    status = rss.status();
    if (status.ok()) before = *rss;
    auto stub = v1::TaskService::NewStub(grpc::CreateChannel(
        absl::StrCat("unix:", (*other)->socket_path()), grpc::InsecureChannelCredentials()));
    grpc::ClientContext call;
    std::unique_ptr<grpc::ClientReaderWriter<v1::StreamRequest, v1::StreamResponse>> stream;
    std::thread writer;
    if (status.ok()) {
      stream = stub->Stream(&call);
      writer = std::thread([&] {
        v1::StreamRequest request;
        for (int i = 0; i < kBatch; ++i) {
          *request.add_tasks() = MakeTask("sys.noop", "", v1::TASK_CLASS_AUTO);
        }
        for (int i = 0; i < batches; ++i) {
          request.set_tag(static_cast<uint64_t>(i));
          if (!stream->Write(request)) return;  // cancelled below, or the daemon went
          ++written;
        }
      });
    }
    // Until the daemon stops taking batches (its count of submitted tasks stands still
    // for a second) or takes them all; bounded by kWaitTimeout.
    const absl::Time give_up = absl::Now() + kWaitTimeout;
    absl::Time moved = absl::Now();
    while (status.ok() && absl::Now() < give_up) {
      absl::StatusOr<v1::Stats> stats = (*client)->GetStats();
      status = stats.status();
      if (!status.ok()) break;
      if (stats->tasks_submitted() != accepted) {
        accepted = stats->tasks_submitted();
        moved = absl::Now();
      }
      if (accepted >= static_cast<uint64_t>(batches) * kBatch ||
          absl::Now() - moved > absl::Seconds(1)) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    rss = status.ok() ? ResidentBytes((*other)->pid()) : status;
    if (status.ok()) status = rss.status();
    if (status.ok()) after = *rss;
    call.TryCancel();
    if (writer.joinable()) writer.join();
    if (stream) stream->Finish().IgnoreError();
  }  // the client goes before its daemon
  const absl::Status stopped = (*other)->Stop();
  if (status.ok()) status = stopped;
  if (!status.ok()) return {Failed(name, "MiB", status)};
  return {Measured(
      name, static_cast<double>(after - before) / 1048576.0, "MiB",
      absl::StrFormat(
          "reference, no target: daemon RSS growth while one Stream "
          "sends %d batches of %d sys.noop and reads nothing; the "
          "client wrote %d batches, the daemon accepted %d tasks%s; "
          "RSS %.0f -> %.0f MiB",
          batches, kBatch, written.load(), accepted,
          accepted < static_cast<uint64_t>(batches) * kBatch ? " and stopped reading" : " (all)",
          before / 1048576.0, after / 1048576.0))};
}

std::vector<Result> DurableRatio(Context& ctx) {
  const std::string name = "durable_ratio";
  if (!ctx.own_daemon) {
    return {Skipped(name, "x",
                    "measuring a running daemon (--socket): the ratio needs a second "
                    "daemon the bench starts itself")};
  }
  const int n = ctx.options.quick ? 2000 : 20000;
  // Two fresh daemons with the bench daemon's options, one of them memory only: the
  // bench daemon itself has run the other scenarios by now, so its retention is busy
  // evicting old tasks, which the fresh one would not be.
  DaemonProcessOptions options = ctx.options.daemon;
  absl::StatusOr<std::unique_ptr<DaemonProcess>> durable_daemon = DaemonProcess::Start(options);
  if (!durable_daemon.ok()) return {Failed(name, "x", durable_daemon.status())};
  options.args = WithoutFlag(options.args, "--durability");
  options.args.push_back("--durability=none");
  absl::StatusOr<std::unique_ptr<DaemonProcess>> other = DaemonProcess::Start(options);
  if (!other.ok()) return {Failed(name, "x", other.status())};
  double durable = 0, memory = 0;
  absl::Status status;
  Sequential sequential;
  {
    absl::StatusOr<std::unique_ptr<Client>> clients[2];
    for (int i = 0; i < 2; ++i) {
      ClientOptions client_options;
      client_options.socket_path = (i == 0 ? *durable_daemon : *other)->socket_path();
      clients[i] = Client::Connect(client_options);
      if (status.ok()) status = clients[i].status();
    }
    // Alternate, twice each, and keep the best of each: noise on a shared machine.
    for (int round = 0; round < 2 && status.ok(); ++round) {
      absl::StatusOr<double> a = NoopRate(**clients[0], n);
      absl::StatusOr<double> b = a.ok() ? NoopRate(**clients[1], n) : a;
      status = b.status();
      if (status.ok()) {
        durable = std::max(durable, *a);
        memory = std::max(memory, *b);
      }
    }
    // The runtime's own round trip, without waiting for the disk.
    if (status.ok()) {
      absl::StatusOr<Sequential> m = SequentialMicros(**clients[1], ctx.options.quick ? 200 : 2000);
      status = m.status();
      if (m.ok()) sequential = *std::move(m);
    }
  }  // the clients go before their daemons
  for (auto* d : {&durable_daemon, &other}) {
    const absl::Status stopped = (**d)->Stop();
    if (status.ok()) status = stopped;
  }
  if (!status.ok()) return {Failed(name, "x", status)};
  const std::string latency_notes =
      absl::StrFormat("reference, no target: noop_latency on the --durability=none daemon, x%d; %s",
                      sequential.total.size(), sequential.Phases());
  return {
      Measured("noop_latency_p50_nojournal", Percentile(sequential.total, 50), "us", latency_notes),
      Measured("noop_latency_p99_nojournal", Percentile(sequential.total, 99), "us", latency_notes),
      Measured(name, durable / memory, "x",
               absl::StrFormat("noop_throughput (%d tasks, best of 2) of a fresh daemon "
                               "(daemon args: %s) %.0f tasks/s vs a fresh one with "
                               "--durability=none %.0f tasks/s",
                               n,
                               ctx.options.daemon.args.empty()
                                   ? "default, --durability full"
                                   : absl::StrJoin(ctx.options.daemon.args, " "),
                               durable, memory))};
}

// ---- cluster ------------------------------------------------------------------------

// Three daemons of one cpu worker each on loopback TCP with one token, and a client of
// all three (docs/CLUSTER.md). Stops them in its destructor, by pid.
struct LocalCluster {
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  std::vector<std::string> addresses;
  std::string token_file;
  std::string dir;
  ~LocalCluster() {
    daemons.clear();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  absl::StatusOr<std::unique_ptr<Client>> Connect(std::string target,
                                                  ClientOptions::Spread spread) const {
    ClientOptions options;
    options.target = std::move(target);
    options.token_file = token_file;
    options.spread = spread;
    return Client::Connect(options);
  }
  std::string Target() const { return absl::StrCat("ipv4:", absl::StrJoin(addresses, ",")); }
};

std::string RandomHexForBench() {
  std::mt19937_64 gen{std::random_device{}()};
  return absl::StrCat(absl::Hex(gen(), absl::kZeroPad16), absl::Hex(gen(), absl::kZeroPad16),
                      absl::Hex(gen(), absl::kZeroPad16));
}

int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  return ok ? ntohs(a.sin_port) : 0;
}

absl::Status StartCluster(const Context& ctx, LocalCluster* c) {
  char tmpl[] = "/tmp/taskrt-bench-cluster-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  c->dir = tmpl;
  c->token_file = c->dir + "/token";
  {
    std::ofstream out(c->token_file);
    out << "bench" << RandomHexForBench() << "\n";
  }
  std::filesystem::permissions(
      c->token_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  for (int i = 0; i < 3; ++i) {
    const int port = FreeLoopbackPort();
    DaemonProcessOptions options = ctx.options.daemon;
    options.dir = absl::StrCat(c->dir, "/d", i);
    std::filesystem::create_directories(options.dir);
    options.args = {"--listen",    absl::StrCat("127.0.0.1:", port), "--token-file",  c->token_file,
                    "--id-prefix", absl::StrCat("bench-", i),        "--cpu-workers", "1",
                    "--quiet"};
    ASSIGN_OR_RETURN(auto daemon, DaemonProcess::Start(options));
    c->daemons.push_back(std::move(daemon));
    c->addresses.push_back(absl::StrCat("127.0.0.1:", port));
  }
  return absl::OkStatus();
}

// The makespan of `specs` through `client`, in seconds.
absl::StatusOr<double> Makespan(Client& client, const std::vector<TaskSpec>& specs) {
  const auto start = std::chrono::steady_clock::now();
  Client::StreamOptions options;
  options.batch_size = 1;  // one task per batch: a cluster spreads task by task anyway
  options.timeout = kWaitTimeout;
  ASSIGN_OR_RETURN(std::vector<TaskResult> results, client.RunMany(specs, options));
  RETURN_IF_ERROR(AllSucceeded(results));
  return Since(start);
}

absl::StatusOr<std::vector<Result>> ClusterFigures(Context& ctx) {
  LocalCluster cluster;
  RETURN_IF_ERROR(StartCluster(ctx, &cluster));
  using Spread = ClientOptions::Spread;
  ASSIGN_OR_RETURN(auto all, cluster.Connect(cluster.Target(), Spread::kLeastLoaded));
  ASSIGN_OR_RETURN(auto rr, cluster.Connect(cluster.Target(), Spread::kRoundRobin));
  ASSIGN_OR_RETURN(auto one, cluster.Connect(cluster.addresses[0], Spread::kLeastLoaded));
  std::vector<Result> out;
  const int n = ctx.options.quick ? 3000 : 30000;
  ASSIGN_OR_RETURN(double rate, NoopRate(*all, n));
  out.push_back(Measured("cluster_noop_throughput", rate, "tasks/s",
                         absl::StrFormat("%d sys.noop by one client over 3 local daemons "
                                         "(TCP with a token, --durability full)",
                                         n)));
  ASSIGN_OR_RETURN(int64_t below, PrimesBelowFor(ctx, ctx.options.quick ? 0.1 : 0.25));
  const std::vector<TaskSpec> twelve(12, PrimesTask(below));
  ASSIGN_OR_RETURN(double t_one, Makespan(*one, twelve));
  ASSIGN_OR_RETURN(double t_all, Makespan(*all, twelve));
  const int ceiling = std::min(ctx.shape.cores, 3);
  out.push_back(Measured(
      "cluster_cpu_scaling", t_one / t_all, "x",
      absl::StrFormat("12 x math.primes below %d: one daemon of 1 cpu worker %.2f s, 3 such "
                      "daemons %.2f s; the ceiling is min(%d cores, 3 workers) = %d",
                      below, t_one, t_all, ctx.shape.cores, ceiling)));
  // Uneven load: another client has queued 6 tasks on daemon 0 first. Least-loaded sees
  // its load and sends it fewer of the 12; round-robin sends it its third.
  double makespan[2] = {0, 0};
  for (int policy = 0; policy < 2; ++policy) {
    ASSIGN_OR_RETURN(std::vector<std::string> busy,
                     one->SubmitBatch(std::vector<TaskSpec>(6, PrimesTask(below))));
    ASSIGN_OR_RETURN(makespan[policy], Makespan(policy == 0 ? *all : *rr, twelve));
    ASSIGN_OR_RETURN(std::vector<Task> done, one->WaitAll(busy, kWaitTimeout));
    (void)done;
    absl::SleepFor(absl::Milliseconds(1100));  // the loads reported go stale
  }
  out.push_back(Measured(
      "cluster_spread_uneven", makespan[1] / makespan[0], "x",
      absl::StrFormat("12 CPU tasks while daemon 0 has 6 queued by another client: "
                      "least-loaded %.2f s, round-robin %.2f s (round-robin / least-loaded)",
                      makespan[0], makespan[1])));
  return out;
}

std::vector<Result> ClusterScenario(Context& ctx) {
  absl::StatusOr<std::vector<Result>> r = ClusterFigures(ctx);
  if (r.ok()) return *std::move(r);
  return {Failed("cluster_noop_throughput", "tasks/s", r.status())};
}

struct Scenario {
  std::string name;
  bool in_quick;
  std::function<std::vector<Result>(Context&)> run;
  // The scenarios whose figures this one's target is relative to, separated by commas:
  // they run (before this one) whenever this one does.
  std::string needs;
};

// In the order they run.
std::vector<Scenario> AllScenarios() {
  return {
      {"noop_throughput", true, NoopThroughput, ""},
      {"noop_throughput_8_clients", true, NoopThroughput8Clients, ""},
      {"grpc_unary", true, GrpcUnary, ""},
      {"fsync", true, Fsync, ""},
      {"noop_latency", true, NoopLatency, "grpc_unary,fsync"},
      {"cpu_scaling", true, CpuScaling, ""},
      {"sleep_1000", true, [](Context& ctx) { return Sleeps(ctx, 1000); }, ""},
      {"sleep_10000", false, [](Context& ctx) { return Sleeps(ctx, 10000); }, ""},
      {"sleep_100000", false, [](Context& ctx) { return Sleeps(ctx, 100000); }, ""},
      {"mixed", true, Mixed, ""},
      {"exec_true", true, ExecTrue, ""},
      {"durable_ratio", true, DurableRatio, ""},
      {"queued_memory", false, QueuedMemory, ""},
      {"unread_stream_memory", false, UnreadStreamMemory, ""},
      {"cluster", false, ClusterScenario, ""},
  };
}

// ---- output -------------------------------------------------------------------------

std::string FormatValue(double value, const std::string& unit) {
  if (unit == "x" || unit == "s" || unit == "x ideal") return absl::StrFormat("%.2f", value);
  if (unit == "%" || unit == "ms") return absl::StrFormat("%.1f", value);
  return absl::StrFormat("%.0f", value);
}

constexpr const char* kTableFormat = "%-26s %12s %-8s %-28s %7s %-4s %s";

void PrintHeader() {
  std::cout << absl::StrFormat(kTableFormat, "scenario", "figure", "unit", "target", "ratio", "met",
                               "notes")
            << "\n"
            << std::string(120, '-') << "\n";
}

// Prints one result, judged against its target with the figures measured so far.
void Print(const Result& result, const std::map<std::string, double>& figures, bool json) {
  const Judged judged = Judge(result, figures);
  if (json) {
    nlohmann::ordered_json line = {
        {"scenario", result.scenario}, {"value", nullptr}, {"unit", result.unit},
        {"target", nullptr},           {"met", nullptr},   {"notes", result.notes}};
    if (result.value) line["value"] = *result.value;
    if (judged.target) line["target"] = *judged.target;
    if (judged.met) line["met"] = *judged.met;
    if (!judged.text.empty()) line["target_text"] = judged.text;
    if (!result.error.empty()) line["error"] = result.error;
    std::cout << line.dump() << std::endl;
    return;
  }
  const std::string figure = result.value ? FormatValue(*result.value, result.unit) : "-";
  std::string target = "-";
  if (!judged.text.empty()) {
    target = judged.text;
    if (FindTarget(result.scenario)->relative_to != nullptr && judged.target) {
      target += " = " + FormatValue(*judged.target, result.unit);
    }
  }
  const std::string ratio = judged.ratio ? absl::StrFormat("%.2f", *judged.ratio) : "-";
  const std::string met = judged.met ? (*judged.met ? "yes" : "NO") : "-";
  const std::string notes = result.error.empty() ? result.notes : "ERROR " + result.error;
  std::cout << absl::StrFormat(kTableFormat, result.scenario, figure, result.unit, target, ratio,
                               met, notes)
            << std::endl;
}

// Blocks SIGINT, SIGTERM and SIGHUP in this and every later thread (so call it before any
// thread starts) and takes them on a thread of their own: there it stops our daemon and
// removes its directory, which a signal handler could not do, then exits as 128 + signal.
void HandleSignalsOnThread() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    std::fflush(stdout);
    std::fprintf(stderr, "taskrt-bench: %s, stopping the daemon\n", strsignal(sig));
    StopRunningDaemons();
    _exit(128 + sig);
  }).detach();
}

int RunBench(const BenchOptions& options) {
  std::unique_ptr<DaemonProcess> daemon;
  ClientOptions client_options;
  if (options.socket_path.empty()) {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> started = DaemonProcess::Start(options.daemon);
    if (!started.ok()) {
      std::cerr << "taskrt-bench: " << started.status() << "\n";
      if (absl::IsNotFound(started.status())) {
        std::cerr << "taskrt-bench: pass --daemon PATH, or --socket to measure a running daemon\n";
      }
      return 1;
    }
    daemon = *std::move(started);
    client_options.socket_path = daemon->socket_path();
  } else {
    client_options.socket_path = options.socket_path;
  }

  int exit_code = 0;
  {
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(client_options);
    absl::StatusOr<Shape> shape =
        client.ok() ? ReadShape(**client) : absl::StatusOr<Shape>(client.status());
    if (!shape.ok()) {
      std::cerr << "taskrt-bench: " << shape.status() << "\n";
      return 1;  // `daemon` stops the daemon and removes its directory
    }
    (options.json ? std::cerr : std::cout) << absl::StrFormat(
        "taskrt-bench: %s daemon pid %d at %s; cpu pool %d, io pool %d x %d threads; "
        "%d cores, load %.2f%s\n",
        daemon ? "own" : "running", shape->daemon_pid, (*client)->target(), shape->cpu_workers,
        shape->io_workers, shape->io_workers > 0 ? shape->io_threads / shape->io_workers : 0,
        shape->cores, LoadAverage(), options.quick ? "; quick" : "");
    if (!options.json) PrintHeader();
    Context ctx{**client, *shape, options, client_options, daemon != nullptr};
    const std::vector<Scenario> all = AllScenarios();
    auto selected = [&](const Scenario& scenario) {
      if (options.scenarios.empty()) return !options.quick || scenario.in_quick;
      return std::find(options.scenarios.begin(), options.scenarios.end(), scenario.name) !=
             options.scenarios.end();
    };
    std::map<std::string, double> figures;  // by result name, for relative targets
    for (const Scenario& scenario : all) {
      bool run = selected(scenario);
      // Also run a scenario that a selected one is measured against.
      for (const Scenario& other : all) {
        const std::vector<std::string> needs = absl::StrSplit(other.needs, ',');
        if (absl::c_linear_search(needs, scenario.name) && selected(other)) run = true;
      }
      if (!run) continue;
      for (const Result& result : scenario.run(ctx)) {
        if (!result.error.empty()) exit_code = 1;
        Print(result, figures, options.json);
        if (result.value) figures[result.scenario] = *result.value;
      }
    }
  }  // the client goes before the daemon it talks to

  if (daemon) {
    const absl::Status stopped = daemon->Stop();
    if (!stopped.ok()) {
      std::cerr << "taskrt-bench: stopping the daemon: " << stopped << "\n";
      exit_code = 1;
    }
  }
  return exit_code;
}

}  // namespace
}  // namespace taskrt::bench

int main(int argc, char** argv) {
  using taskrt::bench::BenchOptions;
  BenchOptions options;
  options.daemon.temp_prefix = "taskrt-bench";
  std::optional<int> cpu_workers;
  std::optional<int> io_workers;
  std::optional<int> io_threads;
  std::vector<std::string> daemon_args;
  std::vector<std::string> names;
  for (const auto& scenario : taskrt::bench::AllScenarios()) names.push_back(scenario.name);

  CLI::App app{"taskrt-bench: throughput, latency and scaling figures of taskrtd"};
  app.add_option("--socket", options.socket_path,
                 "measure the daemon on this socket instead of starting one");
  app.add_option("--daemon", options.daemon.binary,
                 "taskrtd binary to start (default: taskrtd beside this program)");
  app.add_option("--cpu-workers", cpu_workers, "passed to the daemon we start");
  app.add_option("--io-workers", io_workers, "passed to the daemon we start");
  app.add_option("--io-threads", io_threads, "passed to the daemon we start");
  app.add_option("--daemon-arg", daemon_args,
                 "any other argument for the daemon we start (repeatable; --daemon-arg=--flag)")
      ->allow_extra_args(false);
  app.add_flag("--quick", options.quick,
               "small sizes; skips sleep_10000, sleep_100000 and queued_memory unless named");
  app.add_flag("--json", options.json,
               "one JSON object per line: scenario, value, unit, notes, target, met");
  app.add_option("--scenario", options.scenarios, "run only these (repeatable)")
      ->check(CLI::IsMember(names))
      ->allow_extra_args(false);
  app.add_option("--primes-below", options.primes_below,
                 "math.primes size for cpu_scaling and mixed (default: calibrated so one task "
                 "takes ~0.25 s, quick ~0.1 s; mixed ~2 s, quick ~0.5 s)")
      ->check(CLI::Range(int64_t{1000}, int64_t{1000000000}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a success, any other a usage error
  }

  if (!options.socket_path.empty() && (cpu_workers || io_workers || io_threads ||
                                       !daemon_args.empty() || !options.daemon.binary.empty())) {
    std::cerr << "taskrt-bench: --socket measures a running daemon; daemon options "
                 "(--daemon, --cpu-workers, --io-workers, --io-threads, --daemon-arg) "
                 "apply only to a daemon the benchmark starts\n";
    return 2;
  }
  if (cpu_workers) {
    options.daemon.args.insert(options.daemon.args.end(),
                               {"--cpu-workers", std::to_string(*cpu_workers)});
  }
  if (io_workers) {
    options.daemon.args.insert(options.daemon.args.end(),
                               {"--io-workers", std::to_string(*io_workers)});
  }
  if (io_threads) {
    options.daemon.args.insert(options.daemon.args.end(),
                               {"--io-threads", std::to_string(*io_threads)});
  }
  options.daemon.args.insert(options.daemon.args.end(), daemon_args.begin(), daemon_args.end());

  signal(SIGPIPE, SIG_IGN);
  taskrt::bench::HandleSignalsOnThread();
  return taskrt::bench::RunBench(options);
}
