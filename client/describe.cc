// The SDK's pure helpers: task specs, names of enum values and the decision in words.
// No gRPC here, so this compiles fast and is usable without a daemon.
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/task_state.h"
#include "common/util.h"
#include "taskrt/client.h"

namespace taskrt {
namespace {

using internal::FormatMicros;

// "512 KiB", "3.1 MiB", "1.2 GiB".
std::string FormatKib(int64_t kib) {
  if (kib < 1024) return absl::StrCat(kib, " KiB");
  if (kib < 1024 * 1024) {
    return absl::StrFormat("%.1f MiB", static_cast<double>(kib) / 1024);
  }
  return absl::StrFormat("%.1f GiB", static_cast<double>(kib) / (1024 * 1024));
}

// "asked for auto; ran as cpu because ...".
std::string ClassLine(const v1::Task& task) {
  const v1::Decision& d = task.decision();
  std::string line = absl::StrCat("asked for ", ClassName(d.requested_class()), "; ");
  if (d.reason() == v1::REASON_UNSPECIFIED) {
    absl::StrAppend(&line, "class not decided yet");
  } else {
    const bool started = d.executor() != v1::EXECUTOR_UNSPECIFIED;
    absl::StrAppend(&line, started ? "ran as " : "routed as ", ClassName(d.resolved_class()),
                    " because ");
    switch (d.reason()) {
      case v1::REASON_CLIENT_DECLARED:
        absl::StrAppend(&line, "the client declared it");
        break;
      case v1::REASON_HANDLER_HINT:
        absl::StrAppend(&line, "the handler registered the hint ",
                        absl::AsciiStrToUpper(ClassName(d.resolved_class())));
        break;
      case v1::REASON_LEARNED:
        absl::StrAppend(&line, "the daemon learned it from past runs of ",
                        task.spec().handler().empty() ? "the handler" : task.spec().handler());
        break;
      case v1::REASON_DEFAULT:
        absl::StrAppend(&line, "nothing was known about the handler (the daemon's default class)");
        break;
      default:
        absl::StrAppend(&line, "of reason ", ReasonName(d.reason()));
        break;
    }
  }
  if (!d.evidence().empty()) absl::StrAppend(&line, " (evidence: ", d.evidence(), ")");
  return line;
}

// "executor: process — worker pid 1234, slot 0 of the cpu pool (daemon pid 1200)".
std::string ExecutorLine(const v1::Task& task) {
  const v1::Decision& d = task.decision();
  if (d.executor() == v1::EXECUTOR_UNSPECIFIED) {
    if (task.state() == v1::TASK_STATE_QUEUED || !IsFinal(task.state())) {
      return "executor: not started yet";
    }
    return "executor: none (the task never started)";
  }
  std::string line = absl::StrCat("executor: ", ExecutorName(d.executor()));
  std::vector<std::string> where;
  if (d.worker_pid() > 0) {
    std::string worker = absl::StrCat("worker pid ", d.worker_pid());
    if (!d.pool().empty()) {
      absl::StrAppend(&worker, ", slot ", d.worker_slot(), " of the ", d.pool(), " pool");
    }
    where.push_back(std::move(worker));
  } else if (!d.pool().empty()) {
    where.push_back(absl::StrCat("the ", d.pool(), " pool"));
  }
  if (!where.empty()) absl::StrAppend(&line, " \u2014 ", absl::StrJoin(where, ", "));
  if (d.daemon_pid() > 0) absl::StrAppend(&line, " (daemon pid ", d.daemon_pid(), ")");
  return line;
}

// "queued 0.2 ms, ran 812.4 ms, cpu 810.1 ms (cpu/wall 1.00), peak rss 3.1 MiB, attempt 1".
std::string TimingLine(const v1::Task& task) {
  const v1::Decision& d = task.decision();
  const int64_t now_us = internal::NowUnixMicros();
  std::vector<std::string> parts;
  if (d.started_unix_us() == 0) {
    if (IsFinal(task.state())) {
      parts.push_back("never ran");
    } else if (d.submitted_unix_us() > 0) {
      parts.push_back(absl::StrCat("not started yet, queued for ",
                                   FormatMicros(now_us - d.submitted_unix_us())));
    } else {
      parts.push_back("not started yet");
    }
  } else {
    parts.push_back(absl::StrCat("queued ", FormatMicros(d.queue_wait_us())));
    if (task.state() == v1::TASK_STATE_RUNNING && d.run_time_us() == 0) {
      parts.push_back(absl::StrCat("running for ", FormatMicros(now_us - d.started_unix_us())));
    } else {
      parts.push_back(absl::StrCat("ran ", FormatMicros(d.run_time_us())));
    }
    if (d.cpu_time_us() > 0 || d.run_time_us() > 0) {
      std::string cpu = absl::StrCat("cpu ", FormatMicros(d.cpu_time_us()));
      if (d.run_time_us() > 0) {
        absl::StrAppend(
            &cpu, absl::StrFormat(" (cpu/wall %.2f)", static_cast<double>(d.cpu_time_us()) /
                                                          static_cast<double>(d.run_time_us())));
      }
      parts.push_back(std::move(cpu));
    }
  }
  if (d.peak_rss_kb() > 0) {
    parts.push_back(absl::StrCat("peak rss ", FormatKib(d.peak_rss_kb())));
  }
  if (d.attempt() > 0) parts.push_back(absl::StrCat("attempt ", d.attempt()));
  return absl::StrJoin(parts, ", ");
}

// "error: worker-crashed: worker died (SIGSEGV)".
std::string ErrorLine(const v1::TaskError& e) {
  std::string line = absl::StrCat("error: ", FailureName(e.kind()));
  if (!e.message().empty()) absl::StrAppend(&line, ": ", e.message());
  if (!e.signal_name().empty() && !absl::StrContains(e.message(), e.signal_name())) {
    absl::StrAppend(&line, " (", e.signal_name(), ")");
  } else if (e.signal() > 0 && e.signal_name().empty()) {
    absl::StrAppend(&line, " (", internal::SignalName(e.signal()), ")");
  } else if (e.kind() == v1::FAILURE_KIND_WORKER_CRASHED && e.signal() == 0 && e.exit_code() != 0) {
    absl::StrAppend(&line, " (exit code ", e.exit_code(), ")");
  }
  return line;
}

}  // namespace

std::string DefaultSocketPath() { return internal::DefaultSocketPath(); }

v1::TaskSpec MakeTask(const std::string& handler, const std::string& input,
                      v1::TaskClass requested_class) {
  v1::TaskSpec spec;
  spec.set_handler(handler);
  spec.set_input(input);
  spec.set_requested_class(requested_class);
  return spec;
}

bool IsFinal(v1::TaskState state) { return internal::IsFinal(state); }

std::string ClassName(v1::TaskClass c) {
  switch (c) {
    case v1::TASK_CLASS_AUTO:
      return "auto";
    case v1::TASK_CLASS_CPU:
      return "cpu";
    case v1::TASK_CLASS_IO:
      return "io";
    default:
      return absl::StrCat("class ", static_cast<int>(c));
  }
}

std::string ExecutorName(v1::Executor e) {
  switch (e) {
    case v1::EXECUTOR_UNSPECIFIED:
      return "-";
    case v1::EXECUTOR_PROCESS:
      return "process";
    case v1::EXECUTOR_THREAD:
      return "thread";
    case v1::EXECUTOR_ASYNC:
      return "async";
    default:
      return absl::StrCat("executor ", static_cast<int>(e));
  }
}

std::string ReasonName(v1::Reason r) {
  switch (r) {
    case v1::REASON_UNSPECIFIED:
      return "-";
    case v1::REASON_CLIENT_DECLARED:
      return "client-declared";
    case v1::REASON_HANDLER_HINT:
      return "handler-hint";
    case v1::REASON_LEARNED:
      return "learned";
    case v1::REASON_DEFAULT:
      return "default";
    default:
      return absl::StrCat("reason ", static_cast<int>(r));
  }
}

std::string StateName(v1::TaskState s) {
  switch (s) {
    case v1::TASK_STATE_UNSPECIFIED:
      return "-";
    case v1::TASK_STATE_QUEUED:
      return "queued";
    case v1::TASK_STATE_RUNNING:
      return "running";
    case v1::TASK_STATE_SUCCEEDED:
      return "succeeded";
    case v1::TASK_STATE_FAILED:
      return "failed";
    case v1::TASK_STATE_CANCELLED:
      return "cancelled";
    case v1::TASK_STATE_TIMED_OUT:
      return "timed-out";
    default:
      return absl::StrCat("state ", static_cast<int>(s));
  }
}

std::string FailureName(v1::FailureKind k) {
  switch (k) {
    case v1::FAILURE_KIND_UNSPECIFIED:
      return "-";
    case v1::FAILURE_KIND_HANDLER_ERROR:
      return "handler-error";
    case v1::FAILURE_KIND_WORKER_CRASHED:
      return "worker-crashed";
    case v1::FAILURE_KIND_TIMEOUT:
      return "timeout";
    case v1::FAILURE_KIND_CANCELLED:
      return "cancelled";
    case v1::FAILURE_KIND_INVALID_INPUT:
      return "invalid-input";
    case v1::FAILURE_KIND_DAEMON_RESTART:
      return "daemon-restart";
    case v1::FAILURE_KIND_MEMORY_LIMIT:
      return "memory-limit";
    case v1::FAILURE_KIND_OUTPUT_TOO_LARGE:
      return "output-too-large";
    case v1::FAILURE_KIND_PERMISSION_DENIED:
      return "permission-denied";
    default:
      return absl::StrCat("failure ", static_cast<int>(k));
  }
}

absl::StatusOr<v1::TaskClass> ParseClass(const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "auto") return v1::TASK_CLASS_AUTO;
  if (lower == "cpu") return v1::TASK_CLASS_CPU;
  if (lower == "io") return v1::TASK_CLASS_IO;
  return absl::InvalidArgumentError(
      absl::StrCat("invalid task class '", text,
                   "': use auto (let the daemon decide), cpu (a worker process per task) or io "
                   "(a thread of the io pool)"));
}

