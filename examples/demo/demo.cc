// taskrt-demo: the lesson taskrt is built on, measured on this machine.
//
//   taskrtd &            # default socket; or taskrtd --socket /tmp/t.sock &
//   taskrt-demo          # or taskrt-demo --socket /tmp/t.sock
//
// Three experiments against a running daemon, each run twice: once with the daemon's
// routing (class AUTO) and once forced onto the "wrong" pool.
//   a. CPU-bound math.primes tasks: cpu pool (processes) vs io pool (threads).
//   b. I/O-bound sys.sleep tasks: io pool (async loop) vs cpu pool (one per process).
//   c. Both together, plus file reads that need an io thread: does I/O wait behind
//      computation?
// Every figure printed is measured in this run (client wall clock, or the decision each
// result carries); nothing is a constant. Takes ~20 s with the daemon's defaults on 2
// cores. Exits 1 with a message if the daemon is unreachable or a task fails.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <set>
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
#include "bench/bench_util.h"
#include "taskrt/client.h"

namespace {

using taskrt::bench::LoadAverage;
using taskrt::bench::Percentile;
using taskrt::bench::Shape;
using taskrt::v1::Task;
using taskrt::v1::TaskClass;
using taskrt::v1::TaskSpec;

// Generous: no experiment below should take a tenth of it. Keeps a broken daemon from
// hanging the demo.
constexpr absl::Duration kWaitTimeout = absl::Seconds(120);
constexpr size_t kSubmitChunk = 1000;

struct DemoOptions {
  std::string socket_path;  // empty: DefaultSocketPath()
  int64_t primes_below = 3000000;
  int cpu_tasks = 0;      // K; 0: 2 x cpu workers, at least 4
  int sleeps = 200;       // experiment b
  int mixed_sleeps = 50;  // experiment c
  int mixed_reads = 50;   // experiment c: io.read_file runs on an io thread
  int sleep_ms = 100;
  double forced_cpu_budget_s = 8;  // cap for b's forced-cpu run
};

// A batch of finished tasks and the client-side wall time from first submit to the
// last result.
struct Batch {
  std::vector<Task> tasks;
  double wall_s = 0;
};

// The daemon's shape; an error unless it has both pools.
absl::StatusOr<Shape> ReadShape(taskrt::Client& client) {
  absl::StatusOr<Shape> read = taskrt::bench::ReadShape(client);
  if (!read.ok()) return read.status();
  const Shape& shape = *read;
  if (shape.cpu_workers == 0 || shape.io_workers == 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("the daemon reports %d cpu and %d io workers; the demo needs both pools "
                        "(start taskrtd with --cpu-workers and --io-workers of at least 1)",
                        shape.cpu_workers, shape.io_workers));
  }
  return shape;
}

std::vector<TaskSpec> Repeat(const std::string& handler, const std::string& input, TaskClass cls,
                             int n) {
  return std::vector<TaskSpec>(n, taskrt::MakeTask(handler, input, cls));
}

std::string PrimesInput(int64_t below) { return absl::StrCat(R"({"below":)", below, "}"); }
std::string SleepInput(int ms) { return absl::StrCat(R"({"ms":)", ms, "}"); }

// Submits `specs` (in chunks), waits for all of them, and fails unless all succeeded.
absl::StatusOr<Batch> RunBatch(taskrt::Client& client, const std::vector<TaskSpec>& specs) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> ids;
  ids.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); i += kSubmitChunk) {
    const std::vector<TaskSpec> chunk(specs.begin() + i,
                                      specs.begin() + std::min(specs.size(), i + kSubmitChunk));
    absl::StatusOr<std::vector<std::string>> chunk_ids = client.SubmitBatch(chunk);
    if (!chunk_ids.ok()) return chunk_ids.status();
    ids.insert(ids.end(), chunk_ids->begin(), chunk_ids->end());
  }
  absl::StatusOr<std::vector<Task>> tasks = client.WaitAll(ids, kWaitTimeout);
  if (!tasks.ok()) return tasks.status();
  Batch batch;
  batch.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const Task& task : *tasks) {
    if (task.state() != taskrt::v1::TASK_STATE_SUCCEEDED) {
      return absl::InternalError(absl::StrFormat(
          "task %s (%s) ended %s: %s\n%s", task.id(), task.spec().handler(),
          taskrt::StateName(task.state()), task.error().message(), taskrt::ExplainDecision(task)));
    }
  }
  batch.tasks = *std::move(tasks);
  return batch;
}

