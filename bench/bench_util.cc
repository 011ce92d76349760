#include "bench/bench_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>

namespace taskrt::bench {

absl::StatusOr<Shape> ReadShape(Client& client) {
  absl::StatusOr<v1::Stats> stats = client.GetStats();
  if (!stats.ok()) return stats.status();
  Shape shape;
  shape.daemon_pid = stats->daemon_pid();
  for (const auto& pool : stats->pools()) {
    if (pool.name() == "cpu") shape.cpu_workers = static_cast<int>(pool.workers());
    if (pool.name() == "io") shape.io_workers = static_cast<int>(pool.workers());
  }
  for (const auto& worker : stats->workers()) {
    if (worker.pool() == "io") shape.io_threads += static_cast<int>(worker.threads());
  }
  shape.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return shape;
}

double LoadAverage() {
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * values.size()));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

}  // namespace taskrt::bench
