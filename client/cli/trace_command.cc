// taskrt trace: the runs of recent tasks as a Chrome trace (the Trace Event Format's
// JSON object form), which Perfetto (ui.perfetto.dev) and chrome://tracing open. The
// same layout as the dashboard's task stream: a process per pool, a thread per worker
// slot, executor and lane (a run takes the first lane of its worker and executor that
// is free when it starts), a complete event ("X") per run.
#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "common/util.h"
#include "nlohmann/json.hpp"

namespace taskrt::cli {
namespace {

using json = nlohmann::json;

struct TraceOptions {
  std::string since = "10m";
  uint32_t limit = 10000;
  std::string out = "-";
};

int PoolPid(const std::string& pool) {
  static const std::map<std::string, int> kOrder = {
      {"cpu", 1}, {"io", 2}, {"python-cpu", 3}, {"python-io", 4}};
  auto it = kOrder.find(pool);
  return it == kOrder.end() ? 9 : it->second;
}

// The trace of `tasks` (those that ran and are final).
json BuildTrace(std::vector<v1::Task> tasks) {
  std::sort(tasks.begin(), tasks.end(), [](const v1::Task& a, const v1::Task& b) {
    return a.decision().started_unix_us() < b.decision().started_unix_us();
  });
  const int64_t origin = tasks.empty() ? 0 : tasks.front().decision().started_unix_us();
  json events = json::array();
  // (pid, slot, executor) -> the end of each lane's last run.
  std::map<std::tuple<int, int, std::string>, std::vector<int64_t>> lanes;
  std::map<std::tuple<int, int, std::string, size_t>, int> tids;
  std::map<int, std::string> pools;
  for (const v1::Task& t : tasks) {
    const v1::Decision& d = t.decision();
    const int pid = PoolPid(d.pool());
    pools[pid] = d.pool();
    const std::string executor = ExecutorName(d.executor());
    std::vector<int64_t>& ends = lanes[{pid, d.worker_slot(), executor}];
    size_t lane = 0;
    while (lane < ends.size() && ends[lane] > d.started_unix_us()) ++lane;
    if (lane == ends.size()) ends.push_back(0);
    ends[lane] = d.finished_unix_us();
    auto [it, fresh] =
        tids.try_emplace({pid, d.worker_slot(), executor, lane}, static_cast<int>(tids.size()) + 1);
    if (fresh) {
      events.push_back(
          {{"name", "thread_name"},
           {"ph", "M"},
           {"pid", pid},
           {"tid", it->second},
           {"args",
            {{"name", absl::StrCat("worker #", d.worker_slot(), " ", executor, " lane ", lane)}}}});
      events.push_back({{"name", "thread_sort_index"},
                        {"ph", "M"},
                        {"pid", pid},
                        {"tid", it->second},
                        {"args", {{"sort_index", d.worker_slot() * 1000 + lane}}}});
    }
    json args = {{"id", t.id()},
                 {"state", StateName(t.state())},
                 {"class", ClassName(d.resolved_class())},
                 {"reason", ReasonName(d.reason())},
                 {"evidence", d.evidence()},
                 {"worker_pid", d.worker_pid()},
                 {"queue_wait_us", d.queue_wait_us()},
                 {"cpu_time_us", d.cpu_time_us()},
                 {"attempt", d.attempt()}};
    if (t.has_error() && !t.error().message().empty()) args["error"] = t.error().message();
    if (d.has_exit_code()) args["exit_code"] = d.exit_code();
    json run = {{"name", t.spec().handler()},
                {"cat", d.pool()},
                {"ph", "X"},
                {"ts", d.started_unix_us() - origin},
                {"dur", std::max<int64_t>(0, d.finished_unix_us() - d.started_unix_us())},
                {"pid", pid},
                {"tid", it->second},
                {"args", std::move(args)}};
    if (t.state() != v1::TASK_STATE_SUCCEEDED)
      run["cname"] = "terrible";  // red in chrome://tracing
    events.push_back(std::move(run));
  }
  for (const auto& [pid, name] : pools) {
    events.push_back({{"name", "process_name"},
                      {"ph", "M"},
                      {"pid", pid},
                      {"args", {{"name", absl::StrCat(name, " pool")}}}});
    events.push_back({{"name", "process_sort_index"},
                      {"ph", "M"},
                      {"pid", pid},
                      {"args", {{"sort_index", pid}}}});
  }
  return {{"traceEvents", std::move(events)},
          {"displayTimeUnit", "ms"},
          {"otherData", {{"generator", "taskrt trace"}, {"origin_unix_us", origin}}}};
}

int RunTrace(const TraceOptions& opts, const CliContext& ctx) {
  absl::StatusOr<absl::Duration> since = ParseDuration("--since", opts.since, absl::Minutes(10));
  if (!since.ok()) return Fail(since.status());
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  v1::ListRequest request;
  request.set_limit(opts.limit);
  for (v1::TaskState s : {v1::TASK_STATE_SUCCEEDED, v1::TASK_STATE_FAILED, v1::TASK_STATE_CANCELLED,
                          v1::TASK_STATE_TIMED_OUT}) {
    request.add_states(s);
  }
  absl::StatusOr<std::vector<v1::Task>> tasks = (*client)->List(request);
  if (!tasks.ok()) return Fail(tasks.status());
  const int64_t cutoff = internal::NowUnixMicros() - absl::ToInt64Microseconds(*since);
  std::vector<v1::Task> ran;
  for (v1::Task& t : *tasks) {
    const v1::Decision& d = t.decision();
    if (d.started_unix_us() > 0 && d.finished_unix_us() >= cutoff) ran.push_back(std::move(t));
  }
  const std::string text = BuildTrace(std::move(ran)).dump() + "\n";
  if (opts.out == "-") {
    std::cout << text;
    return kExitOk;
  }
  std::ofstream file(opts.out, std::ios::trunc);
  file << text;
  file.close();
  if (!file) {
    PrintError(absl::StrCat("cannot write ", opts.out));
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace

void AddTraceCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<TraceOptions>();
  CLI::App* sub = app.add_subcommand(
      "trace", "Export the runs of recent tasks as a Chrome trace (open it in Perfetto)");
  sub->add_option("--since", opts->since, "Runs that ended this long ago or later")
      ->default_str("10m");
  sub->add_option("--limit", opts->limit, "Tasks looked at, newest first")
      ->default_val(10000)
      ->check(CLI::Range(1, 100000));
  sub->add_option("--out,-f", opts->out, "Write the trace here (- = stdout)")->default_str("-");
  sub->footer(
      "A process per pool, a thread per worker slot, executor and lane, a slice per run\n"
      "(args: id, state, class, reason, evidence, worker pid, queue wait, cpu time, error,\n"
      "exit code); failed runs are red in chrome://tracing. Open the file at\n"
      "https://ui.perfetto.dev or chrome://tracing. Only your own tasks (an admin: all).");
  sub->callback([opts, &ctx] { ctx.exit_code = RunTrace(*opts, ctx); });
}

}  // namespace taskrt::cli
