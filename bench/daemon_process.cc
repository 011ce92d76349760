#include "bench/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/util.h"
#include "taskrt/client.h"

extern char** environ;

namespace taskrt::bench {
namespace {

// The running DaemonProcesses (the benchmark may start a second one to compare), so
// StopRunningDaemon can reach them from another thread. Stop holds `running_mu`
// throughout, so each daemon is reaped and its directory removed exactly once.
std::mutex running_mu;
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

void StopRunningDaemon() {
  std::lock_guard<std::mutex> lock(running_mu);
  // StopLocked removes each from the list.
  while (!Running().empty()) Running().back()->StopLocked().IgnoreError();
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(
    const DaemonProcessOptions& options) {
  const std::string binary = options.binary.empty() ? DefaultBinary() : options.binary;
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "cannot run the daemon '", binary, "': ", std::strerror(errno),
        "; build it (cmake --build build --target taskrtd), pass --daemon PATH, or use "
        "--socket to measure a running daemon"));
  }
  std::string dir_template =
      (std::filesystem::temp_directory_path() / "taskrt-bench-XXXXXX").string();
  if (mkdtemp(dir_template.data()) == nullptr) {
    return absl::InternalError(ErrnoText("mkdtemp " + dir_template, errno));
  }
  // From here on the destructor of `daemon` stops the process and removes the directory.
  std::unique_ptr<DaemonProcess> daemon(new DaemonProcess(0, dir_template, options.stop_timeout));

  std::vector<std::string> args = {binary, "--socket", daemon->socket_path_};
  args.insert(args.end(), options.args.begin(), options.args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, daemon->log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  // The daemon starts with default signal handling and nothing blocked, whatever this
  // process did (it blocks SIGINT/SIGTERM for its signal thread and ignores SIGPIPE).
  posix_spawnattr_t attr;
  internal::InitCleanSpawnAttr(&attr);
  pid_t pid = 0;
  int err;
  {
    std::lock_guard<std::mutex> lock(running_mu);
    err = posix_spawn(&pid, binary.c_str(), &actions, &attr, argv.data(), environ);
    if (err == 0) {
      daemon->pid_ = pid;
      Running().push_back(daemon.get());
    }
  }
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return absl::InternalError(ErrnoText("posix_spawn " + binary, err));

  // Ready when a client gets an answer; bounded by ready_timeout, and cut short if the
  // daemon exits (bad option, socket in use, ...).
  ClientOptions client_options;
  client_options.socket_path = daemon->socket_path_;
  client_options.connect_timeout = absl::Milliseconds(500);
  const absl::Time deadline = absl::Now() + options.ready_timeout;
  absl::Status last = absl::UnavailableError("not tried");
  while (absl::Now() < deadline) {
    int status = 0;
    bool exited;
    {
      std::lock_guard<std::mutex> lock(running_mu);
      exited = daemon->pid_ > 0 && TryReap(pid, &status);
      if (exited) daemon->pid_ = 0;
    }
    if (exited) {
      return absl::InternalError(absl::StrCat("the daemon (", absl::StrJoin(args, " "), ") ",
                                              DescribeExit(status), " during start-up:\n",
                                              daemon->LogTail()));
    }
    if (std::filesystem::exists(daemon->socket_path_)) {
      auto client = Client::Connect(client_options);
      if (client.ok()) return daemon;
      last = client.status();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the daemon did not answer on ", daemon->socket_path_, " within ",
                   absl::FormatDuration(options.ready_timeout), " (last: ", last.ToString(), "):\n",
                   daemon->LogTail()));
}

DaemonProcess::DaemonProcess(pid_t pid, std::string dir, absl::Duration stop_timeout)
    : pid_(pid),
      dir_(std::move(dir)),
      socket_path_(dir_ + "/taskrt.sock"),
      log_path_(dir_ + "/taskrtd.log"),
      stop_timeout_(stop_timeout) {}

DaemonProcess::~DaemonProcess() { Stop().IgnoreError(); }

absl::Status DaemonProcess::Stop() {
  std::lock_guard<std::mutex> lock(running_mu);
  return StopLocked();
}

absl::Status DaemonProcess::StopLocked() {
  std::vector<DaemonProcess*>& running = Running();
  running.erase(std::remove(running.begin(), running.end(), this), running.end());
  absl::Status result;
  if (pid_ > 0) {
    int status = 0;
    kill(pid_, SIGTERM);
    if (!ReapWithin(pid_, stop_timeout_, &status)) {
      kill(pid_, SIGKILL);
      ReapWithin(pid_, absl::Seconds(5), &status);
      result = absl::DeadlineExceededError(absl::StrCat("the daemon ignored SIGTERM for ",
                                                        absl::FormatDuration(stop_timeout_),
                                                        " and was killed"));
    } else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
               !(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)) {
      result = absl::InternalError(
          absl::StrCat("the daemon ", DescribeExit(status), " on SIGTERM:\n", LogTail()));
    }
    pid_ = 0;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  return result;
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

}  // namespace taskrt::bench
