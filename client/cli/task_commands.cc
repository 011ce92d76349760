// Subcommands about existing tasks: wait, status, cancel, list, watch, explain.
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "common/util.h"

namespace taskrt::cli {
namespace {

constexpr v1::TaskState kAllStates[] = {
    v1::TASK_STATE_QUEUED, v1::TASK_STATE_RUNNING,   v1::TASK_STATE_SUCCEEDED,
    v1::TASK_STATE_FAILED, v1::TASK_STATE_CANCELLED, v1::TASK_STATE_TIMED_OUT,
};

absl::StatusOr<v1::TaskState> ParseState(const std::string& text) {
  std::vector<std::string> names;
  for (v1::TaskState s : kAllStates) {
    if (StateName(s) == text) return s;
    names.push_back(StateName(s));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid state '", text, "': use one of ", absl::StrJoin(names, ", ")));
}

// --- wait -----------------------------------------------------------------------------

struct WaitOptions {
  std::vector<std::string> ids;
  std::string timeout;
};

int RunWait(const WaitOptions& opts, const CliContext& ctx) {
  absl::StatusOr<absl::Duration> timeout =
      ParseDuration("--timeout", opts.timeout, absl::InfiniteDuration());
  if (!timeout.ok()) return Fail(timeout.status());
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<std::vector<v1::Task>> tasks = (*client)->WaitAll(opts.ids, *timeout);
  if (absl::IsDeadlineExceeded(tasks.status())) {
    PrintError(absl::StrCat("gave up after ", absl::FormatDuration(*timeout), ": ",
                            tasks.status().message()));
    return kExitTimeout;
  }
  if (!tasks.ok()) return Fail(tasks.status());
  PrintTasks(ctx.global, *tasks);
  return ExitCodeForTasks(*tasks);
}

// --- status ---------------------------------------------------------------------------

struct IdsOptions {
  std::vector<std::string> ids;
};

int RunStatus(const IdsOptions& opts, const CliContext& ctx) {
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  std::vector<v1::Task> tasks;
  for (const std::string& id : opts.ids) {
    absl::StatusOr<v1::Task> task = (*client)->Get(id);
    if (!task.ok()) return Fail(task.status());
    tasks.push_back(*std::move(task));
  }
  PrintTasks(ctx.global, tasks);
  return ExitCodeForFinishedTasks(tasks);
}

// --- cancel ---------------------------------------------------------------------------

int RunCancel(const IdsOptions& opts, const CliContext& ctx) {
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<std::vector<v1::Task>> tasks = (*client)->Cancel(opts.ids);
  if (!tasks.ok()) return Fail(tasks.status());
  PrintTasks(ctx.global, *tasks);
  // The daemon cancels every queued or running task at once; one in another state
  // afterwards had already finished (succeeded, failed, timed out): it was not cancelled.
  for (const v1::Task& task : *tasks) {
    if (task.state() != v1::TASK_STATE_CANCELLED) return kExitTaskFailed;
  }
  return kExitOk;
}

// --- list -----------------------------------------------------------------------------

struct ListOptions {
  uint32_t limit = 0;
  std::vector<std::string> states;
  std::string handler;
  std::vector<std::string> labels;
};

int RunList(const ListOptions& opts, const CliContext& ctx) {
  v1::ListRequest request;
  request.set_limit(opts.limit);
  for (const std::string& label : opts.labels) {
    absl::StatusOr<std::pair<std::string, std::string>> kv = ParseKeyValue("--label", label);
    if (!kv.ok()) return Fail(kv.status());
    (*request.mutable_labels())[kv->first] = kv->second;
  }
  request.set_handler(opts.handler);
  for (const std::string& name : opts.states) {
    absl::StatusOr<v1::TaskState> state = ParseState(name);
    if (!state.ok()) return Fail(state.status());
    request.add_states(*state);
  }
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<std::vector<v1::Task>> tasks = (*client)->List(request);
  if (!tasks.ok()) return Fail(tasks.status());
  if (tasks->empty() && !opts.handler.empty()) {
    // Nothing of a handler the daemon does not have is a typo, not an empty list (tasks
    // of a handler since removed are still listed).
    absl::StatusOr<std::vector<v1::HandlerInfo>> handlers = (*client)->ListHandlers();
    if (!handlers.ok()) return Fail(handlers.status());
    if (std::none_of(handlers->begin(), handlers->end(),
                     [&](const v1::HandlerInfo& h) { return h.name() == opts.handler; })) {
      return Fail(absl::NotFoundError(
          absl::StrCat("no handler named '", opts.handler, "' (`taskrt handlers` lists them)")));
    }
  }
  PrintTasks(ctx.global, *tasks);
  return kExitOk;
}

// --- watch ----------------------------------------------------------------------------

struct WatchOptions {
  std::vector<std::string> ids;
  std::string timeout;
};

// "14:03:07.123" in local time.
std::string FormatEventTime(int64_t unix_us) {
  return absl::FormatTime("%H:%M:%E3S", absl::FromUnixMicros(unix_us), absl::LocalTimeZone());
}

// One aligned line per event; columns are fixed-width because the stream is unbounded.
constexpr char kWatchFormat[] = "%-12s  %-14s  %-18s  %-9s  %-8s  %-5s  %-15s  %s";

// "succeeded", or for a command "exit 0", "exit 3", "SIGKILL".
std::string EventState(const v1::TaskEvent& e) {
  const v1::Decision& d = e.decision();
  if (e.state() != v1::TASK_STATE_SUCCEEDED || !d.has_exit_code()) return StateName(e.state());
  if (d.exit_signal() != 0) return internal::SignalName(d.exit_signal());
  return absl::StrCat("exit ", d.exit_code());
}

void PrintWatchLine(const v1::TaskEvent& e) {
  const v1::Decision& d = e.decision();
  std::string line = absl::StrFormat(
      kWatchFormat, FormatEventTime(e.unix_us()), e.task_id(), e.handler(),
      Paint(absl::StrFormat("%-9s", EventState(e)), e.state()), ExecutorName(d.executor()),
      d.reason() == v1::REASON_UNSPECIFIED ? "-" : ClassName(d.resolved_class()),
      ReasonName(d.reason()), d.worker_pid() > 0 ? absl::StrCat(d.worker_pid()) : "-");
  if (e.has_error() && e.error().kind() != v1::FAILURE_KIND_UNSPECIFIED) {
    absl::StrAppend(&line, "  ", FailureName(e.error().kind()));
    if (!e.error().message().empty()) absl::StrAppend(&line, ": ", e.error().message());
  }
  std::cout << line << std::endl;
}

int RunWatch(const WatchOptions& opts, const CliContext& ctx) {
  absl::StatusOr<absl::Duration> timeout =
      ParseDuration("--timeout", opts.timeout, absl::InfiniteDuration());
  if (!timeout.ok()) return Fail(timeout.status());
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  v1::WatchRequest request;
  for (const std::string& id : opts.ids) request.add_task_ids(id);
  const bool json = ctx.global.json();
  if (!json) {
    std::cout << absl::StrFormat(kWatchFormat, "TIME", "ID", "HANDLER", "STATE", "EXECUTOR",
                                 "CLASS", "REASON", "PID")
              << std::endl;
  }
  uint64_t events = 0;  // delivered by the current connection
  auto on_event = [json, &events](const v1::TaskEvent& event) {
    ++events;
    if (json) {
      std::cout << ToJson(event, /*pretty=*/false) << std::endl;
    } else {
      PrintWatchLine(event);
    }
    return true;
  };
  // A watch that fell behind (RESOURCE_EXHAUSTED after events came; at the start it is
  // a limit such as --max-watchers-per-owner, reported) or lost its daemon (UNAVAILABLE, e.g.
  // a restart) reconnects, saying so on stderr: events in between are not shown. The
  // daemon must come back within kGiveUpAfter of the last good connection.
  constexpr absl::Duration kGiveUpAfter = absl::Seconds(60);
  const absl::Time end =
      *timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + *timeout;
  absl::Duration backoff = absl::Milliseconds(100);
  absl::Time last_connected = absl::Now();
  bool reported = false;   // this outage was reported (once, not at every attempt)
  bool connected = false;  // some attempt was connected: a daemon that never was is an error
  while (true) {
    const absl::Time started = absl::Now();
    absl::Status status =
        (*client)->Watch(request, on_event,
                         end == absl::InfiniteFuture() ? absl::InfiniteDuration() : end - started);
    if (status.ok()) return kExitOk;
    const bool behind = absl::IsResourceExhausted(status) && events > 0;
    if (events > 0 || absl::Now() - started > absl::Seconds(1)) {  // it was connected
      connected = true;
      last_connected = absl::Now();
      backoff = absl::Milliseconds(100);
      reported = false;
    }
    events = 0;
    if (!connected || (!behind && !absl::IsUnavailable(status))) return Fail(status);
    if (absl::Now() - last_connected > kGiveUpAfter) return Fail(status);
    if (absl::Now() + backoff >= end) return kExitOk;  // the --timeout passes meanwhile
    if (behind || !reported) {
      PrintError(absl::StrCat(
          "watch: ", status.message(), "; reconnecting",
          behind ? " (the events it missed are not shown)" : " (events until then are not shown)"));
      reported = true;
    }
    if (behind) continue;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
    // A new channel: the old one waits out gRPC's own reconnect backoff (seconds).
    if (absl::StatusOr<std::unique_ptr<Client>> fresh = ConnectClient(ctx.global); fresh.ok()) {
      client = std::move(fresh);
    }
  }
}

// --- explain --------------------------------------------------------------------------

struct ExplainOptions {
  std::string id;
};

int RunExplain(const ExplainOptions& opts, const CliContext& ctx) {
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<v1::Task> task = (*client)->Get(opts.id);
  if (!task.ok()) return Fail(task.status());
  if (ctx.global.json()) {
    PrintJson(*task);
  } else {
    std::cout << ExplainDecision(*task);
  }
  return ExitCodeForFinishedTasks({*task});
}

void AddIdsArgument(CLI::App* sub, std::vector<std::string>* ids, bool required) {
  CLI::Option* opt = sub->add_option("id", *ids, "Task id(s), as printed by `taskrt submit`");
  opt->type_name("ID...");
  if (required) opt->required();
}

}  // namespace

void AddWaitCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<WaitOptions>();
  CLI::App* sub = app.add_subcommand("wait", "Wait until tasks are final and show them");
  sub->footer(
      "Exit status: 0 if every task succeeded, 1 if any did not, 3 if --timeout passed "
      "first (the tasks keep running).");
  AddIdsArgument(sub, &opts->ids, /*required=*/true);
  sub->add_option("--timeout", opts->timeout,
                  "Give up after this long, e.g. 500ms, 30s, 2m (default: wait forever)")
      ->type_name("DURATION");
  sub->callback([opts, &ctx] { ctx.exit_code = RunWait(*opts, ctx); });
}

void AddStatusCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<IdsOptions>();
  CLI::App* sub = app.add_subcommand("status", "Show the current state of tasks (no waiting)");
  sub->footer(
      "Exit status: 1 if any task is final and did not succeed (failed, cancelled, timed "
      "out), else 0 (also while tasks are queued or running: use `taskrt wait` to wait).");
  AddIdsArgument(sub, &opts->ids, /*required=*/true);
  sub->callback([opts, &ctx] { ctx.exit_code = RunStatus(*opts, ctx); });
}

void AddCancelCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<IdsOptions>();
  CLI::App* sub = app.add_subcommand(
      "cancel", "Cancel queued or running tasks and show their state afterwards");
  sub->footer(
      "Exit status: 0 if every task is cancelled afterwards (also one cancelled before), 1 "
      "if any had already finished otherwise (succeeded, failed, timed out) and so was not "
      "cancelled. An unknown id changes nothing and exits 2.");
  AddIdsArgument(sub, &opts->ids, /*required=*/true);
  sub->callback([opts, &ctx] { ctx.exit_code = RunCancel(*opts, ctx); });
}

void AddListCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<ListOptions>();
  CLI::App* sub = app.add_subcommand("list", "List recent tasks, newest first");
  sub->add_option("--limit,-n", opts->limit, "At most this many tasks (default: 100)")
      ->type_name("N");
  sub->add_option("--state", opts->states,
                  "Only tasks in this state (repeatable): queued, running, succeeded, "
                  "failed, cancelled, timed-out")
      ->type_name("STATE")
      ->allow_extra_args(false);
  sub->add_option("--handler", opts->handler, "Only tasks of this handler")->type_name("HANDLER");
  sub->add_option("--label", opts->labels,
                  "Only tasks with this label (KEY=VALUE, as given to submit --label; repeatable: "
                  "all must match)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  sub->callback([opts, &ctx] { ctx.exit_code = RunList(*opts, ctx); });
}

void AddWatchCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<WatchOptions>();
  CLI::App* sub = app.add_subcommand(
      "watch", "Stream task events (state changes with their decision) as they happen");
  sub->footer(
      "One line per event: time, id, handler, state, executor, class, reason, worker pid "
      "(and the error of a failed task). With -o json, one TaskEvent object per line. "
      "Runs until interrupted or --timeout passes.");
  AddIdsArgument(sub, &opts->ids, /*required=*/false);
  sub->add_option("--timeout", opts->timeout,
                  "Stop after this long, e.g. 30s, 5m (default: until interrupted)")
      ->type_name("DURATION");
  sub->callback([opts, &ctx] { ctx.exit_code = RunWatch(*opts, ctx); });
}

void AddExplainCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<ExplainOptions>();
  CLI::App* sub = app.add_subcommand(
      "explain", "Say where a task ran and why: class, executor, worker, timings, hints");
  sub->footer(
      "A hint line appears when one run of 10 ms or more contradicts a class the client "
      "declared or the handler hinted: IO with cpu/wall >= 0.8 (or a Python run with "
      "cpu/(wall - GIL wait) >= 0.5 that waited >= 20% of its run for the GIL), or CPU with "
      "cpu/wall <= 0.2 (docs/ARCHITECTURE.md, mismatch hints).\n"
      "Exit status: 1 if the task is final and did not succeed (failed, cancelled, timed "
      "out), else 0 (also while it is queued or running).");
  sub->add_option("id", opts->id, "Task id")->type_name("ID")->required();
  sub->callback([opts, &ctx] { ctx.exit_code = RunExplain(*opts, ctx); });
}

}  // namespace taskrt::cli
