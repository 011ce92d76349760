// taskrtd: parses options into DaemonOptions and runs the daemon (daemon/daemon.h).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/frame.h"
#include "common/status_macros.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/worker_process.h"

namespace taskrt::daemon {
namespace {

// The task manager's part of the options (named by the field, not by its type).
using TaskOptions = decltype(DaemonOptions::tasks);

// Options whose text CLI11 keeps and FinishOptions turns into DaemonOptions fields.
struct RawOptions {
  std::string default_class = "cpu";
  std::string default_timeout = "0";
  std::string socket_mode = "0600";
  std::string durability = "full";
  std::string drain_timeout = "30s";
  std::string retain_for = "7d";
  std::string idle_timeout = "10m";
  std::string stuck_grace = "10s";
  bool quiet = false;
  CLI::Option* python_opt = nullptr;  // --python: was it given?
};

// --socket ... --idle-timeout: where the daemon listens and who may connect.
void AddConnectionOptions(CLI::App& app, DaemonOptions& options, RawOptions& raw) {
  app.add_option("--socket", options.socket_path,
                 "Unix socket to serve on (default: see above). Its directory is created "
                 "with mode 0700; a second daemon on the same path refuses to start");
  app.add_option("--socket-mode", raw.socket_mode,
                 "Permission bits of the socket (octal). Every caller is identified by its "
                 "uid, so 0666 shares the daemon safely: each sees only its own tasks")
      ->default_str("0600");
  app.add_option("--listen", options.listen,
                 "Also serve on HOST:PORT over TCP (repeatable). Every TCP call needs a token "
                 "(--token-file); an address other than loopback also needs --tls-cert/--tls-key");
  app.add_option("--http", options.http,
                 "Also serve HTTP on HOST:PORT (off by default): /metrics in the Prometheus "
                 "text format and the dashboard at /. Callers need a token like TCP callers; "
                 "an address other than loopback also needs --tls-cert/--tls-key");
  app.add_option("--health-listen", options.health_listen,
                 "Also serve the gRPC health service alone on HOST:PORT, without TLS or token "
                 "(for Kubernetes' gRPC probes; it tells only SERVING, or NOT_SERVING while "
                 "draining). Off by default");
  app.add_option(
      "--token-file", options.token_file,
      "Tokens of TCP and HTTP callers, one per line: TOKEN [OWNER] (OWNER uid:N acts as that "
      "user, a name as token:NAME; a token alone is the daemon's own uid). The "
      "file must be mode 0600 (default: <state-dir>/token, created at first start)");
  app.add_option("--tls-cert", options.tls_cert_file,
                 "PEM certificate chain for TCP listeners and --http");
  app.add_option("--tls-key", options.tls_key_file, "PEM private key for --tls-cert");
  app.add_option("--tls-client-ca", options.tls_client_ca_file,
                 "PEM CA: TCP clients must present a certificate it signed (mutual TLS)");
  app.add_option("--admin-group", options.access.admin_group,
                 "Members of this group (and root) see and manage every task, see per-owner "
                 "stats and may run commands (default: root only)");
  app.add_option("--allow-exec", options.access.allow_exec,
                 "Who else may run sys.exec, io.read_file and hash.sha256 (which act with "
                 "the daemon's rights): uid:N, user:NAME, gid:N, group:NAME, token:NAME or all "
                 "(repeatable; the daemon's own uid and admins always may)");
  app.add_option("--max-connections", options.connections.max_connections,
                 "Open connections per listener; more are closed at once")
      ->default_val(4096)
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-connections-per-uid", options.connections.max_connections_per_uid,
                 "Open unix-socket connections of one uid")
      ->default_val(256)
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--idle-timeout", raw.idle_timeout,
                 "Close a connection that made no call for this long (0 = never)")
      ->default_str("10m");
}

// --max-queued-per-owner ... --watch-backlog-bytes: per-owner and watch limits.
void AddOwnerLimitOptions(CLI::App& app, DaemonOptions& options) {
  TaskOptions& t = options.tasks;
  app.add_option("--max-queued-per-owner", t.max_queued_per_owner,
                 "Unfinished tasks of one owner; beyond, that owner's submits fail with "
                 "RESOURCE_EXHAUSTED")
      ->default_val(250000);
  app.add_option("--max-watchers", t.max_watchers, "Watch calls open at once")->default_val(256);
  app.add_option("--max-watchers-per-owner", t.max_watchers_per_owner,
                 "Watch calls open at once by one owner")
      ->default_val(16);
  app.add_option("--watch-backlog-bytes", options.watch_backlog_bytes,
                 "A Watch whose client lags this many bytes of events behind is ended")
      ->default_val(8u << 20);
}