std::string ExplainDecision(const v1::Task& task) {
  std::string out = absl::StrCat("task ", task.id().empty() ? "?" : task.id(), " (",
                                 task.spec().handler().empty() ? "?" : task.spec().handler(),
                                 "): ", StateName(task.state()), "\n");
  absl::StrAppend(&out, ClassLine(task), "\n");
  absl::StrAppend(&out, ExecutorLine(task), "\n");
  absl::StrAppend(&out, TimingLine(task), "\n");
  if (!task.decision().hint().empty()) {
    absl::StrAppend(&out, "hint: ", task.decision().hint(), "\n");
  }
  if (task.decision().recovered()) {
    absl::StrAppend(&out,
                    "recovered: the daemon restarted while this task was queued or "
                    "running, and took it up again from its journal\n");
  }
  for (const v1::Attempt& a : task.attempts()) {
    absl::StrAppend(&out, "earlier attempt ", a.attempt(), ": ",
                    ExecutorName(a.decision().executor()), " pid ", a.decision().worker_pid(), ", ",
                    ErrorLine(a.error()), "\n");
  }
  if (task.has_error() &&
      (task.error().kind() != v1::FAILURE_KIND_UNSPECIFIED || !task.error().message().empty())) {
    absl::StrAppend(&out, ErrorLine(task.error()), "\n");
  }
  return out;
}

std::string ExplainDecision(const v1::TaskResult& result, const v1::TaskSpec& spec) {
  v1::Task task;
  task.set_id(result.id());
  task.set_state(result.state());
  task.set_output(result.output());
  *task.mutable_spec() = spec;
  if (result.has_error()) *task.mutable_error() = result.error();
  *task.mutable_decision() = result.decision();
  *task.mutable_attempts() = result.attempts();
  return ExplainDecision(task);
}

}  // namespace taskrt