// Tasks [begin, end) of a batch.
std::vector<Task> Slice(const std::vector<Task>& tasks, size_t begin, size_t end) {
  return std::vector<Task>(tasks.begin() + begin, tasks.begin() + end);
}

// "process x4, 2 pids" / "async x200, 1 pid": what executed the tasks and in how many
// distinct worker processes.
std::string RanOn(const std::vector<Task>& tasks) {
  std::map<std::string, int> by_executor;
  std::set<int> pids;
  for (const Task& task : tasks) {
    ++by_executor[taskrt::ExecutorName(task.decision().executor())];
    pids.insert(task.decision().worker_pid());
  }
  std::vector<std::string> parts;
  for (const auto& [executor, count] : by_executor) {
    parts.push_back(absl::StrCat(executor, " x", count));
  }
  return absl::StrCat(absl::StrJoin(parts, " + "), ", ", pids.size(),
                      pids.size() == 1 ? " pid" : " pids");
}

double SumRunSeconds(const std::vector<Task>& tasks) {
  double sum = 0;
  for (const Task& task : tasks) sum += task.decision().run_time_us() / 1e6;
  return sum;
}

// Mean of cpu time / run time per task: ~1.0 when each task had a core to itself, lower
// when tasks were time-sliced on fewer cores than there were runnable tasks.
double MeanCpuShare(const std::vector<Task>& tasks) {
  double sum = 0;
  for (const Task& task : tasks) {
    const auto& d = task.decision();
    if (d.run_time_us() > 0) sum += static_cast<double>(d.cpu_time_us()) / d.run_time_us();
  }
  return tasks.empty() ? 0 : sum / tasks.size();
}

// Milliseconds from submission to finish, from the decision's timestamps.
std::vector<double> LatenciesMs(const std::vector<Task>& tasks) {
  std::vector<double> out;
  for (const Task& task : tasks) {
    out.push_back((task.decision().finished_unix_us() - task.decision().submitted_unix_us()) / 1e3);
  }
  return out;
}

std::string Seconds(double s) { return absl::StrFormat("%.2f s", s); }
std::string Millis(double ms) { return absl::StrFormat("%.0f ms", ms); }

