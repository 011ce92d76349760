#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/util.h"
#include "daemon/health_server.h"
#include "daemon/http_server.h"
#include "daemon/metrics.h"
#include "daemon/poller_keep_awake.h"
#include "daemon/service.h"
#include "daemon/service_notify.h"
#include "daemon/validation.h"
#include "daemon/worker_process.h"

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

// Whether `address` (HOST:PORT) is on loopback; INVALID_ARGUMENT when it is no address.
absl::StatusOr<bool> IsLoopback(const std::string& address, absl::string_view option) {
  ASSIGN_OR_RETURN(const HostPort parsed, ParseHostPort(address, option));
  return parsed.loopback;
}

// The socket's directory: created (0700, plus search permission for whom `socket_mode`
// lets in) when missing; else it must be a real directory owned by us or root that
// nobody else can write to (unless sticky, like /tmp), or another user could replace
// the socket and receive our clients' tasks.
absl::Status PrepareSocketDir(const std::string& dir, unsigned socket_mode) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    RETURN_IF_ERROR(MakePrivateDirs(dir));
    const mode_t search = ((socket_mode & 070) ? 010 : 0) | ((socket_mode & 07) ? 01 : 0);
    ::chmod(dir.c_str(), 0700 | search);
    return absl::OkStatus();
  }
  const uid_t me = ::geteuid();
  std::string problem;
  if (!S_ISDIR(st.st_mode)) {
    problem = S_ISLNK(st.st_mode) ? "is a symbolic link" : "is not a directory";
  } else if (st.st_uid != me && st.st_uid != 0) {
    problem = absl::StrCat("is owned by uid ", st.st_uid, ", not by you (uid ", me,
                           "): someone else may have created it to receive your tasks");
  } else if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0) {
    problem = absl::StrFormat(
        "can be written by others (mode %04o), so anyone could replace "
        "the socket",
        st.st_mode & 07777);
  }
  if (problem.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("refusing the socket directory ", dir, ": it ", problem,
                   ". Remove it if you did not create it, or choose another --socket "
                   "(or set XDG_RUNTIME_DIR)"));
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

// The status line systemd shows (`systemctl status taskrtd`).
std::string ServiceStatus(const QueueDepths& d) {
  return absl::StrCat(d.draining ? "draining" : "serving", "; ", d.queued, " queued, ", d.running,
                      " running");
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
        "socket path ", QuoteInput(options.socket_path), " is too long for a unix socket (",
        options.socket_path.size(), " bytes; the limit is 107): choose a shorter --socket"));
  }
  if (!options.tasks.id_prefix.empty()) {
    RETURN_IF_ERROR(ValidateIdPrefix(options.tasks.id_prefix));
  }
  if (options.tasks.cpu_workers < 1 || options.tasks.io_workers < 1 ||
      options.tasks.io_threads < 1) {
    return absl::InvalidArgumentError("--cpu-workers, --io-workers and --io-threads must be >= 1");
  }
  RaiseDescriptorLimit();
  std::unique_ptr<Daemon> d(new Daemon(std::move(options)));
  RETURN_IF_ERROR(d->PrepareAccess());
  const std::string& path = d->options_.socket_path;
  const auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    RETURN_IF_ERROR(PrepareSocketDir(path.substr(0, slash), d->options_.socket_mode));
  }
  auto lock = TakeLock(
      path + ".lock", absl::StrCat("serving ", path,
                                   ": stop it first, or start this one with a different --socket"));
  if (!lock.ok()) return lock.status();
  d->lock_fd_ = *lock;
  ::unlink(path.c_str());  // a stale socket of a daemon that died: we hold the lock

  if (d->options_.tasks.worker_path.empty()) d->options_.tasks.worker_path = DefaultWorkerPath();
  if (!d->options_.http.empty()) {
    d->metrics_ = std::make_unique<Metrics>(TASKRT_VERSION);
    d->options_.tasks.metrics = d->metrics_.get();
  }
  RETURN_IF_ERROR(d->OpenJournal());
  if (d->journal_ != nullptr && d->metrics_ != nullptr) {
    d->journal_->OnCommit([m = d->metrics_.get()](absl::Duration took, bool synced) {
      m->JournalCommitted(took, synced);
    });
  }
  d->options_.tasks.daemon_uid = ::geteuid();
  d->manager_ = std::make_unique<TaskManager>(d->options_.tasks);
  RETURN_IF_ERROR(d->manager_->Start());
  d->recovery_ = d->manager_->recovery();
  RETURN_IF_ERROR(d->StartHttp());  // first: GetStats reports its address
  RETURN_IF_ERROR(d->StartServer());
  if (d->options_.verbose) d->LogStart();
  return d;
}

absl::Status Daemon::StartHttp() {
  if (options_.http.empty()) return absl::OkStatus();
  HttpOptions http{options_.http, options_.tls_cert_file, options_.tls_key_file};
  HttpServer::Sources sources{manager_.get(), &tokens_, &policy_, metrics_.get()};
  ASSIGN_OR_RETURN(http_, HttpServer::Start(http, sources));
  return absl::OkStatus();
}

