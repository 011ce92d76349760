#include "tests/testing/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/util.h"
#include "taskrt/client.h"

extern char** environ;

namespace taskrt::testing {
namespace {

// The running DaemonProcesses (a caller may start several), for StopRunningDaemons.
std::vector<DaemonProcess*>& Running() {
  static auto* running = new std::vector<DaemonProcess*>();
  return *running;
}

std::string DefaultBinary() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "taskrtd";
  return (self.parent_path() / "taskrtd").string();
}

std::string ErrnoText(const std::string& what, int err) {
  return absl::StrCat(what, ": ", std::strerror(err));
}

// Reaps `pid` if it exited; true (and *status set) once it has.
bool TryReap(pid_t pid, int* status) {
  while (true) {
    const pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r == -1 && errno == EINTR) continue;
    // r == -1 otherwise (ECHILD): someone else reaped it; treat as gone.
    if (r == -1) {
      *status = 0;
      return true;
    }
    return false;
  }
}

// Waits up to `timeout` for `pid` to exit.
bool ReapWithin(pid_t pid, absl::Duration timeout, int* status) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (TryReap(pid, status)) return true;
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return "stopped";
}

}  // namespace

internal::Mutex DaemonProcess::running_mu_;

void StopRunningDaemons() {
  internal::MutexLock lock(&DaemonProcess::running_mu_);
  // StopLocked removes each from the list.
  while (!Running().empty()) Running().back()->StopLocked().IgnoreError();
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(DaemonProcessOptions options) {
  if (options.binary.empty()) options.binary = DefaultBinary();
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("cannot run the daemon '", options.binary,
                                            "': ", std::strerror(errno),
                                            "; build it (cmake --build build --target taskrtd) "
                                            "or name another binary"));
  }
  std::string dir = options.dir;
  const bool own_dir = dir.empty();
  if (own_dir) {
    dir = (std::filesystem::temp_directory_path() / (options.temp_prefix + "-XXXXXX")).string();
    if (mkdtemp(dir.data()) == nullptr) {
      return absl::InternalError(ErrnoText("mkdtemp " + dir, errno));
    }
  }
  // From here on the destructor of `daemon` stops the process and removes the directory.
  std::unique_ptr<DaemonProcess> daemon(new DaemonProcess(std::move(options), dir, own_dir));
  RETURN_IF_ERROR(daemon->SpawnAndAwaitReady());
  return daemon;
}

DaemonProcess::DaemonProcess(DaemonProcessOptions options, std::string dir, bool own_dir)
    : options_(std::move(options)),
      dir_(std::move(dir)),
      own_dir_(own_dir),
      socket_path_(dir_ + "/taskrt.sock"),
      log_path_(dir_ + "/taskrtd.log") {}

DaemonProcess::~DaemonProcess() { Stop().IgnoreError(); }

pid_t DaemonProcess::pid() const {
  internal::MutexLock lock(&running_mu_);
  return pid_;
}

absl::Status DaemonProcess::SpawnAndAwaitReady() {
  std::vector<std::string> args = options_.wrapper;
  args.insert(args.end(), {options_.binary, "--socket", socket_path_});
  args.insert(args.end(), options_.args.begin(), options_.args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  // The daemon starts with default signal handling and nothing blocked, whatever this
  // process did (a benchmark blocks SIGINT/SIGTERM for its signal thread).
  posix_spawnattr_t attr;
  internal::InitCleanSpawnAttr(&attr);
  pid_t pid = 0;
  int err;
  {
    internal::MutexLock lock(&running_mu_);
    err = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
    if (err == 0) {
      pid_ = pid;
      Running().push_back(this);
    }
  }
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return absl::InternalError(ErrnoText("posix_spawn " + args[0], err));

  // Ready when a client gets an answer; bounded by ready_timeout, and cut short if the
  // daemon exits (bad option, socket in use, unwritable journal, ...).
  ClientOptions client_options;
  client_options.socket_path = socket_path_;
  client_options.connect_timeout = absl::Milliseconds(500);
  const absl::Time deadline = absl::Now() + options_.ready_timeout;
  absl::Status last = absl::UnavailableError("not tried");
  while (absl::Now() < deadline) {
    int status = 0;
    bool exited;
    {
      internal::MutexLock lock(&running_mu_);
      exited = pid_ > 0 && TryReap(pid, &status);
      if (exited) {
        pid_ = 0;
        Running().erase(std::remove(Running().begin(), Running().end(), this), Running().end());
      }
    }
    if (exited) {
      return absl::InternalError(absl::StrCat("the daemon (", absl::StrJoin(args, " "), ") ",
                                              DescribeExit(status), " during start-up:\n",
                                              LogTail()));
    }
    if (std::filesystem::exists(socket_path_)) {
      auto client = Client::Connect(client_options);
      if (client.ok()) return absl::OkStatus();
      last = client.status();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const absl::Status killed = Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("the daemon did not answer on ", socket_path_, " within ",
                   absl::FormatDuration(options_.ready_timeout), " (last: ", last.ToString(),
                   killed.ok() ? "" : "; " + killed.ToString(), "):\n", LogTail()));
}

absl::Status DaemonProcess::Stop() {
  internal::MutexLock lock(&running_mu_);
  return StopLocked();
}

absl::Status DaemonProcess::StopLocked() {
  std::vector<DaemonProcess*>& running = Running();
  running.erase(std::remove(running.begin(), running.end(), this), running.end());
  absl::Status result;
  if (pid_ > 0) {
    int status = 0;
    kill(pid_, SIGTERM);
    if (!ReapWithin(pid_, options_.stop_timeout, &status)) {
      kill(pid_, SIGKILL);
      ReapWithin(pid_, absl::Seconds(5), &status);
      result = absl::DeadlineExceededError(absl::StrCat("the daemon ignored SIGTERM for ",
                                                        absl::FormatDuration(options_.stop_timeout),
                                                        " and was killed"));
    } else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
               !(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)) {
      result = absl::InternalError(
          absl::StrCat("the daemon ", DescribeExit(status), " on SIGTERM:\n", LogTail()));
    }
    pid_ = 0;
  }
  if (own_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  return result;
}

absl::Status DaemonProcess::Kill() {
  internal::MutexLock lock(&running_mu_);
  return KillLocked();
}

absl::Status DaemonProcess::KillLocked() {
  std::vector<DaemonProcess*>& running = Running();
  running.erase(std::remove(running.begin(), running.end(), this), running.end());
  if (pid_ <= 0) return absl::OkStatus();
  int status = 0;
  ::kill(pid_, SIGKILL);
  const bool reaped = ReapWithin(pid_, absl::Seconds(10), &status);
  const pid_t pid = pid_;
  pid_ = 0;
  if (!reaped) {
    return absl::InternalError(absl::StrCat("the daemon (pid ", pid, ") outlived SIGKILL"));
  }
  return absl::OkStatus();
}

absl::Status DaemonProcess::Restart() {
  RETURN_IF_ERROR(Kill());
  if (own_dir_ && !std::filesystem::exists(dir_)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot restart the daemon: its directory ", dir_,
                     " was removed by Stop; Kill it instead to restart it on the same state"));
  }
  return SpawnAndAwaitReady();
}

std::string DaemonProcess::LogTail() const {
  constexpr size_t kTailBytes = 2000;
  std::ifstream in(log_path_, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  if (text.size() > kTailBytes) text = "..." + text.substr(text.size() - kTailBytes);
  return text.empty() ? "(the daemon's log is empty)" : text;
}

}  // namespace taskrt::testing
