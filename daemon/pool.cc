#include "daemon/pool.h"

namespace taskrt::daemon {

const char* PoolName(PoolKind p) {
  switch (p) {
    case PoolKind::kCpu:
      return "cpu";
    case PoolKind::kIo:
      return "io";
    case PoolKind::kPyCpu:
      return "python-cpu";
    case PoolKind::kPyIo:
      return "python-io";
  }
  return "?";
}

PoolKind PoolOf(v1::TaskClass resolved, bool python) {
  const bool cpu = resolved == v1::TASK_CLASS_CPU;
  if (python) return cpu ? PoolKind::kPyCpu : PoolKind::kPyIo;
  return cpu ? PoolKind::kCpu : PoolKind::kIo;
}

}  // namespace taskrt::daemon
