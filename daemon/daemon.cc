#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/util.h"
#include "daemon/poller_keep_awake.h"
#include "daemon/service.h"

namespace taskrt::daemon {
namespace {

// Well within the 1 s after which an idle gRPC polling thread pauses (poller_keep_awake.h).
constexpr absl::Duration kPollerKeepAwakePeriod = absl::Milliseconds(250);

// Creates `dir` and missing parents with mode 0700.
absl::Status MakePrivateDirs(const std::string& dir) {
  if (dir.empty()) return absl::OkStatus();
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(dir, " exists and is not a directory"));
    }
    return absl::OkStatus();
  }
  const auto slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    RETURN_IF_ERROR(MakePrivateDirs(dir.substr(0, slash)));
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create directory ", dir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status CheckLoopback(const std::string& address) {
  const auto colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", address, ": expected HOST:PORT, e.g. 127.0.0.1:7070"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") return absl::OkStatus();
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127) {
    return absl::OkStatus();
  }
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--listen ", address,
      ": only loopback addresses (127.0.0.0/8, ::1, localhost) are "
      "served: TCP has no TLS or authentication yet; use the unix socket for anything else"));
}

// Takes an exclusive flock on `path` (created 0600) and writes our pid into it.
// ALREADY_EXISTS, naming the holder, when another process has it.
absl::StatusOr<int> TakeLock(const std::string& path, const std::string& what) {
  // 0600 whatever the umask, also for a lock file an earlier version left.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    if (fd >= 0) ::close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open lock file ", path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    ::close(fd);
    return absl::AlreadyExistsError(
        absl::StrCat("another taskrtd (pid ", pid, ") is already ", what));
  }
  const std::string pid_text = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid_text.data(), pid_text.size(), 0) < 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return fd;
}

std::string DefaultStateDir() {
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && *xdg == '/') {
    return absl::StrCat(xdg, "/taskrt");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') {
    return absl::StrCat(home, "/.local/state/taskrt");
  }
  return absl::StrCat("/tmp/taskrt-", ::getuid(), "/state");
}

// The per-user socket path, ignoring $TASKRT_SOCKET.
std::string PerUserSocketPath() {
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/taskrt/taskrt.sock");
  }
  return absl::StrCat("/tmp/taskrt-", ::getuid(), "/taskrt.sock");
}

}  // namespace

Daemon::Daemon(DaemonOptions options) : options_(std::move(options)) {}

Daemon::~Daemon() {
  Shutdown();
  server_.reset();
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions options) {
  if (options.socket_path.empty()) options.socket_path = internal::DefaultSocketPath();
  if (options.socket_path.size() >= 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path ", options.socket_path, " is too long for a unix socket (",
        options.socket_path.size(), " bytes; the limit is 107): choose a shorter --socket"));
  }
  for (const auto& addr : options.listen) RETURN_IF_ERROR(CheckLoopback(addr));
  if (options.tasks.cpu_workers < 1 || options.tasks.io_workers < 1 ||
      options.tasks.io_threads < 1) {
    return absl::InvalidArgumentError("--cpu-workers, --io-workers and --io-threads must be >= 1");
  }
  std::unique_ptr<Daemon> d(new Daemon(std::move(options)));
  const std::string& path = d->options_.socket_path;
  const auto slash = path.rfind('/');
  if (slash != std::string::npos) RETURN_IF_ERROR(MakePrivateDirs(path.substr(0, slash)));

  auto lock = TakeLock(
      path + ".lock", absl::StrCat("serving ", path,
                                   ": stop it first, or start this one with a different --socket"));
  if (!lock.ok()) return lock.status();
  d->lock_fd_ = *lock;
  ::unlink(path.c_str());  // a stale socket of a daemon that died: we hold the lock

  if (d->options_.tasks.worker_path.empty()) d->options_.tasks.worker_path = DefaultWorkerPath();
  if (d->options_.durability != Durability::kNone) {
    std::string& dir = d->options_.state_dir;
    if (dir.empty()) dir = path == PerUserSocketPath() ? DefaultStateDir() : path + ".state";
    absl::Status made = MakePrivateDirs(dir);
    if (!made.ok()) {
      return absl::Status(made.code(), absl::StrCat("state directory: ", made.message(),
                                                    " (choose another with --state-dir)"));
    }
    if (::access(dir.c_str(), W_OK) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("state directory ", dir, " is not writable (", std::strerror(errno),
                       "): fix its permissions or choose another with --state-dir"));
    }
    RETURN_IF_ERROR(SecureStateDir(dir));  // private before journal.lock is created in it
    auto state_lock = TakeLock(
        dir + "/journal.lock",
        absl::StrCat("using the state directory ", dir, ": give each daemon its own --state-dir"));
    if (!state_lock.ok()) return state_lock.status();
    d->state_lock_fd_ = *state_lock;
    ASSIGN_OR_RETURN(d->journal_, Journal::Open(dir + "/journal.db", d->options_.durability));
    d->options_.tasks.journal = d->journal_.get();
  }
  d->manager_ = std::make_unique<TaskManager>(d->options_.tasks);
  RETURN_IF_ERROR(d->manager_->Start());
  d->recovery_ = d->manager_->recovery();

  d->service_ = std::make_unique<TaskServiceImpl>(*d->manager_, d->options_.stream_result_backlog);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", path), grpc::InsecureServerCredentials());
  std::vector<int> ports(d->options_.listen.size(), 0);
  for (size_t i = 0; i < d->options_.listen.size(); ++i) {
    builder.AddListeningPort(d->options_.listen[i], grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.SetMaxSendMessageSize(256 << 20);
  builder.RegisterService(d->service_.get());
  // The socket is created by BuildAndStart with the process umask.
  const mode_t old_mask = ::umask(0777 & ~d->options_.socket_mode);
  d->server_ = builder.BuildAndStart();
  ::umask(old_mask);
  if (d->server_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix:", path,
                     d->options_.listen.empty() ? "" : " or a --listen address (in use?)"));
  }
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i] == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", d->options_.listen[i], " (in use?)"));
    }
  }
  d->tcp_ports_ = ports;
  d->keep_awake_ = std::make_unique<PollerKeepAwake>(*d->server_, kPollerKeepAwakePeriod);
  ::chmod(path.c_str(), d->options_.socket_mode);
  if (d->options_.verbose) {
    const auto& t = d->options_.tasks;
    std::fprintf(stderr,
                 "taskrtd[%d]: serving unix:%s — cpu pool: %d worker processes; io pool: %d "
                 "worker process(es) x %d threads + async loop\n",
                 ::getpid(), path.c_str(), t.cpu_workers, t.io_workers, t.io_threads);
    const auto& r = d->recovery_;
    if (d->journal_ != nullptr) {
      std::fprintf(
          stderr,
          "taskrtd[%d]: journal %s/journal.db: recovered %llu finished, %llu queued, "
          "%llu re-run (were running), %llu failed (were running, no attempt left)\n",
          ::getpid(), d->options_.state_dir.c_str(), static_cast<unsigned long long>(r.finished),
          static_cast<unsigned long long>(r.requeued), static_cast<unsigned long long>(r.rerun),
          static_cast<unsigned long long>(r.failed));
    } else {
      std::fprintf(stderr, "taskrtd[%d]: --durability=none: tasks are kept in memory only\n",
                   ::getpid());
    }
    for (size_t i = 0; i < ports.size(); ++i) {
      const std::string& addr = d->options_.listen[i];
      std::fprintf(stderr, "taskrtd[%d]: also serving %s:%d (TCP)\n", ::getpid(),
                   addr.substr(0, addr.rfind(':')).c_str(), ports[i]);
    }
  }
  return d;
}