// --cpu-workers ... --worker-path: the native worker pools and what they load.
void AddPoolOptions(CLI::App& app, TaskOptions& t) {
  app.add_option("--id-prefix", t.id_prefix,
                 "Task ids are PREFIX-N (default: 6 hex digits, new at each start). A stable "
                 "name, e.g. the host's or the pod's, makes every id name its daemon; 1 to 64 "
                 "letters, digits, '-', '_', '.'")
      ->type_name("PREFIX");
  app.add_option("--cpu-workers", t.cpu_workers,
                 "Processes in the cpu pool, each running one task at a time "
                 "(default: number of cores)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--io-workers", t.io_workers, "Processes in the io pool")
      ->default_val(1)
      ->check(CLI::Range(1, 256));
  app.add_option("--io-threads", t.io_threads, "Threads per io worker for synchronous I/O handlers")
      ->default_val(4)
      ->check(CLI::Range(1, 4096));
  app.add_option("--io-max-inflight", t.io_max_inflight,
                 "Async tasks (sleeps, commands) in flight per io worker")
      ->default_val(100000)
      ->check(CLI::Range(1, 10000000));
  app.add_option("--cpu-prefetch", t.cpu_prefetch,
                 "Short tasks (runs under 2 ms on average) a busy cpu worker may hold "
                 "beyond the one it runs, so that it goes from one to the next without a "
                 "round trip to the daemon (0 = one task at a time, always)")
      ->default_val(64)
      ->check(CLI::Range(0, 1024));
  app.add_option("--plugin", t.plugins,
                 "Handler plugin (.so) to load into every worker (repeatable)");
  app.add_option("--worker-path", t.worker_path,
                 "The taskrt-worker binary (default: next to taskrtd, else ../libexec/taskrt/ "
                 "from it, where cmake --install puts it)");
}

// --python ... --python-path: the Python worker pools.
void AddPythonOptions(CLI::App& app, TaskOptions& t, RawOptions& raw) {
  // Python pools: on by default when the interpreter is there; optional unless asked for.
  t.python = "/usr/bin/python3";
  t.python_cpu_workers = t.cpu_workers;
  raw.python_opt =
      app.add_option("--python", t.python,
                     "Interpreter of the Python workers (python-cpu and python-io pools; e.g. "
                     "a venv's bin/python). Default /usr/bin/python3, when present and able "
                     "to import taskrt (else Python is off, logged); '' = no Python workers")
          ->default_str("/usr/bin/python3");
  app.add_option("--python-cpu-workers", t.python_cpu_workers,
                 "Processes in the python-cpu pool, each running one Python task at a time "
                 "(default: number of cores)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--python-io-workers", t.python_io_workers,
                 "Processes in the python-io pool (threads plus an asyncio loop each)")
      ->default_val(1)
      ->check(CLI::Range(1, 256));
  app.add_option("--python-io-threads", t.python_io_threads,
                 "Threads per python-io worker for synchronous Python functions")
      ->default_val(256)
      ->check(CLI::Range(1, 4096));
  app.add_option("--python-module", t.python_modules,
                 "Python module to import in every Python worker; its @taskrt.task "
                 "functions become handlers (repeatable)");
  app.add_option("--python-path", t.python_path,
                 "Directory holding the taskrt Python package, put first on the Python "
                 "workers' PYTHONPATH (default: the build tree's python/ next to taskrtd, "
                 "else the interpreter's own path)");
}

