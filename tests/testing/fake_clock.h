// FakeClock: a daemon::Clock that moves only when a test says so.
#ifndef TASKRT_TESTS_TESTING_FAKE_CLOCK_H_
#define TASKRT_TESTS_TESTING_FAKE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "daemon/clock.h"

namespace taskrt::testing {

class FakeClock final : public daemon::Clock {
 public:
  explicit FakeClock(int64_t start_us = 1'700'000'000'000'000) : now_(start_us) {}
  int64_t NowUnixMicros() override { return now_.load(); }
  void AdvanceMs(int64_t ms) { now_ += ms * 1000; }
  void AdvanceUs(int64_t us) { now_ += us; }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace taskrt::testing

#endif  // TASKRT_TESTS_TESTING_FAKE_CLOCK_H_
