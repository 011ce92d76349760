// Clock: where the daemon's core reads the time (microseconds since the Unix epoch).
// The task manager and the worker pool take one, so that tests drive time by hand
// (tests/testing/fake_clock.h) instead of sleeping. Thread-safety: Now() may be called
// from any thread.
#ifndef TASKRT_DAEMON_CLOCK_H_
#define TASKRT_DAEMON_CLOCK_H_

#include <cstdint>

namespace taskrt::daemon {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowUnixMicros() = 0;
};

// The system's wall clock (internal::NowUnixMicros). A process-wide instance.
Clock* SystemClock();

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_CLOCK_H_
