#include "daemon/metrics.h"

#include <algorithm>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace taskrt::daemon {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Seconds, from 100 µs (a no-op's queue wait) to 5 min (a long build).
const prometheus::Histogram::BucketBoundaries kTaskBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    300};
// Seconds, from 50 µs (an unsynced commit) to 1 s (an fsync on a busy disk).
const prometheus::Histogram::BucketBoundaries kCommitBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

// "TASK_STATE_TIMED_OUT" -> "timed_out": the enum name without its prefix, lower case.
std::string EnumLabel(const std::string& name, absl::string_view prefix) {
  absl::string_view rest = name;
  if (absl::StartsWith(rest, prefix)) rest.remove_prefix(prefix.size());
  return absl::AsciiStrToLower(rest);
}

std::string StateLabel(v1::TaskState s) { return EnumLabel(v1::TaskState_Name(s), "TASK_STATE_"); }
std::string ExecutorLabel(v1::Executor e) {
  return e == v1::EXECUTOR_UNSPECIFIED ? "none" : EnumLabel(v1::Executor_Name(e), "EXECUTOR_");
}

const char* ExitLabel(WorkerExit exit) {
  switch (exit) {
    case WorkerExit::kCrashed:
      return "crashed";
    case WorkerExit::kKilled:
      return "killed";
    case WorkerExit::kRecycled:
      return "recycled";
    case WorkerExit::kStuck:
      return "stuck";
    case WorkerExit::kCorrupt:
      return "corrupt";
  }
  return "crashed";
}

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void AddValue(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m;
  std::sort(labels.begin(), labels.end());  // as the registry's families print theirs
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

// The levels of `stats`: read when scraped, not counted.
std::vector<MetricFamily> Levels(const v1::Stats& stats, const std::string& version) {
  std::vector<MetricFamily> out;
  MetricFamily info =
      Family("taskrt_build_info", "The daemon's version (value 1).", MetricType::Gauge);
  AddValue(info, {{"version", version}}, 1);
  out.push_back(std::move(info));
  MetricFamily start = Family("taskrt_start_time_seconds", "When the daemon started (Unix time).",
                              MetricType::Gauge);
  AddValue(start, {}, static_cast<double>(stats.started_unix_us()) / 1e6);
  out.push_back(std::move(start));

  MetricFamily tasks =
      Family("taskrt_tasks", "Tasks the daemon holds, by state (final ones while retained).",
             MetricType::Gauge);
  for (int s = v1::TASK_STATE_QUEUED; s <= v1::TASK_STATE_TIMED_OUT; ++s) {
    const auto state = static_cast<v1::TaskState>(s);
    const auto it = stats.tasks_by_state().find(v1::TaskState_Name(state));
    AddValue(tasks, {{"state", StateLabel(state)}},
             it == stats.tasks_by_state().end() ? 0.0 : static_cast<double>(it->second));
  }
  out.push_back(std::move(tasks));
  MetricFamily submitted = Family("taskrt_tasks_submitted_total",
                                  "Tasks accepted since the daemon started.", MetricType::Counter);
  AddValue(submitted, {}, static_cast<double>(stats.tasks_submitted()));
  out.push_back(std::move(submitted));

  MetricFamily depth =
      Family("taskrt_queue_depth",
             "Tasks waiting for a worker, by pool and lane (sync: for a process or a thread; "
             "async: for an io worker's event loop).",
             MetricType::Gauge);
  MetricFamily running =
      Family("taskrt_running_tasks", "Tasks a worker holds, by pool.", MetricType::Gauge);
  MetricFamily size =
      Family("taskrt_pool_size", "Worker processes a pool is configured with.", MetricType::Gauge);
  for (const v1::PoolInfo& p : stats.pools()) {
    AddValue(depth, {{"pool", p.name()}, {"lane", "sync"}}, p.queued() - p.queued_async());
    AddValue(depth, {{"pool", p.name()}, {"lane", "async"}}, p.queued_async());
    AddValue(running, {{"pool", p.name()}}, p.running());
    AddValue(size, {{"pool", p.name()}}, p.workers());
  }
  out.push_back(std::move(depth));
  out.push_back(std::move(running));
  out.push_back(std::move(size));

  // Every pool with every state, so a state with no worker reads 0, not absent.
  std::map<std::pair<std::string, std::string>, int> by_state;
  for (const v1::PoolInfo& p : stats.pools()) {
    for (const char* s : {"starting", "idle", "busy"}) by_state[{p.name(), s}] = 0;
  }
  for (const v1::WorkerInfo& w : stats.workers()) ++by_state[{w.pool(), w.state()}];
  MetricFamily workers =
      Family("taskrt_workers", "Worker processes by pool and state.", MetricType::Gauge);
  for (const auto& [key, n] : by_state) {
    AddValue(workers, {{"pool", key.first}, {"state", key.second}}, n);
  }
  out.push_back(std::move(workers));

  MetricFamily ratio = Family("taskrt_learned_cpu_ratio",
                              "What the classifier learned: smoothed cpu/wall of a handler's runs.",
                              MetricType::Gauge);
  MetricFamily samples = Family("taskrt_learned_samples",
                                "Runs that taught a handler's cpu/wall ratio.", MetricType::Gauge);
  for (const v1::LearnedClass& l : stats.learned()) {
    if (!l.function().empty()) continue;  // per-function rows would be unbounded
    AddValue(ratio, {{"handler", l.handler()}}, l.cpu_ratio());
    AddValue(samples, {{"handler", l.handler()}}, static_cast<double>(l.samples()));
  }
  out.push_back(std::move(ratio));
  out.push_back(std::move(samples));
  return out;
}

}  // namespace

