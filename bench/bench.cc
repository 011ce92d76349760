// taskrt-bench: throughput, latency and scaling figures of a taskrtd.
//
//   build/bin/taskrt-bench                 # starts build/bin/taskrtd on a temporary socket
//   build/bin/taskrt-bench --quick --json  # small sizes, one JSON object per line
//   build/bin/taskrt-bench --socket /run/user/1000/taskrt/taskrt.sock  # a running daemon
//
// Scenarios (select with --scenario NAME, repeatable):
//   noop_throughput  N sys.noop tasks from one client (SubmitBatch x1000, WaitAll): tasks/s
//   noop_latency     sequential Run(sys.noop): p50 and p99 in µs
//   cpu_scaling      8 math.primes one after another vs all at once on the cpu pool:
//                    efficiency = speedup / min(cores, cpu workers, 8), and the speedup
//   sleep_1000       1000 concurrent sys.sleep 1 s: wall seconds (ideal 1.0)
//   sleep_10000      10000 of them (not in --quick unless named)
//
// Every wait is bounded (kWaitTimeout), so a broken daemon fails a scenario instead of
// hanging the run. Exit status: 0 when every selected scenario produced its figures,
// 1 otherwise, 2 on bad options.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "bench/daemon_process.h"
#include "nlohmann/json.hpp"
#include "taskrt/client.h"

namespace taskrt::bench {
namespace {

using v1::Task;
using v1::TaskSpec;

constexpr absl::Duration kWaitTimeout = absl::Seconds(120);
constexpr size_t kChunk = 1000;  // tasks per SubmitBatch and per WaitAll call
constexpr int kScalingTasks = 8;

struct BenchOptions {
  std::string socket_path;  // empty: start our own daemon
  DaemonProcessOptions daemon;
  bool quick = false;
  bool json = false;
  std::vector<std::string> scenarios;  // empty: all (in --quick: all but sleep_10000)
  int64_t primes_below = 0;            // 0: 2000000, quick 300000
};

// One line of output: a figure, or an error that kept the scenario from producing it.
struct Result {
  std::string scenario;
  std::optional<double> value;
  std::string unit;
  std::string notes;
  std::string error;
};

// What the benchmark runs against, read from GetStats.
struct Shape {
  int daemon_pid = 0;
  int cpu_workers = 0;
  int io_workers = 0;
  int io_threads = 0;
  int cores = 0;
};

// The 1-minute load average, a hint that other work shared the cores; -1 if unknown.
double LoadAverage() {
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

absl::StatusOr<Shape> ReadShape(Client& client) {
  absl::StatusOr<v1::Stats> stats = client.GetStats();
  if (!stats.ok()) return stats.status();
  Shape shape;
  shape.daemon_pid = stats->daemon_pid();
  for (const auto& pool : stats->pools()) {
    if (pool.name() == "cpu") shape.cpu_workers = static_cast<int>(pool.workers());
    if (pool.name() == "io") shape.io_workers = static_cast<int>(pool.workers());
  }
  for (const auto& worker : stats->workers()) {
    if (worker.pool() == "io") shape.io_threads += static_cast<int>(worker.threads());
  }
  shape.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return shape;
}

// Fails unless every task succeeded; the message counts the others and shows the first.
absl::Status AllSucceeded(const std::vector<Task>& tasks) {
  size_t failed = 0;
  const Task* first = nullptr;
  for (const Task& task : tasks) {
    if (task.state() == v1::TASK_STATE_SUCCEEDED) continue;
    if (failed++ == 0) first = &task;
  }
  if (failed == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat(
      "%d of %d tasks did not succeed; first: %s %s: %s", failed, tasks.size(), first->id(),
      StateName(first->state()), first->error().message()));
}

// Submits `specs` in chunks, then waits for all of them in chunks (so no single message
// carries tens of thousands of results), all within kWaitTimeout.
absl::StatusOr<std::vector<Task>> SubmitAndWaitAll(Client& client,
                                                   const std::vector<TaskSpec>& specs) {
  std::vector<std::string> ids;
  ids.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); i += kChunk) {
    const std::vector<TaskSpec> chunk(specs.begin() + i,
                                      specs.begin() + std::min(specs.size(), i + kChunk));
    absl::StatusOr<std::vector<std::string>> chunk_ids = client.SubmitBatch(chunk);
    if (!chunk_ids.ok()) {
      return absl::Status(chunk_ids.status().code(),
                          absl::StrCat("submitting tasks ", i, "..", i + chunk.size(), " of ",
                                       specs.size(), ": ", chunk_ids.status().message()));
    }
    ids.insert(ids.end(), chunk_ids->begin(), chunk_ids->end());
  }
  const absl::Time deadline = absl::Now() + kWaitTimeout;
  std::vector<Task> tasks;
  tasks.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); i += kChunk) {
    const std::vector<std::string> chunk(ids.begin() + i,
                                         ids.begin() + std::min(ids.size(), i + kChunk));
    absl::StatusOr<std::vector<Task>> done =
        client.WaitAll(chunk, std::max(absl::ZeroDuration(), deadline - absl::Now()));
    if (!done.ok()) return done.status();
    tasks.insert(tasks.end(), done->begin(), done->end());
  }
  absl::Status status = AllSucceeded(tasks);
  if (!status.ok()) return status;
  return tasks;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * values.size()));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

