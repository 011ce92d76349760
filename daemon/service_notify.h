// ServiceNotifier: tells the service manager how taskrtd is doing, over systemd's
// notification protocol (sd_notify(3)): READY=1 once it serves, STATUS= lines with the
// queue depths, WATCHDOG=1 keep-alives when the unit sets WatchdogSec=, and STOPPING=1
// when the drain begins (deploy/taskrtd.service is Type=notify). The only file of the
// daemon that knows systemd; the rest passes it text.
//
// Without $NOTIFY_SOCKET (taskrtd not started by systemd, or by a test) every call does
// nothing. A message that cannot be sent is logged once to stderr and otherwise
// ignored: the daemon serves whether or not its manager hears of it. A send blocks
// while the manager's queue is full (systemd reads it at once; a test must too), so
// call these without holding locks that others need. Workers and sys.exec commands
// inherit $NOTIFY_SOCKET, but the unit sets NotifyAccess=main: only taskrtd is heard.
//
// Example (RunDaemon):
//   ServiceNotifier notifier;
//   ... start the daemon ...
//   notifier.Ready("serving; 0 queued, 0 running");
//   every notifier.tick_period(), on the task manager's ticker: notifier.Tick(status);
//   on SIGTERM: notifier.Stopping("draining; 3 queued, 2 running");
//
// Thread-safety: every method may be called from any thread.
#ifndef TASKRT_DAEMON_SERVICE_NOTIFY_H_
#define TASKRT_DAEMON_SERVICE_NOTIFY_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace taskrt::daemon {

class ServiceNotifier {
 public:
  // The longest time between two STATUS= updates while the status changes.
  static constexpr absl::Duration kStatusPeriod = absl::Seconds(2);

  // Reads $NOTIFY_SOCKET and the watchdog interval ($WATCHDOG_USEC, for this pid).
  ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  // Whether a service manager listens ($NOTIFY_SOCKET is set).
  bool enabled() const { return enabled_; }
  // How often Tick should be called: kStatusPeriod, or half the watchdog interval when
  // that is shorter.
  absl::Duration tick_period() const;

  // READY=1 with the status: the daemon serves (its sockets listen, recovery is done).
  void Ready(absl::string_view status);
  // WATCHDOG=1 when the watchdog is on, and the status when it changed. Nothing before
  // Ready (systemd starts the watchdog once the service is ready; a status would say
  // "serving" too early).
  void Tick(absl::string_view status);
  // STOPPING=1 with the status: the drain begins.
  void Stopping(absl::string_view status);

 private:
  // Sends `fields` (newline-separated KEY=VALUE) plus STATUS= when `status` differs
  // from the last one sent (or `force_status`).
  void SendLocked(std::string fields, absl::string_view status, bool force_status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  bool enabled_ = false;
  absl::Duration watchdog_ = absl::ZeroDuration();  // zero: the watchdog is off

  internal::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;  // Ready was called
  std::string last_status_ ABSL_GUARDED_BY(mu_);
  bool send_failed_ ABSL_GUARDED_BY(mu_) = false;  // logged once
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_SERVICE_NOTIFY_H_
