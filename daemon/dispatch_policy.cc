#include "daemon/dispatch_policy.h"

namespace taskrt::daemon {

int PickWorker(const std::vector<WorkerLoad>& workers, PoolKind pool, bool async, bool short_task,
               const PickLimits& limits) {
  int best = -1;
  for (int i = 0; i < static_cast<int>(workers.size()); ++i) {
    const WorkerLoad& w = workers[i];
    if (w.pool != pool || !w.accepting) continue;
    if (IsCpuPool(pool)) {
      const bool may_wait = short_task && w.long_running == 0 && w.running <= limits.cpu_prefetch;
      if (w.running != 0 && !may_wait) continue;
    } else if (async ? w.async_running >= limits.io_max_inflight
                     : w.sync_running >= limits.threads) {
      continue;
    }
    if (best < 0 || w.running < workers[best].running) best = i;
  }
  return best;
}

}  // namespace taskrt::daemon
