#include "daemon/classifier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace taskrt::daemon {
namespace {

const char* Upper(v1::TaskClass c) { return c == v1::TASK_CLASS_CPU ? "CPU" : "IO"; }

}  // namespace

namespace {

// Runs too short to measure, on average: an occasional long one (the process was
// preempted) would otherwise teach that a no-op waits.
bool TooShortToLearn(const LearnedStats& stats, const ClassifierOptions& options) {
  return stats.runs >= options.min_samples &&
         stats.wall_us < static_cast<double>(options.min_wall_us);
}

}  // namespace

v1::TaskClass LearnedClass(const LearnedStats& stats, const ClassifierOptions& options) {
  if (stats.samples < options.min_samples || TooShortToLearn(stats, options)) {
    return v1::TASK_CLASS_AUTO;
  }
  return stats.cpu_ratio >= options.cpu_threshold ? v1::TASK_CLASS_CPU : v1::TASK_CLASS_IO;
}

ClassDecision Classify(const std::string& handler, v1::TaskClass requested, v1::TaskClass hint,
                       const LearnedStats* learned, const ClassifierOptions& options) {
  ClassDecision d;
  if (requested == v1::TASK_CLASS_CPU || requested == v1::TASK_CLASS_IO) {
    d.resolved = requested;
    d.reason = v1::REASON_CLIENT_DECLARED;
    d.evidence = absl::StrFormat("the client declared class %s", Upper(requested));
    return d;
  }
  if (hint == v1::TASK_CLASS_CPU || hint == v1::TASK_CLASS_IO) {
    d.resolved = hint;
    d.reason = v1::REASON_HANDLER_HINT;
    d.evidence = absl::StrFormat("handler %s registered the hint %s", handler, Upper(hint));
    return d;
  }
  if (learned != nullptr) {
    const v1::TaskClass c = LearnedClass(*learned, options);
    if (c != v1::TASK_CLASS_AUTO) {
      d.resolved = c;
      d.reason = v1::REASON_LEARNED;
      const bool gil = learned->gil_samples == learned->samples;
      d.evidence = absl::StrFormat("%s %.2f over %d runs of %s (threshold %.2f)",
                                   gil ? "cpu/(wall - GIL wait)" : "cpu/wall", learned->cpu_ratio,
                                   learned->samples, handler, options.cpu_threshold);
      return d;
    }
  }
  d.resolved = options.default_class;
  d.reason = v1::REASON_DEFAULT;
  if (learned != nullptr && TooShortToLearn(*learned, options)) {
    d.evidence = absl::StrFormat(
        "runs of %s take %.0f us on average, too short to learn a class from: default class %s",
        handler, learned->wall_us, Upper(options.default_class));
    return d;
  }
  const uint64_t have = learned == nullptr ? 0 : learned->samples;
  d.evidence =
      absl::StrFormat("no declaration, no hint, %d of %d runs needed to learn %s: default class %s",
                      have, options.min_samples, handler, Upper(options.default_class));
  return d;
}

namespace {

// cpu / wall of a run, with its measured GIL wait (>= 0) taken out of the wall time.
double RunRatio(int64_t cpu_time_us, int64_t wall_time_us, int64_t gil_wait_us) {
  const int64_t wall = std::max<int64_t>(
      1, gil_wait_us > 0 ? wall_time_us - std::min(gil_wait_us, wall_time_us) : wall_time_us);
  return std::clamp(static_cast<double>(cpu_time_us) / static_cast<double>(wall), 0.0, 1.0);
}

}  // namespace

