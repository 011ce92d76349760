// The classifier: decides a task's class (CPU or IO) and says why.
//
// Precedence: the client's declaration > the handler's registered hint > what was
// learned from past runs of the handler (smoothed CPU time / wall time, once there are
// enough samples) > the default class. Pure functions over data: no clock, no locks.
#ifndef TASKRT_DAEMON_CLASSIFIER_H_
#define TASKRT_DAEMON_CLASSIFIER_H_

#include <cstdint>
#include <string>

#include "taskrt/v1/task.pb.h"

namespace taskrt::daemon {

struct ClassifierOptions {
  // A smoothed cpu/wall ratio at or above this means CPU-bound.
  double cpu_threshold = 0.5;
  // Runs needed before the learned ratio is trusted.
  uint64_t min_samples = 3;
  // Weight of the newest run in the exponential moving average.
  double smoothing = 0.3;
  // Runs shorter than this (wall) teach nothing: their ratio is mostly noise.
  int64_t min_wall_us = 1000;
  // Class used when nothing else decides. CPU: unknown code runs isolated in a process,
  // where a timeout can kill it and a crash cannot take other tasks along.
  v1::TaskClass default_class = v1::TASK_CLASS_CPU;
};

// What the classifier has learned about one handler.
struct LearnedStats {
  double cpu_ratio = 0;  // exponential moving average of cpu/wall
  uint64_t samples = 0;
  // Of those, runs whose worker measured the time the task waited for Python's GIL:
  // their ratio is cpu / (wall - GIL wait), which tells a CPU-bound Python thread that
  // waited for the GIL (ratio near 1) from one that waited for I/O (near 0).
  uint64_t gil_samples = 0;
  // Every run, short ones too: how long a run takes (exponential moving average of the
  // wall time), which decides whether a cpu worker may hold such tasks in advance.
  double wall_us = 0;
  uint64_t runs = 0;
};

struct ClassDecision {
  v1::TaskClass resolved = v1::TASK_CLASS_CPU;
  v1::Reason reason = v1::REASON_DEFAULT;
  std::string evidence;
};

// `hint` is the handler's registered hint (AUTO = none); `learned` may be null.
// `handler` is what the evidence names (the handler, or the Python function).
ClassDecision Classify(const std::string& handler, v1::TaskClass requested, v1::TaskClass hint,
                       const LearnedStats* learned, const ClassifierOptions& options);

// Folds one finished run into `stats`. Ignores runs shorter than min_wall_us.
// `gil_wait_us` >= 0: the run's measured wait for the GIL, taken out of its wall time
// (-1: not measured, the ratio is cpu / wall).
void Learn(LearnedStats& stats, int64_t cpu_time_us, int64_t wall_time_us,
           const ClassifierOptions& options, int64_t gil_wait_us = -1);

// What a finished Python run says about the GIL, for the decision's evidence: "held the
// GIL 24% of its run; waited 0.76 s for it behind 3 other Python tasks on worker pid
// 812", or that the GIL could not be measured. Empty for native runs.
std::string GilEvidence(const v1::Decision& decision);

// The class `stats` supports, or AUTO while there are too few samples.
v1::TaskClass LearnedClass(const LearnedStats& stats, const ClassifierOptions& options);

// A warning when the measurement of one run contradicts how the task was classified by
// declaration or hint ("declared IO but used 98% CPU ..."), else empty. A Python run
// whose GIL wait was measured is judged by cpu / (wall - GIL wait), and one declared IO
// that computed is told that the GIL serialized it.
std::string MismatchHint(const v1::Decision& decision, const ClassifierOptions& options);

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_CLASSIFIER_H_