Metrics::Metrics(std::string version)
    : version_(std::move(version)), registry_(std::make_unique<prometheus::Registry>()) {
  finished_ = &prometheus::BuildCounter()
                   .Name("taskrt_tasks_finished_total")
                   .Help("Tasks that reached a final state, by handler, state and executor.")
                   .Register(*registry_);
  queue_wait_ = &prometheus::BuildHistogram()
                     .Name("taskrt_queue_wait_seconds")
                     .Help("How long finished tasks waited for a worker, by pool and lane.")
                     .Register(*registry_);
  run_time_ = &prometheus::BuildHistogram()
                   .Name("taskrt_run_seconds")
                   .Help("How long finished tasks ran in their worker, by pool and lane.")
                   .Register(*registry_);
  decisions_ =
      &prometheus::BuildCounter()
           .Name("taskrt_classifier_decisions_total")
           .Help("Classes the classifier resolved for submitted tasks, by reason and class.")
           .Register(*registry_);
  worker_exits_ = &prometheus::BuildCounter()
                       .Name("taskrt_worker_exits_total")
                       .Help(
                           "Worker processes that ended and were replaced (or failed to start), "
                           "by pool and reason.")
                       .Register(*registry_);
  auto& commits = prometheus::BuildHistogram()
                      .Name("taskrt_journal_commit_seconds")
                      .Help("Journal transactions, by whether they were fsync'd.")
                      .Register(*registry_);
  commit_synced_ = &commits.Add({{"synced", "true"}}, kCommitBuckets);
  commit_unsynced_ = &commits.Add({{"synced", "false"}}, kCommitBuckets);
  for (int reason = v1::REASON_CLIENT_DECLARED; reason <= v1::REASON_DEFAULT; ++reason) {
    for (int cls = v1::TASK_CLASS_CPU; cls <= v1::TASK_CLASS_IO; ++cls) {
      decided_[reason][cls] =
          &decisions_->Add({{"reason", EnumLabel(v1::Reason_Name(reason), "REASON_")},
                            {"class", cls == v1::TASK_CLASS_CPU ? "cpu" : "io"}});
    }
  }
}

Metrics::~Metrics() = default;

prometheus::Counter& Metrics::FinishedCounter(const v1::Task& task) {
  const std::string& handler = task.spec().handler();
  const int state = task.state(), executor = task.decision().executor();
  internal::MutexLock lock(&mu_);
  // Looked up by the handler's name as it is (no key is built per task); a new handler
  // gets its row of counters once.
  prometheus::Counter*& c =
      finished_by_handler_.try_emplace(handler).first->second[state * kExecutors + executor];
  if (c == nullptr) {
    c = &finished_->Add({{"handler", handler},
                         {"state", StateLabel(task.state())},
                         {"executor", ExecutorLabel(task.decision().executor())}});
  }
  return *c;
}

prometheus::Histogram& Metrics::PoolHistogram(prometheus::Family<prometheus::Histogram>& family,
                                              const std::string& pool, const char* lane) {
  const bool async = lane[0] == 'a';
  internal::MutexLock lock(&mu_);
  prometheus::Histogram*& h =
      histograms_by_pool_.try_emplace(pool)
          .first->second[(&family == queue_wait_ ? 0 : 2) + (async ? 1 : 0)];
  if (h == nullptr) h = &family.Add({{"pool", pool}, {"lane", lane}}, kTaskBuckets);
  return *h;
}

void Metrics::TaskFinished(const v1::Task& task) {
  FinishedCounter(task).Increment();
  const v1::Decision& d = task.decision();
  if (d.started_unix_us() == 0 || d.pool().empty()) return;  // never ran (cancelled while queued)
  const char* lane = d.executor() == v1::EXECUTOR_ASYNC ? "async" : "sync";
  PoolHistogram(*queue_wait_, d.pool(), lane).Observe(static_cast<double>(d.queue_wait_us()) / 1e6);
  PoolHistogram(*run_time_, d.pool(), lane).Observe(static_cast<double>(d.run_time_us()) / 1e6);
}

void Metrics::Decided(v1::Reason reason, v1::TaskClass resolved) {
  if (reason < v1::REASON_CLIENT_DECLARED || reason > v1::REASON_DEFAULT) return;
  if (resolved != v1::TASK_CLASS_CPU && resolved != v1::TASK_CLASS_IO) return;
  decided_[reason][resolved]->Increment();
}

void Metrics::WorkerExited(PoolKind pool, WorkerExit exit) {
  worker_exits_->Add({{"pool", PoolName(pool)}, {"reason", ExitLabel(exit)}}).Increment();
}

void Metrics::SpawnFailed(PoolKind pool) {
  worker_exits_->Add({{"pool", PoolName(pool)}, {"reason", "spawn_failed"}}).Increment();
}

void Metrics::JournalCommitted(absl::Duration took, bool synced) {
  (synced ? commit_synced_ : commit_unsynced_)->Observe(absl::ToDoubleSeconds(took));
}

std::string Metrics::Render(const v1::Stats& stats) const {
  std::vector<MetricFamily> families = Levels(stats, version_);
  for (MetricFamily& f : registry_->Collect()) families.push_back(std::move(f));
  // Every series names its daemon (Stats.daemon, the prefix of its task ids), so that
  // the series of several daemons stay apart wherever they are gathered.
  const ClientMetric::Label daemon{"daemon", stats.daemon()};
  for (MetricFamily& f : families) {
    for (ClientMetric& m : f.metric) {
      m.label.insert(std::lower_bound(m.label.begin(), m.label.end(), daemon), daemon);
    }
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace taskrt::daemon