Result Measured(const std::string& scenario, double value, const std::string& unit,
                std::string notes) {
  return Result{scenario, value, unit, std::move(notes), ""};
}

Result Failed(const std::string& scenario, const std::string& unit,
              const absl::Status& status) {
  return Result{scenario, std::nullopt, unit, "", status.ToString()};
}

// ---- scenarios ----------------------------------------------------------------------

struct Context {
  Client& client;
  const Shape& shape;
  const BenchOptions& options;
};

std::vector<Result> NoopThroughput(Context& ctx) {
  const int n = ctx.options.quick ? 2000 : 20000;
  const std::vector<TaskSpec> specs(n, MakeTask("sys.noop", ""));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<Task>> tasks = SubmitAndWaitAll(ctx.client, specs);
  const double wall = Since(start);
  if (!tasks.ok()) return {Failed("noop_throughput", "tasks/s", tasks.status())};
  return {Measured("noop_throughput", n / wall, "tasks/s",
                   absl::StrFormat("%d sys.noop, one client, SubmitBatch x%d then WaitAll; "
                                   "%.2f s", n, kChunk, wall))};
}

std::vector<Result> NoopLatency(Context& ctx) {
  const int m = ctx.options.quick ? 200 : 2000;
  constexpr int kWarmup = 20;
  const TaskSpec spec = MakeTask("sys.noop", "");
  std::vector<double> micros;
  micros.reserve(m);
  for (int i = 0; i < m + kWarmup; ++i) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<Task> task = ctx.client.Run(spec, absl::Seconds(10));
    const double us = Since(start) * 1e6;
    absl::Status status = task.ok() ? AllSucceeded({*task}) : task.status();
    if (!status.ok()) {
      return {Failed("noop_latency_p50", "us", status), Failed("noop_latency_p99", "us", status)};
    }
    if (i >= kWarmup) micros.push_back(us);
  }
  const std::string notes =
      absl::StrFormat("sequential Run(sys.noop) x%d (submit + wait), after %d warm-up", m,
                      kWarmup);
  return {Measured("noop_latency_p50", Percentile(micros, 50), "us", notes),
          Measured("noop_latency_p99", Percentile(micros, 99), "us", notes)};
}

std::vector<Result> CpuScaling(Context& ctx) {
  const int64_t below =
      ctx.options.primes_below > 0 ? ctx.options.primes_below
                                   : (ctx.options.quick ? 300000 : 2000000);
  const TaskSpec spec =
      MakeTask("math.primes", absl::StrCat(R"({"below":)", below, "}"), v1::TASK_CLASS_CPU);
  auto fail = [](const absl::Status& status) {
    return std::vector<Result>{Failed("cpu_scaling", "%", status),
                               Failed("cpu_scaling_speedup", "x", status)};
  };
  if (ctx.shape.cpu_workers == 0) {
    return fail(absl::FailedPreconditionError("the daemon reports no cpu workers"));
  }
  // Warm-up: one task per worker, so spawn or first-touch costs stay out of both runs.
  absl::StatusOr<std::vector<Task>> warm = SubmitAndWaitAll(
      ctx.client, std::vector<TaskSpec>(ctx.shape.cpu_workers,
                                        MakeTask("math.primes", R"({"below":1000})",
                                                 v1::TASK_CLASS_CPU)));
  if (!warm.ok()) return fail(warm.status());

  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kScalingTasks; ++i) {
    absl::StatusOr<Task> task = ctx.client.Run(spec, kWaitTimeout);
    absl::Status status = task.ok() ? AllSucceeded({*task}) : task.status();
    if (!status.ok()) return fail(status);
  }
  const double t_seq = Since(start);
  start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<Task>> par =
      SubmitAndWaitAll(ctx.client, std::vector<TaskSpec>(kScalingTasks, spec));
  if (!par.ok()) return fail(par.status());
  const double t_par = Since(start);

  // The ideal speedup: one task per process, as many processes as run at once, no more
  // than there are cores to run them or tasks to run.
  const int ideal = std::min({ctx.shape.cores, ctx.shape.cpu_workers, kScalingTasks});
  const double speedup = t_seq / t_par;
  const std::string notes = absl::StrFormat(
      "%d x math.primes below %d: one at a time %.2f s, all at once %.2f s; ideal "
      "min(%d cores, %d cpu workers, %d tasks) = %d",
      kScalingTasks, below, t_seq, t_par, ctx.shape.cores, ctx.shape.cpu_workers,
      kScalingTasks, ideal);
  return {Measured("cpu_scaling", 100 * speedup / ideal, "%", notes),
          Measured("cpu_scaling_speedup", speedup, "x", notes)};
}