// A plain-text table with left-aligned columns.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const {
    std::vector<size_t> width;
    for (const auto& row : rows_) {
      width.resize(std::max(width.size(), row.size()), 0);
      for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (size_t r = 0; r < rows_.size(); ++r) {
      std::string line = "  ";
      for (size_t i = 0; i < rows_[r].size(); ++i) {
        line += rows_[r][i];
        if (i + 1 < rows_[r].size()) line += std::string(width[i] - rows_[r][i].size() + 3, ' ');
      }
      out << line << "\n";
      if (r == 0) {
        size_t total = 0;
        for (size_t w : width) total += w + 3;
        out << "  " << std::string(total - 3, '-') << "\n";
      }
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

void Progress(const std::string& what) {
  std::cout.flush();  // keep the tables and the progress lines in order
  std::cerr << "  ... " << what << std::endl;
}

// What the demo keeps from each experiment for the closing explanation.
struct Findings {
  double cpu_process_speedup = 0;
  double cpu_thread_speedup = 0;
  double cpu_process_share = 0;
  double cpu_thread_share = 0;
  double io_async_overlap = 0;
  double io_process_overlap = 0;
  double mixed_routed_sleep_p99 = 0;
  double mixed_forced_sleep_p99 = 0;
  double mixed_routed_read_p99 = 0;
  double mixed_forced_read_p99 = 0;
  double mixed_routed_makespan = 0;
  double mixed_forced_makespan = 0;
  std::vector<Task> samples;  // explained at the end
};

absl::Status CpuBound(taskrt::Client& client, const Shape& shape, const DemoOptions& opt, int k,
                      Findings& findings) {
  const std::string input = PrimesInput(opt.primes_below);
  Progress(absl::StrFormat("a. 1 math.primes alone, then %d routed, then %d on io threads", k, k));
  absl::StatusOr<Batch> single =
      RunBatch(client, Repeat("math.primes", input, taskrt::v1::TASK_CLASS_AUTO, 1));
  if (!single.ok()) return single.status();
  absl::StatusOr<Batch> routed =
      RunBatch(client, Repeat("math.primes", input, taskrt::v1::TASK_CLASS_AUTO, k));
  if (!routed.ok()) return routed.status();
  absl::StatusOr<Batch> threads =
      RunBatch(client, Repeat("math.primes", input, taskrt::v1::TASK_CLASS_IO, k));
  if (!threads.ok()) return threads.status();

  const double sequential = k * single->wall_s;
  findings.cpu_process_speedup = sequential / routed->wall_s;
  findings.cpu_thread_speedup = sequential / threads->wall_s;
  findings.cpu_process_share = MeanCpuShare(routed->tasks);
  findings.cpu_thread_share = MeanCpuShare(threads->tasks);
  findings.samples.push_back(routed->tasks.front());
  findings.samples.push_back(threads->tasks.front());

  std::cout << absl::StrFormat(
      "\na. CPU-bound: %d x math.primes below %d (sequential estimate: %d x %.2f s = %.2f s)\n", k,
      opt.primes_below, k, single->wall_s, sequential);
  Table table({"run", "tasks", "wall", "speedup", "cpu/run per task", "ran on"});
  table.Add({"one task alone (baseline)", "1", Seconds(single->wall_s), "-",
             absl::StrFormat("%.2f", MeanCpuShare(single->tasks)), RanOn(single->tasks)});
  table.Add({"AUTO -> routed to cpu pool", absl::StrCat(k), Seconds(routed->wall_s),
             absl::StrFormat("%.2fx", findings.cpu_process_speedup),
             absl::StrFormat("%.2f", findings.cpu_process_share), RanOn(routed->tasks)});
  table.Add({"IO -> forced onto io threads", absl::StrCat(k), Seconds(threads->wall_s),
             absl::StrFormat("%.2fx", findings.cpu_thread_speedup),
             absl::StrFormat("%.2f", findings.cpu_thread_share), RanOn(threads->tasks)});
  table.Print(std::cout);
  std::cout << absl::StrFormat(
      "  parallel ceiling: min(%u cores, %d cpu workers) = %d processes; the io pool has "
      "%d threads\n",
      shape.cores, shape.cpu_workers, std::min(static_cast<int>(shape.cores), shape.cpu_workers),
      shape.io_threads);
  return absl::OkStatus();
}

absl::Status IoBound(taskrt::Client& client, const Shape& shape, const DemoOptions& opt,
                     Findings& findings) {
  const std::string input = SleepInput(opt.sleep_ms);
  // The cpu pool runs one task per process, so n sleeps take n / workers x sleep there:
  // cap n so that run stays within the budget.
  const int per_worker =
      std::max(1, static_cast<int>(opt.forced_cpu_budget_s * 1000 / std::max(1, opt.sleep_ms)));
  const int forced_n = std::min(opt.sleeps, per_worker * shape.cpu_workers);
  Progress(absl::StrFormat("b. %d sleeps routed, then %d forced onto the cpu pool", opt.sleeps,
                           forced_n));
  absl::StatusOr<Batch> routed =
      RunBatch(client, Repeat("sys.sleep", input, taskrt::v1::TASK_CLASS_AUTO, opt.sleeps));
  if (!routed.ok()) return routed.status();
  absl::StatusOr<Batch> forced =
      RunBatch(client, Repeat("sys.sleep", input, taskrt::v1::TASK_CLASS_CPU, forced_n));
  if (!forced.ok()) return forced.status();

  findings.io_async_overlap = SumRunSeconds(routed->tasks) / routed->wall_s;
  findings.io_process_overlap = SumRunSeconds(forced->tasks) / forced->wall_s;
  findings.samples.push_back(routed->tasks.front());

  std::cout << absl::StrFormat("\nb. I/O-bound: sys.sleep %d ms each\n", opt.sleep_ms);
  Table table({"run", "tasks", "wall", "tasks/s", "overlap (sum run / wall)", "ran on"});
  table.Add({"AUTO -> routed to io async loop", absl::StrCat(opt.sleeps), Seconds(routed->wall_s),
             absl::StrFormat("%.0f", opt.sleeps / routed->wall_s),
             absl::StrFormat("%.1fx", findings.io_async_overlap), RanOn(routed->tasks)});
  table.Add({"CPU -> forced onto cpu processes", absl::StrCat(forced_n), Seconds(forced->wall_s),
             absl::StrFormat("%.0f", forced_n / forced->wall_s),
             absl::StrFormat("%.1fx", findings.io_process_overlap), RanOn(forced->tasks)});
  table.Print(std::cout);
  if (forced_n < opt.sleeps) {
    std::cout << absl::StrFormat(
        "  forced row capped at %d sleeps: %d would take >= %.1f s on %d processes "
        "running one task each (compare tasks/s)\n",
        forced_n, opt.sleeps,
        static_cast<double>(opt.sleeps) * opt.sleep_ms / 1000 / shape.cpu_workers,
        shape.cpu_workers);
  }
  return absl::OkStatus();
}

// A small file for io.read_file tasks, removed when this goes out of scope. The workers
// run on this machine, so they read it at the same path.
class TempFile {
 public:
  static absl::StatusOr<std::unique_ptr<TempFile>> Create(size_t bytes) {
    std::string path = (std::filesystem::temp_directory_path() / "taskrt-demo-XXXXXX").string();
    const int fd = mkstemp(path.data());
    if (fd < 0) return absl::InternalError("mkstemp " + path + ": " + std::strerror(errno));
    const std::string data(bytes, 'x');
    const bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    close(fd);
    auto file = std::unique_ptr<TempFile>(new TempFile(path));
    if (!ok) return absl::InternalError("cannot write " + path);
    return file;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  const std::string path_;
};

// One group of tasks in a mixed batch: [begin, end) of the batch's tasks.
struct Group {
  std::string label;
  size_t begin;
  size_t end;
};

absl::Status Mixed(taskrt::Client& client, const DemoOptions& opt, int k, Findings& findings) {
  constexpr size_t kFileBytes = 64 << 10;
  absl::StatusOr<std::unique_ptr<TempFile>> file = TempFile::Create(kFileBytes);
  if (!file.ok()) return file.status();
  const std::string primes = PrimesInput(opt.primes_below);
  const std::string sleep = SleepInput(opt.sleep_ms);
  const std::string read = absl::StrCat(R"({"path":")", (*file)->path(), R"("})");
  Progress(absl::StrFormat(
      "c. %d math.primes + %d sleeps + %d file reads together, routed then all on io", k,
      opt.mixed_sleeps, opt.mixed_reads));

  // CPU tasks first, so that when everything goes to the io pool they take the threads
  // first, as they would when computation arrives just before I/O.
  auto specs_for = [&](TaskClass cls) {
    std::vector<TaskSpec> specs = Repeat("math.primes", primes, cls, k);
    for (const auto& more : {Repeat("sys.sleep", sleep, cls, opt.mixed_sleeps),
                             Repeat("io.read_file", read, cls, opt.mixed_reads)}) {
      specs.insert(specs.end(), more.begin(), more.end());
    }
    return specs;
  };
  absl::StatusOr<Batch> routed = RunBatch(client, specs_for(taskrt::v1::TASK_CLASS_AUTO));
  if (!routed.ok()) return routed.status();
  absl::StatusOr<Batch> forced = RunBatch(client, specs_for(taskrt::v1::TASK_CLASS_IO));
  if (!forced.ok()) return forced.status();

  const size_t sleeps_end = k + opt.mixed_sleeps;
  const std::vector<Group> groups = {
      {absl::StrFormat("%d x math.primes", k), 0, static_cast<size_t>(k)},
      {absl::StrFormat("%d x sys.sleep %d ms", opt.mixed_sleeps, opt.sleep_ms),
       static_cast<size_t>(k), sleeps_end},
      {absl::StrFormat("%d x io.read_file %d KiB", opt.mixed_reads, kFileBytes >> 10), sleeps_end,
       sleeps_end + opt.mixed_reads}};

  std::cout << "\nc. Mixed: all of these submitted together; latency = finished - submitted\n";
  Table table({"run", "tasks", "makespan", "latency p50", "p99", "ran on"});
  for (const auto& [title, batch] : {std::pair{"routed (AUTO)", &*routed},
                                     std::pair{"all forced onto io pool (IO)", &*forced}}) {
    for (size_t g = 0; g < groups.size(); ++g) {
      const std::vector<Task> tasks = Slice(batch->tasks, groups[g].begin, groups[g].end);
      const std::vector<double> ms = LatenciesMs(tasks);
      table.Add({g == 0 ? title : "", groups[g].label, g == 0 ? Seconds(batch->wall_s) : "",
                 Millis(Percentile(ms, 50)), Millis(Percentile(ms, 99)), RanOn(tasks)});
    }
  }
  table.Print(std::cout);

  auto p99 = [](const Batch& batch, const Group& group) {
    return Percentile(LatenciesMs(Slice(batch.tasks, group.begin, group.end)), 99);
  };
  findings.mixed_routed_sleep_p99 = p99(*routed, groups[1]);
  findings.mixed_forced_sleep_p99 = p99(*forced, groups[1]);
  findings.mixed_routed_read_p99 = p99(*routed, groups[2]);
  findings.mixed_forced_read_p99 = p99(*forced, groups[2]);
  findings.mixed_routed_makespan = routed->wall_s;
  findings.mixed_forced_makespan = forced->wall_s;
  return absl::OkStatus();
}

void Explain(const Shape& shape, const DemoOptions& opt, const Findings& f) {
  std::cout << "\nWhat this shows\n";
  // Below this, a run showed no parallelism at all: the cores were busy with other work.
  constexpr double kParallel = 1.3;
  if (f.cpu_process_speedup < kParallel && f.cpu_thread_speedup < kParallel) {
    std::cout << absl::StrFormat(
        "- This run measured no parallel speedup (processes %.2fx, threads %.2fx over one "
        "after another):\n  other work held the %u cores. Run the demo on an idle machine "
        "to see the CPU rows scale.\n",
        f.cpu_process_speedup, f.cpu_thread_speedup, shape.cores);
  } else {
    std::cout << absl::StrFormat(
        "- C++ has no GIL: forced onto io threads, the CPU tasks still ran %.2fx faster "
        "than one after another\n  (in processes: %.2fx). Threads compute in parallel "
        "too; the ceiling is the %u cores either way.\n",
        f.cpu_thread_speedup, f.cpu_process_speedup, shape.cores);
  }
  std::cout << absl::StrFormat(
      "- No oversubscription: while it ran, a CPU task got %.0f%% of a core in its process "
      "(%d processes for %u cores)\n  and %.0f%% on the %d io threads, where more tasks "
      "than cores were time-sliced and each took longer.\n",
      100 * f.cpu_process_share, shape.cpu_workers, shape.cores, 100 * f.cpu_thread_share,
      shape.io_threads);
  if (f.cpu_process_share < 0.9) {
    std::cout << "  (Under 100% in processes: something else on this machine used the "
                 "cores during the run.)\n";
  }
  std::cout << absl::StrFormat(
      "- Waiting is cheap on the async loop: %d sleeps overlapped %.0fx there, against "
      "%.1fx on the %d cpu processes.\n",
      opt.sleeps, f.io_async_overlap, f.io_process_overlap, shape.cpu_workers);
  // A read should take a few ms; "queued" means it waited for an io thread held by a CPU
  // task, visible as a p99 far above the routed one.
  const bool queued = f.mixed_forced_read_p99 > 2 * f.mixed_routed_read_p99 + 10;
  std::cout << absl::StrFormat(
      "- I/O is %s behind computation: file reads (they need an io thread) finished p99 "
      "%.0f ms after\n  submission with routing and %.0f ms when the CPU tasks held the io "
      "threads%s.\n  Sleeps hold no thread on the async loop: p99 %.0f ms vs %.0f ms.\n",
      queued ? "not queued" : "barely slowed", f.mixed_routed_read_p99, f.mixed_forced_read_p99,
      queued ? " (they waited for a thread)" : "", f.mixed_routed_sleep_p99,
      f.mixed_forced_sleep_p99);
  std::cout << "- Isolation: a CPU task in its own process can be killed at its timeout even if "
               "it never checks for\n  cancellation, and a crash or leak takes out one worker "
               "(replaced; the task is reported with its signal),\n  never the daemon or the "
               "tasks next to it on other threads.\n"
            << "So taskrt routes computing to processes and waiting to threads and the async "
               "loop, and every result says\nwhere it ran and why (`taskrt explain ID`).\n";
}

absl::Status RunDemo(const DemoOptions& opt) {
  taskrt::ClientOptions client_options;
  client_options.socket_path = opt.socket_path;
  absl::StatusOr<std::unique_ptr<taskrt::Client>> client = taskrt::Client::Connect(client_options);
  if (!client.ok()) return client.status();
  absl::StatusOr<Shape> shape = ReadShape(**client);
  if (!shape.ok()) return shape.status();
  const int k = opt.cpu_tasks > 0 ? opt.cpu_tasks : std::max(4, 2 * shape->cpu_workers);

  std::cout << absl::StrFormat(
      "taskrt demo: daemon pid %d at %s\n"
      "  cpu pool: %d processes, one task each    io pool: %d process(es), %d threads "
      "+ async loop    machine: %u cores\n",
      shape->daemon_pid, (*client)->target(), shape->cpu_workers, shape->io_workers,
      shape->io_threads, shape->cores);
  if (const double load = LoadAverage(); load > 0.5 * shape->cores) {
    std::cout << absl::StrFormat(
        "  note: load average %.2f on %u cores: other work is running, so the timings "
        "will be noisy\n",
        load, shape->cores);
  }

  // Warm-up (not reported): touch every worker once so that start-up costs stay out of
  // the measurements.
  absl::StatusOr<Batch> warm = RunBatch(
      **client,
      Repeat("math.primes", PrimesInput(1000), taskrt::v1::TASK_CLASS_CPU, 2 * shape->cpu_workers));
  if (!warm.ok()) return warm.status();
  warm = RunBatch(**client, Repeat("math.primes", PrimesInput(1000), taskrt::v1::TASK_CLASS_IO,
                                   shape->io_threads + 1));
  if (!warm.ok()) return warm.status();

  Findings findings;
  absl::Status status = CpuBound(**client, *shape, opt, k, findings);
  if (status.ok()) status = IoBound(**client, *shape, opt, findings);
  if (status.ok()) status = Mixed(**client, opt, k, findings);
  if (!status.ok()) return status;

  std::cout << "\nThe decision of a few of these tasks, as every result carries it:\n";
  for (const Task& task : findings.samples) {
    std::cout << "\n[" << task.spec().handler() << ", requested "
              << taskrt::ClassName(task.spec().requested_class()) << "]\n"
              << taskrt::ExplainDecision(task);
  }
  Explain(*shape, opt, findings);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  DemoOptions opt;
  CLI::App app{
      "taskrt-demo: processes for computing, threads and async for waiting, "
      "measured against a running taskrtd"};
  app.add_option("--socket", opt.socket_path,
                 "unix socket of the daemon (default: " + taskrt::DefaultSocketPath() + ")");
  app.add_option("--primes-below", opt.primes_below,
                 "size of each math.primes task (count primes below N)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1000}, int64_t{1000000000}));
  app.add_option("--cpu-tasks", opt.cpu_tasks,
                 "CPU tasks per run (default: 2 x cpu workers, at least 4)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--sleeps", opt.sleeps, "sleep tasks in experiment b")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--sleep-ms", opt.sleep_ms, "duration of each sleep task")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a success, any other a usage error
  }

  const absl::Status status = RunDemo(opt);
  if (!status.ok()) {
    std::cerr << "taskrt-demo: " << status << "\n";
    return 1;
  }
  return 0;
}