// --default-timeout ... --learn-min-samples: task limits and the classifier.
void AddTaskOptions(CLI::App& app, TaskOptions& t, RawOptions& raw) {
  app.add_option("--default-timeout", raw.default_timeout,
                 "Run-time limit for tasks that set none, e.g. 30s, 5m (0 = none)")
      ->default_str("0");
  app.add_option("--max-input-bytes", t.max_input_bytes,
                 "Largest task input accepted; a request over this plus 4 MiB is refused "
                 "before it is read whole")
      ->default_val(16u << 20);
  app.add_option("--max-output-bytes", t.max_output_bytes,
                 "Largest result of one task: sys.exec keeps at most this much of each of "
                 "stdout and stderr (and marks the rest as truncated); any other result "
                 "larger than this fails its task alone with output-too-large (default: 16 MiB)")
      ->default_val(taskrt::internal::kDefaultMaxOutputBytes)
      ->check(CLI::Range(size_t{1024}, taskrt::internal::kMaxOutputBytesLimit));
  app.add_option("--max-retained", t.max_retained,
                 "Finished tasks kept for status/wait/list (oldest evicted first)")
      ->default_val(100000);
  app.add_option("--default-class", raw.default_class,
                 "Class of tasks with no declaration, hint or learned history")
      ->check(CLI::IsMember({"cpu", "io"}))
      ->default_str("cpu");
  app.add_option("--cpu-threshold", t.classifier.cpu_threshold,
                 "Learned cpu/wall ratio at or above which a handler counts as CPU-bound")
      ->default_val(0.5)
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--learn-min-samples", t.classifier.min_samples,
                 "Runs of a handler needed before its learned class is used")
      ->default_val(3);
}

// --state-dir ... --quiet: the journal, retention, worker recycling and logging.
void AddStateOptions(CLI::App& app, DaemonOptions& options, RawOptions& raw) {
  TaskOptions& t = options.tasks;
  app.add_option("--state-dir", options.state_dir,
                 "Directory of the task journal (default: $XDG_STATE_HOME/taskrt or "
                 "~/.local/state/taskrt with the default socket, else <socket>.state)");
  app.add_option("--durability", raw.durability,
                 "full: a submit is answered once the task is fsync'd to the journal "
                 "(survives power loss); process: written to the OS (survives a daemon "
                 "crash); none: memory only, fastest")
      ->check(CLI::IsMember({"full", "process", "none"}))
      ->default_str("full");
  app.add_option("--max-queued", t.max_queued,
                 "Unfinished tasks accepted at once; beyond, submit fails with "
                 "RESOURCE_EXHAUSTED")
      ->default_val(1000000);
  app.add_option("--retain-for", raw.retain_for,
                 "How long finished tasks are kept (also bounded by --max-retained)")
      ->default_str("7d");
  app.add_option("--drain-timeout", raw.drain_timeout,
                 "On SIGTERM/SIGINT, how long running tasks may finish before the daemon "
                 "stops them (they are recovered at the next start)")
      ->default_str("30s");
  app.add_option("--worker-max-tasks", t.worker_max_tasks,
                 "Replace a worker after it ran this many tasks (0 = never)")
      ->default_val(0);
  app.add_option("--worker-max-rss", t.worker_max_rss_kb,
                 "Replace a worker once its peak RSS exceeds this many KiB (0 = never)")
      ->default_val(0);
  app.add_option("--cpu-memory-limit", t.cpu_memory_limit_bytes,
                 "Address-space limit of each cpu worker in bytes (RLIMIT_AS; 0 = none); a "
                 "task that exceeds it fails with memory-limit")
      ->default_val(0);
  app.add_option("--stuck-grace", raw.stuck_grace,
                 "An io task still running this long after it was cancelled or timed out "
                 "gets its io worker recycled (its other tasks fail or are retried)")
      ->default_str("10s");
  app.add_flag("--quiet", raw.quiet, "Do not log start-up and shutdown");
}

// Every duration option, parsed in one place: a bad one names itself.
absl::Status ParseDurations(const RawOptions& raw, DaemonOptions& options) {
  TaskOptions& t = options.tasks;
  absl::Duration timeout, drain, retain, stuck;
  const std::pair<const char*, std::pair<const std::string*, absl::Duration*>> durations[] = {
      {"--default-timeout", {&raw.default_timeout, &timeout}},
      {"--drain-timeout", {&raw.drain_timeout, &drain}},
      {"--retain-for", {&raw.retain_for, &retain}},
      {"--stuck-grace", {&raw.stuck_grace, &stuck}},
      {"--idle-timeout", {&raw.idle_timeout, &options.idle_timeout}},
  };
  for (const auto& [flag, text_and_out] : durations) {
    auto parsed = internal::ParseDurationFlag(*text_and_out.first);
    if (!parsed.ok())
      return absl::InvalidArgumentError(absl::StrCat(flag, ": ", parsed.status().message()));
    *text_and_out.second = *parsed;
  }
  t.default_timeout_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(timeout));
  options.drain_timeout = drain;
  t.stuck_grace_ms = absl::ToInt64Milliseconds(stuck);
  t.retain_for_ms = absl::ToInt64Milliseconds(retain);
  return absl::OkStatus();
}