std::string Daemon::http_url() const { return http_ == nullptr ? "" : http_->url(); }

int Daemon::health_port() const { return health_ == nullptr ? 0 : health_->port(); }

// Checks the TCP addresses and TLS files, and loads the access rules and tokens.
absl::Status Daemon::PrepareAccess() {
  ASSIGN_OR_RETURN(policy_, AccessPolicy::Create(options_.access, ::geteuid()));
  const bool tls = !options_.tls_cert_file.empty() || !options_.tls_key_file.empty();
  if (tls && (options_.tls_cert_file.empty() || options_.tls_key_file.empty())) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!options_.tls_client_ca_file.empty() && !tls) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  for (const auto& addr : options_.listen) {
    ASSIGN_OR_RETURN(const bool loopback, IsLoopback(addr, "--listen"));
    if (!loopback && !tls) {
      return absl::InvalidArgumentError(
          absl::StrCat("--listen ", addr,
                       ": an address other than loopback needs TLS, or tokens and tasks "
                       "would cross the network in clear text: pass --tls-cert and --tls-key (and "
                       "--tls-client-ca for client certificates)"));
    }
  }
  if (options_.state_dir.empty()) {
    options_.state_dir = options_.socket_path == internal::PerUserSocketPath()
                             ? DefaultStateDir()
                             : options_.socket_path + ".state";
  }
  // Before any worker starts (HttpServer::Start checks it again for its own callers).
  if (!options_.http.empty()) RETURN_IF_ERROR(CheckHttpAddress(options_.http, tls));
  if (options_.listen.empty() && options_.http.empty()) return absl::OkStatus();
  if (options_.token_file.empty()) {
    absl::Status made = MakePrivateDirs(options_.state_dir);
    if (!made.ok())
      return absl::Status(made.code(), absl::StrCat("state directory: ", made.message()));
    RETURN_IF_ERROR(SecureStateDir(options_.state_dir));
    options_.token_file = options_.state_dir + "/token";
    ASSIGN_OR_RETURN(const bool created, TokenStore::CreateIfMissing(options_.token_file));
    if (created && options_.verbose) {
      std::fprintf(stderr, "taskrtd: created the token file %s for TCP and HTTP callers\n",
                   options_.token_file.c_str());
    }
  }
  ASSIGN_OR_RETURN(tokens_, TokenStore::Load(options_.token_file, ::geteuid()));
  return absl::OkStatus();
}

absl::Status Daemon::OpenJournal() {
  if (options_.durability == Durability::kNone) return absl::OkStatus();
  const std::string& dir = options_.state_dir;
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
  state_lock_fd_ = *state_lock;
  ASSIGN_OR_RETURN(journal_, Journal::Open(dir + "/journal.db", options_.durability));
  options_.tasks.journal = journal_.get();
  return absl::OkStatus();
}

static absl::StatusOr<std::string> ReadPem(const std::string& path, const char* option) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::FailedPreconditionError(absl::StrCat(option, " ", path, ": cannot read it"));
  }
  if (text.find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(option, " ", path, ": not a PEM file"));
  }
  return text;
}

static absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(
    const DaemonOptions& o) {
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.private_key, ReadPem(o.tls_key_file, "--tls-key"));
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(o.tls_cert_file, "--tls-cert"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!o.tls_client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(o.tls_client_ca_file, "--tls-client-ca"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::Status Daemon::StartServer() {
  CallerIdentity identity{&registry_, &policy_, options_.listen.empty() ? nullptr : &tokens_,
                          options_.watch_backlog_bytes};
  TaskServiceImpl::Endpoints endpoints{http_url(), options_.token_file};
  service_ = std::make_unique<TaskServiceImpl>(*manager_, identity, options_.stream_result_backlog,
                                               std::move(endpoints));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const bool tls = !options_.tls_cert_file.empty();
  std::vector<int> ports(options_.listen.size(), 0);
  if (tls) {  // gRPC's own TCP listener does TLS; ours cannot
    ASSIGN_OR_RETURN(auto creds, TlsCredentials(options_));
    for (size_t i = 0; i < options_.listen.size(); ++i) {
      builder.AddListeningPort(options_.listen[i], creds, &ports[i]);
    }
  }
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options_.idle_timeout > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(options_.idle_timeout)));
  }
  // A request larger than any valid one is refused from its length prefix, before the
  // daemon buffers it: one task's input plus room for a batch of small specs.
  const size_t max_request = options_.tasks.max_input_bytes + (4u << 20);
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<size_t>(max_request, INT32_MAX)));
  builder.SetMaxSendMessageSize(256 << 20);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot start the gRPC server",
                                               tls ? " (is a --listen address in use?)" : ""));
  }
  // Health answers for the whole server ("") and for the service by name, as gRPC
  // health checkers (and Kubernetes probes) ask for either.
  SetHealth(*server_, true);
  if (!options_.health_listen.empty()) {
    ASSIGN_OR_RETURN(health_, HealthServer::Start(options_.health_listen));
  }
  for (size_t i = 0; i < ports.size(); ++i) {
    if (tls && ports[i] == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.listen[i], " (in use?)"));
    }
  }
  ASSIGN_OR_RETURN(auto unix_listener, Listener::Unix(options_.socket_path, options_.socket_mode,
                                                      options_.connections));
  listeners_.push_back(std::move(unix_listener));
  for (size_t i = 0; !tls && i < options_.listen.size(); ++i) {
    ASSIGN_OR_RETURN(auto tcp, Listener::Tcp(options_.listen[i], options_.connections));
    ports[i] = tcp->port();
    listeners_.push_back(std::move(tcp));
  }
  for (auto& l : listeners_) l->Start(server_.get(), &registry_);
  tcp_ports_ = ports;
  keep_awake_ = std::make_unique<PollerKeepAwake>(*server_, kPollerKeepAwakePeriod);
  return absl::OkStatus();
}

