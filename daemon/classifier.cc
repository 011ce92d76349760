#include "daemon/classifier.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace taskrt::daemon {
namespace {

const char* Upper(v1::TaskClass c) { return c == v1::TASK_CLASS_CPU ? "CPU" : "IO"; }

}  // namespace

v1::TaskClass LearnedClass(const LearnedStats& stats, const ClassifierOptions& options) {
  if (stats.samples < options.min_samples) return v1::TASK_CLASS_AUTO;
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
      d.evidence =
          absl::StrFormat("cpu/wall %.2f over %d runs of %s (threshold %.2f)", learned->cpu_ratio,
                          learned->samples, handler, options.cpu_threshold);
      return d;
    }
  }
  d.resolved = options.default_class;
  d.reason = v1::REASON_DEFAULT;
  const uint64_t have = learned == nullptr ? 0 : learned->samples;
  d.evidence =
      absl::StrFormat("no declaration, no hint, %d of %d runs needed to learn %s: default class %s",
                      have, options.min_samples, handler, Upper(options.default_class));
  return d;
}

void Learn(LearnedStats& stats, int64_t cpu_time_us, int64_t wall_time_us,
           const ClassifierOptions& options) {
  if (wall_time_us < options.min_wall_us || wall_time_us <= 0) return;
  const double ratio =
      std::clamp(static_cast<double>(cpu_time_us) / static_cast<double>(wall_time_us), 0.0, 1.0);
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
  const double ratio =
      static_cast<double>(decision.cpu_time_us()) / static_cast<double>(decision.run_time_us());
  const char* who = decision.reason() == v1::REASON_CLIENT_DECLARED ? "declared" : "hinted";
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