// Makes every --plugin path absolute against the working directory (dlopen would look
// a bare "libmine.so" up on the library search path, not here) and checks that it is
// there, so that a missing plugin is named before any worker starts.
absl::Status ResolvePluginPaths(std::vector<std::string>& plugins) {
  for (std::string& plugin : plugins) {
    std::error_code ec;
    const std::filesystem::path resolved = std::filesystem::absolute(plugin, ec).lexically_normal();
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat("--plugin ", plugin, ": ", ec.message()));
    }
    if (!std::filesystem::is_regular_file(resolved, ec)) {
      return absl::NotFoundError(absl::StrCat(
          "--plugin ", plugin, ": ", resolved.string(), " is not a file (",
          ec ? ec.message() : std::string("no such file"),
          "); a relative path is taken from the working directory: pass the path of the .so"));
    }
    plugin = resolved.string();
  }
  return absl::OkStatus();
}

// Turns what CLI11 parsed into the final options: durations, the socket mode, the
// Python and plugin paths and the worker binary. Errors name the option.
absl::Status FinishOptions(const RawOptions& raw, DaemonOptions& options) {
  TaskOptions& t = options.tasks;
  options.verbose = !raw.quiet;
  t.python_required = raw.python_opt->count() > 0 && !t.python.empty();
  if (t.python_path.empty()) t.python_path = DefaultPythonPath();
  if (raw.python_opt->count() == 0 && ::access(t.python.c_str(), X_OK) != 0) {
    t.python.clear();  // no Debian python3 here: no Python pools, and nothing to log
  }
  t.classifier.default_class = raw.default_class == "io" ? v1::TASK_CLASS_IO : v1::TASK_CLASS_CPU;
  RETURN_IF_ERROR(ParseDurations(raw, options));
  options.durability = *ParseDurability(raw.durability);
  try {
    options.socket_mode = static_cast<unsigned>(std::stoul(raw.socket_mode, nullptr, 8)) & 0777;
  } catch (...) {
    return absl::InvalidArgumentError(
        absl::StrCat("--socket-mode ", raw.socket_mode, " is not an octal mode like 0600"));
  }
  RETURN_IF_ERROR(ResolvePluginPaths(t.plugins));
  if (t.worker_path.empty()) {
    ASSIGN_OR_RETURN(t.worker_path, FindWorkerBinary());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace taskrt::daemon

int main(int argc, char** argv) {
  namespace d = taskrt::daemon;
  d::DaemonOptions options;
  options.tasks.cpu_workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  d::RawOptions raw;
  CLI::App app{
      "taskrtd: the taskrt daemon. Runs submitted tasks in worker processes: CPU-bound\n"
      "tasks in the cpu pool (one process per task, parallel up to the core count),\n"
      "I/O-bound tasks in the io pool (threads and an async loop, thousands at once),\n"
      "and reports every scheduling decision with its reason.\n\n"
      "Default socket: " +
      std::string(taskrt::internal::kDefaultSocketText) +
      "\n(the CLI and SDK look in the same places).\n"
      "Stop with SIGTERM or SIGINT."};
  app.get_formatter()->column_width(34);
  app.set_version_flag("--version",
                       "taskrtd " TASKRT_VERSION " (allocator: " TASKRT_MALLOC_NAME ")");
  d::AddConnectionOptions(app, options, raw);
  d::AddOwnerLimitOptions(app, options);
  d::AddPoolOptions(app, options.tasks);
  d::AddPythonOptions(app, options.tasks, raw);
  d::AddTaskOptions(app, options.tasks, raw);
  d::AddStateOptions(app, options, raw);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help, the version, or the error
    return rc == 0 ? 0 : 2;      // usage errors exit 2, like the taskrt CLI
  }
  if (absl::Status s = d::FinishOptions(raw, options); !s.ok()) {
    std::fprintf(stderr, "taskrtd: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  return d::RunDaemon(std::move(options));
}
