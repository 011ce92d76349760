// A taskrtd child process owned by the benchmark: started on a socket in a fresh
// temporary directory, stopped (SIGTERM, then SIGKILL) and cleaned up by the owner.
//
// Started with posix_spawn, never fork without exec: the benchmark's own gRPC client may
// already be running threads, and a forked child that touches gRPC hangs.
// Thread-safety: one owner calls the methods; StopRunningDaemon may run concurrently.
#ifndef TASKRT_BENCH_DAEMON_PROCESS_H_
#define TASKRT_BENCH_DAEMON_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace taskrt::bench {

struct DaemonProcessOptions {
  // The taskrtd binary. Empty: "taskrtd" in the directory of this executable.
  std::string binary;
  // Extra arguments after `--socket PATH` (e.g. {"--cpu-workers", "4"}).
  std::vector<std::string> args;
  // How long Start waits for the daemon to answer a client.
  absl::Duration ready_timeout = absl::Seconds(10);
  // How long Stop waits after SIGTERM before SIGKILL.
  absl::Duration stop_timeout = absl::Seconds(5);
};

class DaemonProcess {
 public:
  // Creates a temporary directory, spawns the daemon with `--socket <dir>/taskrt.sock`
  // (its stdout and stderr go to <dir>/taskrtd.log) and waits until a client connects.
  // On failure nothing is left behind; the message includes the end of the daemon's log.
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(const DaemonProcessOptions& options);
  // Stops the daemon if Stop was not called.
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  pid_t pid() const { return pid_; }

  // SIGTERM, waitpid up to stop_timeout, then SIGKILL; removes the temporary directory.
  // Returns an error when the daemon did not exit cleanly (it is reaped either way).
  absl::Status Stop();

 private:
  DaemonProcess(pid_t pid, std::string dir, absl::Duration stop_timeout);
  friend void StopRunningDaemon();
  // Stop, with the module's mutex held.
  absl::Status StopLocked();
  // The last lines of the daemon's log, for error messages.
  std::string LogTail() const;

  pid_t pid_;  // 0 once reaped; guarded by the module's mutex once started
  const std::string dir_;
  const std::string socket_path_;
  const std::string log_path_;
  const absl::Duration stop_timeout_;
};

// For an interrupted benchmark: stops every running DaemonProcess, if any, as Stop does
// and removes their directories. Callable from any thread (e.g. one waiting for SIGINT); the
// caller is expected to exit right after, without touching the DaemonProcess again.
void StopRunningDaemon();

}  // namespace taskrt::bench

#endif  // TASKRT_BENCH_DAEMON_PROCESS_H_