std::vector<Result> Sleeps(Context& ctx, int n) {
  const std::string name = absl::StrCat("sleep_", n);
  const std::vector<TaskSpec> specs(n, MakeTask("sys.sleep", R"({"ms":1000})"));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<Task>> tasks = SubmitAndWaitAll(ctx.client, specs);
  const double wall = Since(start);
  if (!tasks.ok()) return {Failed(name, "s", tasks.status())};
  return {Measured(name, wall, "s",
                   absl::StrFormat("%d concurrent sys.sleep 1000 ms, submitted x%d; ideal "
                                   "1.00 s", n, kChunk))};
}

struct Scenario {
  std::string name;
  bool in_quick;
  std::function<std::vector<Result>(Context&)> run;
};

std::vector<Scenario> AllScenarios() {
  return {
      {"noop_throughput", true, NoopThroughput},
      {"noop_latency", true, NoopLatency},
      {"cpu_scaling", true, CpuScaling},
      {"sleep_1000", true, [](Context& ctx) { return Sleeps(ctx, 1000); }},
      {"sleep_10000", false, [](Context& ctx) { return Sleeps(ctx, 10000); }},
  };
}

// ---- output -------------------------------------------------------------------------

std::string FormatValue(double value, const std::string& unit) {
  if (unit == "x" || unit == "s") return absl::StrFormat("%.2f", value);
  if (unit == "%") return absl::StrFormat("%.1f", value);
  return absl::StrFormat("%.0f", value);
}

void Print(const Result& result, bool json) {
  if (json) {
    nlohmann::ordered_json line = {{"scenario", result.scenario},
                           {"value", nullptr},
                           {"unit", result.unit},
                           {"notes", result.notes},
                           {"target", nullptr},
                           {"met", nullptr}};
    if (result.value) line["value"] = *result.value;
    if (!result.error.empty()) line["error"] = result.error;
    std::cout << line.dump() << std::endl;
    return;
  }
  const std::string figure = result.value ? FormatValue(*result.value, result.unit) : "-";
  const std::string notes = result.error.empty() ? result.notes : "ERROR " + result.error;
  std::cout << absl::StrFormat("%-20s %12s %-8s %s", result.scenario, figure, result.unit,
                               notes)
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
    StopRunningDaemon();
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
        daemon ? "own" : "running", shape->daemon_pid, (*client)->target(),
        shape->cpu_workers, shape->io_workers,
        shape->io_workers > 0 ? shape->io_threads / shape->io_workers : 0, shape->cores,
        LoadAverage(), options.quick ? "; quick" : "");
    if (!options.json) {
      std::cout << absl::StrFormat("%-20s %12s %-8s %s\n", "scenario", "figure", "unit",
                                   "notes")
                << std::string(80, '-') << "\n";
    }
    Context ctx{**client, *shape, options};
    for (const Scenario& scenario : AllScenarios()) {
      const bool named = std::find(options.scenarios.begin(), options.scenarios.end(),
                                   scenario.name) != options.scenarios.end();
      if (options.scenarios.empty() ? (options.quick && !scenario.in_quick) : !named) {
        continue;
      }
      for (const Result& result : scenario.run(ctx)) {
        if (!result.error.empty()) exit_code = 1;
        Print(result, options.json);
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
  app.add_flag("--quick", options.quick, "small sizes; skips sleep_10000 unless named");
  app.add_flag("--json", options.json,
               "one JSON object per line: scenario, value, unit, notes, target, met");
  app.add_option("--scenario", options.scenarios, "run only these (repeatable)")
      ->check(CLI::IsMember(names))
      ->allow_extra_args(false);
  app.add_option("--primes-below", options.primes_below,
                 "math.primes size for cpu_scaling (default 2000000, quick 300000)")
      ->check(CLI::Range(int64_t{1000}, int64_t{1000000000}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a success, any other a usage error
  }

  if (!options.socket_path.empty() &&
      (cpu_workers || io_workers || io_threads || !daemon_args.empty() ||
       !options.daemon.binary.empty())) {
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
  options.daemon.args.insert(options.daemon.args.end(), daemon_args.begin(),
                             daemon_args.end());

  signal(SIGPIPE, SIG_IGN);
  taskrt::bench::HandleSignalsOnThread();
  return taskrt::bench::RunBench(options);
}
