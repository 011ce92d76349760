#include "daemon/service_notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace taskrt::daemon {

ServiceNotifier::ServiceNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  // > 0 only when $WATCHDOG_USEC is set and $WATCHDOG_PID (if set) is this process.
  if (enabled_ && sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0 && usec > 0) {
    watchdog_ = absl::Microseconds(static_cast<int64_t>(usec));
  }
}

absl::Duration ServiceNotifier::tick_period() const {
  if (watchdog_ == absl::ZeroDuration()) return kStatusPeriod;
  // Half the interval, as sd_watchdog_enabled(3) advises; at least one tick (10 ms).
  return std::max(std::min(kStatusPeriod, watchdog_ / 2), absl::Milliseconds(10));
}

void ServiceNotifier::Ready(absl::string_view status) {
  if (!enabled_) return;
  internal::MutexLock lock(&mu_);
  ready_ = true;
  SendLocked("READY=1", status, true);
}

void ServiceNotifier::Tick(absl::string_view status) {
  if (!enabled_) return;
  internal::MutexLock lock(&mu_);
  if (!ready_) return;
  SendLocked(watchdog_ > absl::ZeroDuration() ? "WATCHDOG=1" : "", status, false);
}

void ServiceNotifier::Stopping(absl::string_view status) {
  if (!enabled_) return;
  internal::MutexLock lock(&mu_);
  SendLocked("STOPPING=1", status, true);
}

// Under mu_, so that messages leave in the order of the calls (a blocking send only
// holds up other notifications).
void ServiceNotifier::SendLocked(std::string fields, absl::string_view status, bool force_status) {
  if (force_status || status != last_status_) {
    // A newline would end the field: the status is one line.
    std::string line(status);
    std::replace(line.begin(), line.end(), '\n', ' ');
    absl::StrAppend(&fields, fields.empty() ? "" : "\n", "STATUS=", line);
    last_status_ = std::string(status);
  }
  if (fields.empty()) return;
  const int rc = sd_notify(/*unset_environment=*/0, fields.c_str());
  if (rc < 0 && !send_failed_) {
    send_failed_ = true;
    std::fprintf(stderr,
                 "taskrtd: cannot notify the service manager on $NOTIFY_SOCKET (%s); "
                 "serving anyway, further failures are not logged\n",
                 std::strerror(-rc));
  }
}

}  // namespace taskrt::daemon
