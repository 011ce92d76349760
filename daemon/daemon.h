// taskrtd as a library: RunDaemon for main(), Daemon for tests that start one
// in-process on a temporary socket.
#ifndef TASKRT_DAEMON_DAEMON_H_
#define TASKRT_DAEMON_DAEMON_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/access.h"
#include "daemon/listener.h"
#include "daemon/task_manager.h"

namespace grpc {
class Server;
}

namespace taskrt::daemon {

struct DaemonOptions {
  // Unix socket to serve on. Empty: the default path (see taskrt::DefaultSocketPath).
  std::string socket_path;
  // Permission bits of the socket. Its directory is created when missing, 0700 (plus
  // search permission for the classes the socket mode lets in); an existing one must be
  // ours (or root's) and not writable by others unless sticky.
  unsigned socket_mode = 0600;
  // Extra TCP addresses ("127.0.0.1:7070"). Every TCP call needs a bearer token; an
  // address that is not loopback also needs TLS (tls_cert_file/tls_key_file).
  std::vector<std::string> listen;
  // Tokens of TCP callers (see TokenStore). Empty: <state_dir>/token, created with one
  // random token at the first start with a TCP listener.
  std::string token_file;
  // TLS for every TCP listener (PEM files). With tls_client_ca_file, clients must also
  // present a certificate signed by that CA (mutual TLS).
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;
  // HOST:PORT of the HTTP endpoint (/metrics, the dashboard; daemon/http_server.h).
  // Empty: none. Its callers need a token like TCP callers; off loopback, TLS (the
  // tls_cert_file/tls_key_file above).
  std::string http;
  // HOST:PORT of a plaintext listener serving only the gRPC health service (for
  // Kubernetes' gRPC probes; daemon/health_server.h). Empty: none.
  std::string health_listen;
  AccessOptions access;
  ListenerOptions connections;
  // A connection with no call for this long is closed (the client reconnects when it
  // needs to). 0: never.
  absl::Duration idle_timeout = absl::Minutes(10);
  // A Watch whose client reads slower than events come is ended once this many bytes
  // of events wait for it.
  size_t watch_backlog_bytes = 8u << 20;
  TaskManagerOptions tasks;
  // Where the journal lives. Empty: $XDG_STATE_HOME/taskrt (or ~/.local/state/taskrt)
  // for the per-user default socket, else "<socket path>.state".
  std::string state_dir;
  Durability durability = Durability::kFull;
  // How long SIGTERM waits for running tasks before stopping anyway.
  absl::Duration drain_timeout = absl::Seconds(30);
  bool verbose = true;  // log start-up and shutdown to stderr
  // A Stream call stops reading new batches while this many results wait for its
  // client to read them (and reads on at half of it). With 50,000, a client that never
  // read got 148,000-177,000 tasks in and held 213-248 MiB of the daemon; with 10,000,
  // 66,000 tasks and 96 MiB, and no throughput or sleep figure changed
  // (bench/ unread_stream_memory, noop_throughput, sleep_100000).
  int stream_result_backlog = 10000;
};

class TaskServiceImpl;
class PollerKeepAwake;
class HttpServer;
class HealthServer;
class Metrics;

// A running daemon. Thread-safety: Shutdown may be called from any one thread.
class Daemon {
 public:
  // Takes the socket's lock file (a second daemon on the same path is refused), starts
  // the workers and the gRPC server. Errors say what failed and what to do.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(DaemonOptions options);
  ~Daemon();

  // Refuses new work, fails pending waits with UNAVAILABLE, stops the workers and the
  // server, removes the socket. Idempotent. Tasks still running stay RUNNING in the
  // journal and are recovered by the next start.
  void Shutdown();
  // Graceful stop: refuses new submits, starts nothing new, lets running tasks finish
  // for up to options.drain_timeout, then Shutdown. Queued tasks stay in the journal.
  void Drain();
  // The task manager's queue depths (before Shutdown).
  QueueDepths queue_depths() { return manager_->Depths(); }
  const std::string& state_dir() const { return options_.state_dir; }
  TaskManager::Recovery recovery() const { return recovery_; }
  const std::string& socket_path() const { return options_.socket_path; }
  // The TCP ports bound for options.listen, in order (useful with port 0).
  const std::vector<int>& tcp_ports() const { return tcp_ports_; }
  // The token file TCP callers need (empty without a TCP listener).
  const std::string& token_file() const { return options_.token_file; }
  // The HTTP endpoint's address, "http://127.0.0.1:PORT" (empty without options.http).
  std::string http_url() const;
  // The port of options.health_listen (0 without it).
  int health_port() const;

 private:
  explicit Daemon(DaemonOptions options);

  DaemonOptions options_;
  int lock_fd_ = -1;
  int state_lock_fd_ = -1;
  absl::Status OpenJournal();
  absl::Status PrepareAccess();
  absl::Status StartServer();
  void LogStart() const;

  absl::Status StartHttp();

  std::unique_ptr<Metrics> metrics_;  // with options.http only
  std::unique_ptr<Journal> journal_;
  AccessPolicy policy_;
  TokenStore tokens_;
  ConnectionRegistry registry_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  TaskManager::Recovery recovery_;
  std::unique_ptr<TaskManager> manager_;
  std::unique_ptr<TaskServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<PollerKeepAwake> keep_awake_;  // stops before server_ does
  std::unique_ptr<HttpServer> http_;             // stops first
  std::unique_ptr<HealthServer> health_;
  std::vector<int> tcp_ports_;
  bool shut_down_ = false;
};

// Runs the daemon until SIGINT or SIGTERM. Returns the process exit code.
int RunDaemon(DaemonOptions options);

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_DAEMON_H_
