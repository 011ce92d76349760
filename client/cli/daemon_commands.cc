// Subcommands about the daemon itself: stats, handlers, dashboard.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "common/security.h"
#include "common/util.h"

namespace taskrt::cli {
namespace {

// The order in which `stats` lists task counts (the map on the wire is unordered).
constexpr v1::TaskState kStateOrder[] = {
    v1::TASK_STATE_QUEUED, v1::TASK_STATE_RUNNING,   v1::TASK_STATE_SUCCEEDED,
    v1::TASK_STATE_FAILED, v1::TASK_STATE_CANCELLED, v1::TASK_STATE_TIMED_OUT,
};

// "3d 4h", "2h 05m", "4m 07s", "12s".
std::string FormatUptime(int64_t us) {
  if (us < 60'000'000) return absl::StrCat(std::max<int64_t>(us, 0) / 1'000'000, "s");
  return FormatMicros(us);
}

// What the learned table means, as daemon/task_manager.cc and classifier.cc do it.
constexpr char kLearnedNote[] =
    "(Every finished run of every handler is learned from, hinted or not; SAMPLES counts the\n"
    "runs of 1 ms of wall time or more, as shorter ones say nothing about cpu/wall: a handler\n"
    "as short as sys.noop stays at 0. The class is decided after --learn-min-samples samples\n"
    "(cpu if CPU/WALL >= --cpu-threshold) and routes only tasks with no declared class and\n"
    "no handler hint.)\n";

void PrintStats(const v1::Stats& stats) {
  std::cout << "daemon pid " << stats.daemon_pid() << " (task ids " << stats.daemon() << "-N)";
  if (stats.started_unix_us() > 0) {
    std::cout << ", up " << FormatUptime(internal::NowUnixMicros() - stats.started_unix_us());
  }
  std::cout << ", " << stats.tasks_submitted() << " tasks submitted\n\n";

  // RESPAWNS: workers replaced after they died; RECYCLED: replaced on purpose
  // (--worker-max-tasks, --worker-max-rss).
  Table pools({"POOL", "WORKERS", "QUEUED", "RUNNING", "COMPLETED", "RESPAWNS", "RECYCLED"});
  for (const v1::PoolInfo& p : stats.pools()) {
    pools.AddRow({p.name(), absl::StrCat(p.workers()), absl::StrCat(p.queued()),
                  absl::StrCat(p.running()), absl::StrCat(p.completed()),
                  absl::StrCat(p.respawns()), absl::StrCat(p.recycled())});
  }
  pools.Print(std::cout);
  if (!stats.python().empty()) std::cout << "python: " << stats.python() << "\n";

  std::cout << "\n";
  std::vector<v1::WorkerInfo> workers(stats.workers().begin(), stats.workers().end());
  std::sort(workers.begin(), workers.end(), [](const auto& a, const auto& b) {
    if (a.pool() != b.pool()) return a.pool() < b.pool();
    return a.slot() < b.slot();
  });
  Table worker_table({"POOL", "SLOT", "PID", "STATE", "TASKS RUN", "RUNNING", "THREADS", "UP"});
  const int64_t now_us = internal::NowUnixMicros();
  for (const v1::WorkerInfo& w : workers) {
    worker_table.AddRow(
        {w.pool(), absl::StrCat(w.slot()), w.pid() > 0 ? absl::StrCat(w.pid()) : "-", w.state(),
         absl::StrCat(w.tasks_run()), absl::StrCat(w.running()),
         w.threads() > 0 ? absl::StrCat(w.threads()) : "-",
         w.started_unix_us() > 0 ? FormatUptime(now_us - static_cast<int64_t>(w.started_unix_us()))
                                 : "-"});
  }
  worker_table.Print(std::cout);

  std::cout << "\n";
  Table states({"STATE", "TASKS"});
  // The daemon keys the counts by enum name (TASK_STATE_SUCCEEDED); show short names
  // in a fixed order.
  for (v1::TaskState s : kStateOrder) {
    auto it = stats.tasks_by_state().find(v1::TaskState_Name(s));
    if (it != stats.tasks_by_state().end()) {
      states.AddRow({StateName(s), absl::StrCat(it->second)});
    }
  }
  // Names this client does not know yet (a newer daemon) are still shown.
  for (const auto& [name, count] : stats.tasks_by_state()) {
    bool known = false;
    for (v1::TaskState s : kStateOrder) known = known || v1::TaskState_Name(s) == name;
    if (!known) states.AddRow({name, absl::StrCat(count)});
  }
  if (states.empty()) {
    std::cout << "tasks: none yet\n";
  } else {
    states.Print(std::cout);
  }

  std::cout << "\n";
  if (stats.learned().empty()) {
    std::cout << "learned classes: none yet (the daemon learns from every finished run)\n";
    return;
  }
  // CPU/WALL of Python runs whose GIL wait was measured is cpu / (wall - GIL wait): "(GIL)".
  Table learned({"HANDLER", "FUNCTION", "CPU/WALL", "SAMPLES", "LEARNED CLASS"});
  for (const v1::LearnedClass& l : stats.learned()) {
    learned.AddRow(
        {l.handler(), l.function().empty() ? "-" : l.function(),
         absl::StrFormat("%.2f%s", l.cpu_ratio(), l.gil_corrected() ? " (GIL)" : ""),
         absl::StrCat(l.samples()),
         l.learned_class() == v1::TASK_CLASS_AUTO ? "undecided" : ClassName(l.learned_class())});
  }
  learned.Print(std::cout);
  std::cout << kLearnedNote;
}

// `taskrt stats` of a cluster target: each daemon's stats (-o json: an array of them),
// and each daemon that did not answer, on stderr (exit 4 then).
int PrintClusterStats(const CliContext& ctx, Client& client) {
  std::vector<Client::DaemonStats> all = client.ClusterStats();
  std::vector<const google::protobuf::Message*> answered;
  bool first = true;
  for (const Client::DaemonStats& d : all) {
    if (!d.stats.ok()) continue;
    if (ctx.global.json()) {
      answered.push_back(&*d.stats);
      continue;
    }
    std::cout << (first ? "" : "\n") << "== " << d.stats->daemon() << " (" << d.address << ")\n";
    first = false;
    PrintStats(*d.stats);
  }
  if (ctx.global.json()) PrintJsonArrayOf(answered);
  int code = kExitOk;
  for (const Client::DaemonStats& d : all) {
    if (d.stats.ok()) continue;
    PrintError(
        absl::StrCat("the daemon at ", d.address, " did not answer: ", d.stats.status().message()));
    code = kExitUnreachable;
  }
  return code;
}

int RunStats(const CliContext& ctx) {
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  if ((*client)->daemons() > 1) return PrintClusterStats(ctx, **client);
  absl::StatusOr<v1::Stats> stats = (*client)->GetStats();
  if (!stats.ok()) return Fail(stats.status());
  if (ctx.global.json()) {
    PrintJson(*stats);
  } else {
    PrintStats(*stats);
  }
  return kExitOk;
}

// The token for the dashboard's URL: --token-file, $TASKRT_TOKEN, else the daemon's own
// token file (readable by its owner only).
absl::StatusOr<std::string> DashboardToken(const CliContext& ctx, const v1::Stats& stats) {
  if (!ctx.global.token_file.empty()) return internal::ReadTokenFile(ctx.global.token_file);
  if (const char* env = std::getenv("TASKRT_TOKEN"); env != nullptr && *env != '\0') {
    return std::string(env);
  }
  return internal::ReadTokenFile(stats.token_file());
}

int RunDashboard(const CliContext& ctx) {
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<v1::Stats> stats = (*client)->GetStats();
  if (!stats.ok()) return Fail(stats.status());
  if (stats->http_url().empty()) {
    PrintError(absl::StrCat("the daemon (pid ", stats->daemon_pid(),
                            ") serves no dashboard: start taskrtd with --http 127.0.0.1:PORT"));
    return kExitUsage;
  }
  const std::string page = absl::StrCat(stats->http_url(), "/");
  absl::StatusOr<std::string> token = DashboardToken(ctx, *stats);
  if (ctx.global.json()) {
    std::cout << "{\"url\": \"" << page << (token.ok() ? "#token=" + *token : "")
              << "\", \"token_file\": \"" << stats->token_file() << "\"}\n";
    return kExitOk;
  }
  if (!token.ok()) {
    std::cout << page << "\n";
    PrintError(absl::StrCat("no token for the URL (", token.status().message(),
                            "): open it and paste a token of ", stats->token_file(),
                            ", or pass --token-file"));
    return kExitDenied;
  }
  // The token rides in the fragment, which browsers never send; the page moves it to
  // its session storage and out of the address bar.
  std::cout << page << "#token=" << *token << "\n";
  return kExitOk;
}

int RunHandlers(const CliContext& ctx) {
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<std::vector<v1::HandlerInfo>> handlers = (*client)->ListHandlers();
  if (!handlers.ok()) return Fail(handlers.status());
  std::sort(handlers->begin(), handlers->end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  if (ctx.global.json()) {
    PrintJsonArray(*handlers);
    return kExitOk;
  }
  Table table({"NAME", "HINT", "ASYNC", "RUNTIME", "SOURCE", "DESCRIPTION"});
  for (const v1::HandlerInfo& h : *handlers) {
    table.AddRow({h.name(), h.hint() == v1::TASK_CLASS_AUTO ? "-" : ClassName(h.hint()),
                  h.async() ? "yes" : "no", h.runtime().empty() ? "native" : h.runtime(),
                  h.source(), h.description()});
  }
  table.Print(std::cout);
  return kExitOk;
}

}  // namespace

void AddStatsCommand(CLI::App& app, CliContext& ctx) {
  CLI::App* sub = app.add_subcommand(
      "stats", "Show pools, workers, task counts and what the classifier has learned");
  sub->footer(std::string("Pools: RESPAWNS counts workers replaced after they died, RECYCLED ") +
              "those replaced on purpose (taskrtd --worker-max-tasks, --worker-max-rss).\n" +
              "Learned classes: " + kLearnedNote);
  sub->callback([&ctx] { ctx.exit_code = RunStats(ctx); });
}

void AddDashboardCommand(CLI::App& app, CliContext& ctx) {
  CLI::App* sub = app.add_subcommand(
      "dashboard", "Print the URL of the daemon's dashboard (taskrtd --http), with a token");
  sub->footer(
      "The URL carries a token of the daemon (--token-file, $TASKRT_TOKEN, else the daemon's\n"
      "token file, readable by its owner only) after '#', which the browser does not send;\n"
      "treat it like the token. Exit 2 when the daemon serves no dashboard, 6 when no\n"
      "token could be read (the URL is printed without one).");
  sub->callback([&ctx] { ctx.exit_code = RunDashboard(ctx); });
}

void AddHandlersCommand(CLI::App& app, CliContext& ctx) {
  CLI::App* sub = app.add_subcommand(
      "handlers", "List the registered handlers (built-in and plugins) and their hints");
  sub->callback([&ctx] { ctx.exit_code = RunHandlers(ctx); });
}

}  // namespace taskrt::cli