void Learn(LearnedStats& stats, int64_t cpu_time_us, int64_t wall_time_us,
           const ClassifierOptions& options, int64_t gil_wait_us) {
  const double wall = static_cast<double>(std::max<int64_t>(0, wall_time_us));
  stats.wall_us =
      stats.runs == 0 ? wall : options.smoothing * wall + (1 - options.smoothing) * stats.wall_us;
  ++stats.runs;
  if (wall_time_us < options.min_wall_us || wall_time_us <= 0) return;
  const double ratio = RunRatio(cpu_time_us, wall_time_us, gil_wait_us);
  if (gil_wait_us >= 0) ++stats.gil_samples;
  stats.cpu_ratio = stats.samples == 0
                        ? ratio
                        : options.smoothing * ratio + (1 - options.smoothing) * stats.cpu_ratio;
  ++stats.samples;
}

std::string MismatchHint(const v1::Decision& decision, const ClassifierOptions& options) {
  if (decision.reason() != v1::REASON_CLIENT_DECLARED &&
      decision.reason() != v1::REASON_HANDLER_HINT) {
    return "";
  }
  // Sleeps and commands are measured by the wall; tiny runs say nothing.
  if (decision.run_time_us() < 10 * options.min_wall_us) return "";
  const double ratio = RunRatio(decision.cpu_time_us(), decision.run_time_us(),
                                decision.gil_measured() ? decision.gil_wait_us() : -1);
  const char* who = decision.reason() == v1::REASON_CLIENT_DECLARED ? "declared" : "hinted";
  const double gil_share =
      static_cast<double>(decision.gil_wait_us()) / static_cast<double>(decision.run_time_us());
  if (decision.resolved_class() == v1::TASK_CLASS_IO && ratio >= 0.5 && decision.gil_measured() &&
      gil_share >= 0.2) {
    return absl::StrFormat(
        "%s IO but it computed: it ran Python %.0f%% of the time it did not wait for the GIL, "
        "and waited %.0f%% of its run for the GIL behind %d other Python task%s; threads of one "
        "process run Python one at a time (the GIL), so a thread gained it nothing: submit "
        "it as CPU to run it in a process of its own, in parallel",
        who, ratio * 100, gil_share * 100, decision.peers(), decision.peers() == 1 ? "" : "s");
  }
  if (decision.resolved_class() == v1::TASK_CLASS_IO && ratio >= 0.8) {
    return absl::StrFormat(
        "%s IO but used %.0f%% CPU: a CPU-bound task on an io thread competes with the "
        "I/O tasks there and cannot be killed alone at its timeout; submit it as CPU",
        who, ratio * 100);
  }
  if (decision.resolved_class() == v1::TASK_CLASS_CPU && ratio <= 0.2) {
    return absl::StrFormat(
        "%s CPU but used %.0f%% CPU: it mostly waited and held a whole cpu worker "
        "meanwhile; submit it as IO to run it concurrently",
        who, ratio * 100);
  }
  return "";
}

}  // namespace taskrt::daemon

namespace taskrt::daemon {

std::string GilEvidence(const v1::Decision& d) {
  if (d.runtime() != "python" || d.run_time_us() <= 0) return "";
  if (!d.gil_measured()) {
    return "the GIL wait was not measured in this worker (no GIL probe: another Python, "
           "or TASKRT_GIL_PROBE=0), so it is learned from cpu/wall";
  }
  const double wall = static_cast<double>(d.run_time_us());
  const double held = std::min(static_cast<double>(d.cpu_time_us()),
                               std::max(0.0, wall - static_cast<double>(d.gil_wait_us()))) /
                      wall;
  std::string out = absl::StrFormat("held the GIL %.0f%% of its run", std::min(1.0, held) * 100);
  if (d.gil_wait_us() >= 1000) {
    absl::StrAppendFormat(&out, "; waited %.2f s for it",
                          static_cast<double>(d.gil_wait_us()) / 1e6);
    if (d.peers() > 0) {
      absl::StrAppendFormat(&out, " behind %d other Python task%s", d.peers(),
                            d.peers() == 1 ? "" : "s");
    }
    absl::StrAppendFormat(&out, " on worker pid %d", d.worker_pid());
  } else {
    absl::StrAppend(&out, "; it did not wait for it");
  }
  return out;
}

}  // namespace taskrt::daemon
