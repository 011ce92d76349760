#include "daemon/worker_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/util.h"

extern char** environ;

namespace taskrt::daemon {

std::string DefaultWorkerPath() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "taskrt-worker";
  std::string exe(buf, static_cast<size_t>(n));
  const auto slash = exe.rfind('/');
  return absl::StrCat(exe.substr(0, slash + 1), "taskrt-worker");
}

absl::StatusOr<SpawnedWorker> SpawnWorker(const WorkerLaunch& launch) {
  if (::access(launch.worker_path.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("worker binary ", launch.worker_path,
                                                      " is not executable (", std::strerror(errno),
                                                      "): pass --worker-path"));
  }
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("socketpair: ", std::strerror(errno)));
  }
  // dup2(3, 3) would keep close-on-exec set: make sure the child's end is not fd 3.
  int child_fd = fds[1];
  if (child_fd == 3) {
    child_fd = ::fcntl(fds[1], F_DUPFD_CLOEXEC, 4);
    ::close(fds[1]);
  }
  std::vector<std::string> args = {launch.worker_path,           "--pool", launch.pool, "--threads",
                                   absl::StrCat(launch.threads), "--fd",   "3"};
  args.push_back("--max-output-bytes");
  args.push_back(
      absl::StrCat(std::clamp<size_t>(launch.max_output_bytes, 1, internal::kMaxOutputBytesLimit)));
  if (launch.memory_limit_bytes > 0) {
    args.push_back("--memory-limit");
    args.push_back(absl::StrCat(launch.memory_limit_bytes));
  }
  for (const auto& p : launch.plugins) {
    args.push_back("--plugin");
    args.push_back(p);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, child_fd, 3);
  posix_spawnattr_t attr;
  internal::InitCleanSpawnAttr(&attr);
  pid_t pid = -1;
  const int rc =
      ::posix_spawn(&pid, launch.worker_path.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(child_fd);
  if (rc != 0) {
    ::close(fds[0]);
    return absl::InternalError(
        absl::StrCat("cannot start ", launch.worker_path, ": ", std::strerror(rc)));
  }
  return SpawnedWorker{pid, fds[0]};
}

}  // namespace taskrt::daemon
