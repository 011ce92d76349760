// Helpers that the benchmark (bench/bench.cc) and the demo (examples/demo/demo.cc)
// share: what the daemon runs on, the machine's load, percentiles. Internal to taskrt
// (target taskrt_bench_util, not installed). Thread-compatible: no shared state.
#ifndef TASKRT_BENCH_BENCH_UTIL_H_
#define TASKRT_BENCH_BENCH_UTIL_H_

#include <vector>

#include "absl/status/statusor.h"
#include "taskrt/client.h"

namespace taskrt::bench {

// What a daemon runs on, read from GetStats.
struct Shape {
  int daemon_pid = 0;
  int cpu_workers = 0;
  int io_workers = 0;
  int io_threads = 0;  // over all io workers
  int cores = 0;       // of this machine, as seen by the client (at least 1)
};

// The daemon's shape from client.GetStats(); its error when that fails.
absl::StatusOr<Shape> ReadShape(Client& client);

// The 1-minute load average, a hint that other work shared the cores; -1 if unknown.
double LoadAverage();

// Nearest-rank percentile of `values`, p in (0, 100]; 0 for no values.
double Percentile(std::vector<double> values, double p);

}  // namespace taskrt::bench

#endif  // TASKRT_BENCH_BENCH_UTIL_H_