void Daemon::LogStart() const {
  const auto& t = options_.tasks;
  const int pid = ::getpid();
  std::fprintf(stderr,
               "taskrtd[%d]: serving unix:%s — cpu pool: %d worker processes; io pool: %d "
               "worker process(es) x %d threads + async loop\n",
               pid, options_.socket_path.c_str(), t.cpu_workers, t.io_workers, t.io_threads);
  const v1::Stats stats = manager_->GetStats(Caller::Daemon());
  const bool python = std::any_of(stats.pools().begin(), stats.pools().end(),
                                  [](const v1::PoolInfo& p) { return p.name() == "python-cpu"; });
  if (python) {
    std::fprintf(stderr,
                 "taskrtd[%d]: python-cpu pool: %d worker processes; python-io pool: %d worker "
                 "process(es) x %d threads + asyncio loop; %s\n",
                 pid, t.python_cpu_workers, t.python_io_workers, t.python_io_threads,
                 stats.python().c_str());
  } else {
    std::fprintf(stderr, "taskrtd[%d]: Python workers %s\n", pid, stats.python().c_str());
  }
  const auto& r = recovery_;
  if (journal_ != nullptr) {
    std::fprintf(stderr,
                 "taskrtd[%d]: journal %s/journal.db: recovered %llu finished, %llu queued, "
                 "%llu re-run (were running), %llu failed (were running, no attempt left)\n",
                 pid, options_.state_dir.c_str(), static_cast<unsigned long long>(r.finished),
                 static_cast<unsigned long long>(r.requeued),
                 static_cast<unsigned long long>(r.rerun),
                 static_cast<unsigned long long>(r.failed));
  } else {
    std::fprintf(stderr, "taskrtd[%d]: --durability=none: tasks are kept in memory only\n", pid);
  }
  for (size_t i = 0; i < tcp_ports_.size(); ++i) {
    const std::string& addr = options_.listen[i];
    std::fprintf(stderr, "taskrtd[%d]: also serving %s:%d (TCP%s; callers need the token in %s)\n",
                 pid, addr.substr(0, addr.rfind(':')).c_str(), tcp_ports_[i],
                 options_.tls_cert_file.empty() ? "" : " with TLS", options_.token_file.c_str());
  }
  if (health_ != nullptr) {
    std::fprintf(stderr, "taskrtd[%d]: health (gRPC health service only, no TLS) on port %d\n", pid,
                 health_->port());
  }
  if (http_ != nullptr) {
    std::fprintf(stderr,
                 "taskrtd[%d]: http serving %s (/metrics, and the dashboard at /; callers need "
                 "the token in %s)\n",
                 pid, http_->url().c_str(), options_.token_file.c_str());
  }
}

void Daemon::Drain() {
  if (shut_down_ || !manager_) return Shutdown();
  // Probes see NOT_SERVING at once; clients of several daemons send new tasks elsewhere
  // (Submit says "not accepted": service.cc).
  if (server_) SetHealth(*server_, false);
  if (health_) health_->SetServing(false);
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
  if (http_) http_->Stop();
  if (health_) health_->Stop();
  keep_awake_.reset();
  for (auto& l : listeners_) l->Stop();
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
    if (!listeners_.empty()) ::unlink(options_.socket_path.c_str());
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

  // Declared before the daemon, whose ticker thread calls it. A no-op unless systemd
  // (or a test) set $NOTIFY_SOCKET.
  ServiceNotifier notifier;
  if (notifier.enabled()) {
    options.tasks.on_tick = [&notifier](const QueueDepths& d) { notifier.Tick(ServiceStatus(d)); };
    options.tasks.on_tick_ms = absl::ToInt64Milliseconds(notifier.tick_period());
  }
  const absl::Duration options_drain_timeout = options.drain_timeout;
  auto daemon = Daemon::Start(std::move(options));
  if (!daemon.ok()) {
    std::fprintf(stderr, "taskrtd: %s\n", std::string(daemon.status().message()).c_str());
    return 1;
  }
  // Start returned: the sockets listen and the journal's tasks are recovered.
  notifier.Ready(ServiceStatus((*daemon)->queue_depths()));
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
  QueueDepths depths = (*daemon)->queue_depths();
  depths.draining = true;
  notifier.Stopping(ServiceStatus(depths));
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
