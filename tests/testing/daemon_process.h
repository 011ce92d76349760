// File: tests/testing/daemon_process.h
//
// A taskrtd child process for tests and the benchmark: started on a socket in a
// directory of its own, waited for until a client gets an answer, stopped by its pid
// (SIGTERM, then SIGKILL), or killed with SIGKILL and started again on the same socket
// and state directory (what a crash test needs).
//
//   DaemonProcessOptions options;
//   options.args = {"--cpu-workers", "2"};
//   auto daemon = DaemonProcess::Start(options);
//   ASSERT_THAT(daemon, IsOk());
//   ... connect a Client to (*daemon)->socket_path() ...
//   ASSERT_THAT((*daemon)->Kill(), IsOk());      // kill -9
//   ASSERT_THAT((*daemon)->Restart(), IsOk());   // same socket, same journal
//
// Started with posix_spawn, never fork without exec: the caller's own gRPC client may
// already be running threads, and a forked child that touches gRPC hangs. The child
// starts with default signal handling and an empty signal mask, whatever the caller did.
//
// Thread-safety: one owner calls the methods; StopRunningDaemons may run concurrently
// (e.g. on a thread waiting for SIGINT).
#ifndef TASKRT_TESTS_TESTING_DAEMON_PROCESS_H_
#define TASKRT_TESTS_TESTING_DAEMON_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace taskrt::testing {

struct DaemonProcessOptions {
  // The taskrtd binary. Empty: "taskrtd" in the directory of this executable.
  std::string binary;
  // Extra arguments after `--socket PATH` (e.g. {"--cpu-workers", "4"}).
  std::vector<std::string> args;
  // A command the daemon runs under, before `binary` (e.g. {"/usr/bin/prlimit",
  // "--fsize=4096"}); it must exec the daemon in its own process. Empty: none.
  std::vector<std::string> wrapper;
  // The directory of the socket (<dir>/taskrt.sock), of the daemon's log
  // (<dir>/taskrtd.log, appended to) and, by the daemon's default, of its state
  // (<dir>/taskrt.sock.state). Empty: a new directory /tmp/<temp_prefix>-XXXXXX that
  // Stop removes; a given one is the caller's and stays.
  std::string dir;
  // The name of the temporary directory when `dir` is empty.
  std::string temp_prefix = "taskrt-daemon";
  // How long Start and Restart wait for the daemon to answer a client.
  absl::Duration ready_timeout = absl::Seconds(10);
  // How long Stop waits after SIGTERM before SIGKILL.
  absl::Duration stop_timeout = absl::Seconds(5);
};

class DaemonProcess {
 public:
  // Spawns the daemon with `--socket <dir>/taskrt.sock` plus options.args (its stdout
  // and stderr go to the log) and waits until a client connects. Errors: NOT_FOUND
  // when the binary cannot be run; INTERNAL ("exited with code N during start-up")
  // when the daemon exits first; DEADLINE_EXCEEDED after ready_timeout. Every message
  // ends with the last lines of the daemon's log. On failure the process is reaped and
  // a temporary directory removed.
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(DaemonProcessOptions options);
  // Stops the daemon as Stop does, if it still runs.
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& log_path() const { return log_path_; }
  // The daemon's pid; 0 when it is not running (after Stop or Kill).
  pid_t pid() const;

  // SIGTERM, waitpid up to stop_timeout, then SIGKILL; removes a temporary directory.
  // An error when the daemon did not exit cleanly on SIGTERM (it is reaped either way).
  absl::Status Stop();
  // SIGKILL (kill -9) and waitpid; the directory, socket file and journal stay, as
  // after a crash. OK when the daemon was not running.
  absl::Status Kill();
  // Kills the daemon if it runs, then starts it again with the same options on the same
  // directory and waits as Start does. Not after Stop of a temporary directory.
  absl::Status Restart();

  // The last ~2000 bytes of the daemon's log, for error messages.
  std::string LogTail() const;

 private:
  DaemonProcess(DaemonProcessOptions options, std::string dir, bool own_dir);
  friend void StopRunningDaemons();
  // Spawns the daemon and waits until it answers; on failure it is reaped.
  absl::Status SpawnAndAwaitReady();
  absl::Status StopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(running_mu_);
  absl::Status KillLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(running_mu_);

  // Guards pid_ of every DaemonProcess and the list of the running ones, so that
  // StopRunningDaemons reaps each daemon and removes its directory exactly once.
  static internal::Mutex running_mu_;

  const DaemonProcessOptions options_;
  const std::string dir_;
  const bool own_dir_;  // dir_ is ours to remove
  const std::string socket_path_;
  const std::string log_path_;
  pid_t pid_ ABSL_GUARDED_BY(running_mu_) = 0;  // 0 when not running
};

// For an interrupted program: stops every running DaemonProcess as Stop does and
// removes their temporary directories. Callable from any thread; the caller is expected
// to exit right after, without touching the DaemonProcesses again.
void StopRunningDaemons();

}  // namespace taskrt::testing

#endif  // TASKRT_TESTS_TESTING_DAEMON_PROCESS_H_
