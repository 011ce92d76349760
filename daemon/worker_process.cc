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
#include "absl/strings/str_join.h"
#include "common/util.h"

extern char** environ;

namespace taskrt::daemon {

namespace {

std::string ExeDir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string exe(buf, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/') + 1);
}

// The environment of a Python worker: ours, with `python_path` first in PYTHONPATH and
// unbuffered output (its stderr lines reach the daemon's log as they happen).
std::vector<std::string> PythonEnvironment(const std::string& python_path) {
  std::vector<std::string> env;
  std::string pythonpath = python_path;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (entry.substr(0, 11) == "PYTHONPATH=") {
      const std::string_view old = entry.substr(11);
      if (!old.empty()) {
        pythonpath =
            pythonpath.empty() ? std::string(old) : absl::StrCat(pythonpath, ":", std::string(old));
      }
    } else if (entry.substr(0, 17) != "PYTHONUNBUFFERED=") {
      env.emplace_back(entry);
    }
  }
  if (!pythonpath.empty()) env.push_back(absl::StrCat("PYTHONPATH=", pythonpath));
  env.push_back("PYTHONUNBUFFERED=1");
  return env;
}

}  // namespace

std::vector<std::string> WorkerPathCandidates() {
  const std::string dir = ExeDir();
  if (dir.empty()) return {"taskrt-worker"};
  return {absl::StrCat(dir, "taskrt-worker"), absl::StrCat(dir, "../libexec/taskrt/taskrt-worker")};
}

absl::StatusOr<std::string> FindWorkerBinary() {
  const std::vector<std::string> candidates = WorkerPathCandidates();
  for (const std::string& path : candidates) {
    if (::access(path.c_str(), X_OK) == 0) {
      char resolved[PATH_MAX];
      return ::realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : path;
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "cannot find the taskrt-worker binary: tried ", absl::StrJoin(candidates, " and "),
      " (none is an executable file); install it there or pass --worker-path"));
}

std::string DefaultWorkerPath() {
  auto found = FindWorkerBinary();
  return found.ok() ? *found : WorkerPathCandidates().front();
}

std::string DefaultPythonPath() {
  const std::string dir = ExeDir();
  if (dir.empty()) return "";
  const std::string candidate = absl::StrCat(dir, "../python");
  if (::access(absl::StrCat(candidate, "/taskrt/_worker.py").c_str(), R_OK) != 0) return "";
  char resolved[PATH_MAX];
  return ::realpath(candidate.c_str(), resolved) != nullptr ? std::string(resolved) : candidate;
}

absl::StatusOr<SpawnedWorker> SpawnWorker(const WorkerLaunch& launch) {
  const bool python = !launch.python.empty();
  const std::string& program = python ? launch.python : launch.worker_path;
  if (::access(program.c_str(), X_OK) != 0) {
    if (python) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the Python interpreter ", program, " is not executable (", std::strerror(errno),
          "): pass --python PATH (e.g. a venv's bin/python), or --python '' for no Python"));
    }
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
  std::vector<std::string> args;
  if (python)
    args = {program, "-m", "taskrt._worker"};
  else
    args = {program};
  for (std::string a : {std::string("--pool"), launch.pool, std::string("--threads"),
                        absl::StrCat(launch.threads), std::string("--fd"), std::string("3")}) {
    args.push_back(std::move(a));
  }
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
  for (const auto& m : launch.python_modules) {
    args.push_back("--module");
    args.push_back(m);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  if (python) {
    env_strings = PythonEnvironment(launch.python_path);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, child_fd, 3);
  posix_spawnattr_t attr;
  internal::InitCleanSpawnAttr(&attr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(),
                               python ? envp.data() : environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(child_fd);
  if (rc != 0) {
    ::close(fds[0]);
    return absl::InternalError(absl::StrCat("cannot start ", program, ": ", std::strerror(rc)));
  }
  return SpawnedWorker{pid, fds[0]};
}

}  // namespace taskrt::daemon
