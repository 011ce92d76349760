#include "daemon/dispatch_policy.h"

#include "gtest/gtest.h"

namespace taskrt::daemon {
namespace {

WorkerLoad Cpu(int running, int long_running, bool accepting = true) {
  return {PoolKind::kCpu, accepting, running, long_running, running, 0};
}
WorkerLoad Io(int sync, int async) {
  return {PoolKind::kIo, true, sync + async, sync, sync, async};
}

TEST(PickWorkerTest, ACpuTaskGoesToAnIdleWorkerOnly) {
  const PickLimits limits{/*cpu_prefetch=*/0, 1, 100};
  EXPECT_EQ(PickWorker({Cpu(1, 1), Cpu(0, 0)}, PoolKind::kCpu, false, false, limits), 1);
  EXPECT_EQ(PickWorker({Cpu(1, 1), Cpu(1, 1)}, PoolKind::kCpu, false, false, limits), -1);
}

TEST(PickWorkerTest, ShortTasksWaitOnlyBehindShortOnesUpToThePrefetch) {
  const PickLimits limits{/*cpu_prefetch=*/2, 1, 100};
  EXPECT_EQ(PickWorker({Cpu(2, 0)}, PoolKind::kCpu, false, /*short_task=*/true, limits), 0);
  EXPECT_EQ(PickWorker({Cpu(3, 0)}, PoolKind::kCpu, false, true, limits), -1) << "prefetch full";
  EXPECT_EQ(PickWorker({Cpu(1, 1)}, PoolKind::kCpu, false, true, limits), -1)
      << "behind a long one";
  EXPECT_EQ(PickWorker({Cpu(1, 0)}, PoolKind::kCpu, false, false, limits), -1) << "a long one";
}

TEST(PickWorkerTest, IoTasksFillThreadsOrTheAsyncLoopLeastLoadedFirst) {
  const PickLimits limits{0, /*threads=*/2, /*io_max_inflight=*/3};
  EXPECT_EQ(PickWorker({Io(2, 0), Io(1, 0)}, PoolKind::kIo, false, false, limits), 1);
  EXPECT_EQ(PickWorker({Io(2, 0), Io(2, 0)}, PoolKind::kIo, false, false, limits), -1);
  EXPECT_EQ(PickWorker({Io(2, 0), Io(2, 0)}, PoolKind::kIo, /*async=*/true, false, limits), 0);
  EXPECT_EQ(PickWorker({Io(0, 3)}, PoolKind::kIo, true, false, limits), -1);
}

TEST(PickWorkerTest, WorkersThatDoNotAcceptOrAreOfAnotherPoolAreSkipped) {
  const PickLimits limits{0, 1, 100};
  EXPECT_EQ(
      PickWorker({Cpu(0, 0, /*accepting=*/false), Io(0, 0)}, PoolKind::kCpu, false, false, limits),
      -1);
}

}  // namespace
}  // namespace taskrt::daemon