void Daemon::Drain() {
  if (shut_down_ || !manager_) return Shutdown();
  const size_t left = manager_->Drain(options_.drain_timeout);
  if (options_.verbose && left > 0) {
    std::fprintf(stderr,
                 "taskrtd: %zu task(s) still running after the drain timeout of %s: stopping "
                 "them; they are re-run or failed at the next start\n",
                 left, absl::FormatDuration(options_.drain_timeout).c_str());
  }
  Shutdown();
}

void Daemon::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  keep_awake_.reset();
  if (manager_) manager_->Stop();
  if (server_) {
    // Submits waiting for the journal still complete: its writer runs until Close.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  if (journal_) journal_->Close();
  manager_.reset();
  journal_.reset();
  if (state_lock_fd_ >= 0) {
    ::close(state_lock_fd_);
    state_lock_fd_ = -1;
  }
  if (lock_fd_ >= 0) {
    if (server_) ::unlink(options_.socket_path.c_str());
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  // The stopped server is destroyed with the Daemon: destroying the last one runs
  // gRPC's global teardown, which taskrtd skips at exit (see RunDaemon).
}

int RunDaemon(DaemonOptions options) {
  // Block the stop signals in every thread (threads inherit the mask) and take them
  // with sigwait below. Workers are spawned with an empty mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // A file-size limit must surface as a journal write error, not kill the daemon.
  ::signal(SIGXFSZ, SIG_IGN);

  const absl::Duration options_drain_timeout = options.drain_timeout;
  auto daemon = Daemon::Start(std::move(options));
  if (!daemon.ok()) {
    std::fprintf(stderr, "taskrtd: %s\n", std::string(daemon.status().message()).c_str());
    return 1;
  }
  while (true) {
    int sig = 0;
    if (::sigwait(&stop_signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      std::fprintf(stderr,
                   "taskrtd: SIGHUP ignored: configuration reload is not supported yet; "
                   "restart the daemon to change options\n");
      continue;
    }
    std::fprintf(stderr,
                 "taskrtd: %s received: draining (no new tasks; running ones may finish "
                 "for up to %s; queued ones stay in the journal)\n",
                 internal::SignalName(sig).c_str(),
                 absl::FormatDuration(options_drain_timeout).c_str());
    break;
  }
  (*daemon)->Drain();
  // Drained: the journal is closed, the workers are stopped and the socket is gone.
  // Exit without destroying the gRPC server: its destructor runs gRPC's global
  // teardown, which joins gRPC's executor threads, and one of them can sit in a poll
  // of up to ~10 s (seen with gdb: grpc_shutdown -> Executor::ShutdownAll, the thread
  // in epoll_wait), so about one SIGTERM in eight took 10 s to take effect.
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace taskrt::daemon
