// File: taskrt/client.h
//
// The C++ client SDK of taskrt: submit tasks to a running taskrtd, wait for their
// results (blocking, callback or future), and read where and why each one ran.
//
// Example:
//   auto client = taskrt::Client::Connect();          // finds the daemon's socket
//   if (!client.ok()) { ... client.status().message() says how to start taskrtd ... }
//   auto task = (*client)->Run(taskrt::MakeTask("math.primes", R"({"below":100000})"));
//   if (task.ok()) std::cout << taskrt::ExplainDecision(*task);
//
// Errors: every call returns absl::Status / absl::StatusOr with the daemon's canonical
// code and message (INVALID_ARGUMENT for a bad task, NOT_FOUND for an unknown id,
// UNAVAILABLE when the daemon is not running, DEADLINE_EXCEEDED when a wait gives up).
// Thread-safety: a Client may be shared by many threads. No callback runs on a gRPC
// thread: RunStream's `on_result` and Watch's `on_event` run on the thread that called
// them, before the call returns; WaitAsync's `done` (and so WaitFuture's result) runs on
// the client's one completion thread, where a slow `done` delays every other
// asynchronous wait of that Client.
#ifndef TASKRT_CLIENT_H_
#define TASKRT_CLIENT_H_

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "taskrt/v1/service.pb.h"
#include "taskrt/v1/task.pb.h"

namespace taskrt {

// The socket path a daemon started without --socket listens on, and the one a client
// uses without options: $TASKRT_SOCKET, else $XDG_RUNTIME_DIR/taskrt/taskrt.sock, else
// /tmp/taskrt-<uid>/taskrt.sock.
std::string DefaultSocketPath();

// Security. A unix socket needs no credentials (the daemon knows the caller's uid), and
// before connecting to one the client refuses a socket that someone else may have put
// there: the socket and its directory must belong to the caller or root (or, for the
// system service's /run/taskrt/taskrt.sock, to the service's user), and the directory
// must not be writable by other users. The error is PERMISSION_DENIED, saying what to
// remove. A TCP target needs the daemon's token, sent on every call as the metadata
// "authorization: Bearer <token>"; without one the daemon answers UNAUTHENTICATED, and
// the message says where the token is. The token is never sent over a unix socket, nor
// in clear text to a host that is not loopback: Connect refuses that (INVALID_ARGUMENT)
// unless TLS is on.
struct ClientOptions {
  // Unix socket of the daemon. Empty: DefaultSocketPath(), or the system service's
  // /run/taskrt/taskrt.sock when that does not exist and TASKRT_SOCKET is unset.
  std::string socket_path;
  // A gRPC target ("127.0.0.1:7070", "unix:/path"); overrides socket_path when set.
  // Empty: use socket_path. A cluster target names several daemons: a list
  // "ipv4:10.0.0.1:7070,10.0.0.2:7070" or a DNS name "dns:///taskrt.ns.svc:7070" (each
  // address it resolves to is a daemon). The client then connects to each, spreads new
  // tasks over them, sends every id to the daemon that owns it and every idempotency
  // key to one owner (docs/CLUSTER.md). Connect succeeds when one daemon answers.
  std::string target;
  // How a cluster target's new tasks (without an idempotency key) are spread:
  // kLeastLoaded sends each to the daemon with the fewest tasks queued or running, as
  // the daemons last reported; kRoundRobin takes them in turn.
  enum class Spread { kLeastLoaded, kRoundRobin };
  Spread spread = Spread::kLeastLoaded;

  // The daemon's bearer token, for TCP targets. Empty: read token_file; else
  // $TASKRT_TOKEN (the token itself); else the file $TASKRT_TOKEN_FILE; else no token.
  std::string token;
  // A file holding the token (the daemon writes <state-dir>/token), read once by
  // Connect, surrounding whitespace trimmed. Refused (INVALID_ARGUMENT) when unreadable
  // or readable by group or others (`chmod 600` it). Empty: see `token`.
  std::string token_file;
  // TLS for TCP targets, with the system's root certificates unless tls_ca_file is set.
  // Default false; implied by any of the tls_* files below.
  bool tls = false;
  // PEM root certificates that the daemon's certificate must chain to. Empty:
  // $TASKRT_TLS_CA, else the system roots (when TLS is on).
  std::string tls_ca_file;
  // A PEM client certificate and its key, for daemons that require mutual TLS
  // (taskrtd --tls-client-ca). Both or neither. Default: none.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the daemon's certificate must carry, when it differs from the target's
  // host (e.g. connecting by IP address). Empty: the target's host.
  std::string tls_server_name;

  // How long Connect waits for the daemon to answer.
  absl::Duration connect_timeout = absl::Seconds(3);
  // How long Wait and WaitAll keep trying while the daemon is unreachable (for example
  // restarting: task ids survive a restart), before they return UNAVAILABLE.
  absl::Duration reconnect_timeout = absl::Seconds(60);
};

class Client {
 public:
  // Connects and checks that the daemon answers. UNAVAILABLE, with how to start the
  // daemon, when nothing listens on the socket.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Where this client talks to, e.g. "unix:/run/user/1000/taskrt/taskrt.sock".
  const std::string& target() const;

  // Submits one task; returns its id.
  absl::StatusOr<std::string> Submit(const v1::TaskSpec& spec);
  // Submits many tasks in one round trip, atomically (all accepted or none).
  absl::StatusOr<std::vector<std::string>> SubmitBatch(const std::vector<v1::TaskSpec>& specs);

  // The current view of a task (no waiting).
  absl::StatusOr<v1::Task> Get(const std::string& id);

  // Blocks until the task is final (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT) or the
  // timeout passes (DEADLINE_EXCEEDED). Survives a daemon restart: while the daemon is
  // unreachable it retries, for up to ClientOptions::reconnect_timeout.
  absl::StatusOr<v1::Task> Wait(const std::string& id,
                                absl::Duration timeout = absl::InfiniteDuration());
  // Blocks until all are final; results in the order of `ids`.
  absl::StatusOr<std::vector<v1::Task>> WaitAll(const std::vector<std::string>& ids,
                                                absl::Duration timeout = absl::InfiniteDuration());
  // Submits and waits in one round trip (the Run RPC). A spec without an idempotency
  // key gets a random one ("run-..."), so that when the daemon restarts mid-call the
  // call is repeated, for up to ClientOptions::reconnect_timeout, and waits on the task
  // already accepted instead of running it twice. DEADLINE_EXCEEDED after `timeout`
  // names the task, which keeps running.
  absl::StatusOr<v1::Task> Run(const v1::TaskSpec& spec,
                               absl::Duration timeout = absl::InfiniteDuration());

  // Runs many tasks over one call (the Stream RPC): sends them in batches of
  // `batch_size` (each batch is accepted atomically, as SubmitBatch), and calls
  // `on_result(index into specs, result)` once for each task as it finishes, in
  // finishing order, on the calling thread. Returns OK once every task has finished
  // (failed tasks included: see the result's state), or the first error: a batch refused
  // (its message names the batch; tasks of earlier batches keep running), `timeout`, or
  // the daemon gone for longer than ClientOptions::reconnect_timeout (UNAVAILABLE).
  //
  // With `resume`, a spec without an idempotency key gets one (a random prefix for the
  // call, then its index), and when the daemon goes away mid-call (a restart, a crash)
  // the specs without a result yet are sent again on a new stream once it is back: those
  // it had accepted are found by their keys and not run again, their results come when
  // they finish. (A task that finished and was then evicted by retention,
  // --max-retained, before the new stream asked for it would run again.) The keys cost
  // about a tenth of no-op throughput (docs/PERFORMANCE.md), hence not the default:
  // without `resume` the call ends with UNAVAILABLE and the tasks accepted so far run on.
  struct StreamOptions {
    size_t batch_size = 1000;
    absl::Duration timeout = absl::InfiniteDuration();
    bool resume = false;
  };

  absl::Status RunStream(const std::vector<v1::TaskSpec>& specs,
                         const std::function<void(size_t, v1::TaskResult&)>& on_result,
                         const StreamOptions& options);
  // RunStream collecting the results, in the order of `specs`.
  absl::StatusOr<std::vector<v1::TaskResult>> RunMany(const std::vector<v1::TaskSpec>& specs,
                                                      const StreamOptions& options);
  absl::StatusOr<std::vector<v1::TaskResult>> RunMany(const std::vector<v1::TaskSpec>& specs) {
    return RunMany(specs, StreamOptions());
  }

  // Asynchronous wait: `done` runs once, when the task is final or the wait failed, on
  // the client's completion thread (one per Client, started by the first WaitAsync, shared
  // by all its asynchronous waits): keep `done` short and do not destroy the Client in it.
  // Like Wait, it outlives a daemon restart (UNAVAILABLE is retried for up to
  // ClientOptions::reconnect_timeout). Destroying the Client cancels the waits still in
  // flight: their `done` gets CANCELLED.
  void WaitAsync(const std::string& id, std::function<void(absl::StatusOr<v1::Task>)> done,
                 absl::Duration timeout = absl::InfiniteDuration());
  // Asynchronous wait as a future.
  std::future<absl::StatusOr<v1::Task>> WaitFuture(
      const std::string& id, absl::Duration timeout = absl::InfiniteDuration());

  // Cancels tasks that are not final yet; returns their state afterwards.
  absl::StatusOr<std::vector<v1::Task>> Cancel(const std::vector<std::string>& ids);

  absl::StatusOr<std::vector<v1::Task>> List(const v1::ListRequest& request = {});

  // Streams task events to `on_event` until it returns false, the daemon goes away or
  // `timeout` passes (then returns OK). Blocks the calling thread; `on_event` runs on it.
  // Of a cluster target: one Watch per daemon concerned, events in arrival order.
  absl::Status Watch(const v1::WatchRequest& request,
                     const std::function<bool(const v1::TaskEvent&)>& on_event,
                     absl::Duration timeout = absl::InfiniteDuration());

  // Streams what the running command of task `id` (sys.exec) has written so far, and
  // with `follow` what it writes until the task is final, to `on_chunk` (on the calling
  // thread, in order). Returns OK at the end; at once for a task that runs no command
  // now (a finished task's output is in its result: Get). NOT_FOUND as Get.
  absl::Status Logs(const std::string& id, bool follow,
                    const std::function<void(const v1::OutputChunk&)>& on_chunk);

  // The stats of the daemon (of a cluster target: of the first daemon that answers).
  absl::StatusOr<v1::Stats> GetStats();
  // The stats of every daemon of the target (one for a single daemon), in the order of
  // its addresses: the address, the daemon's name and its stats or why there are none.
  struct DaemonStats {
    std::string address;
    std::string name;
    absl::StatusOr<v1::Stats> stats;
  };
  std::vector<DaemonStats> ClusterStats();
  // How many daemons the target names (1 unless it is a cluster target).
  size_t daemons() const;
  absl::StatusOr<std::vector<v1::HandlerInfo>> ListHandlers();

 private:
  struct Impl;
  absl::StatusOr<v1::WaitResponse> WaitResuming(const std::vector<std::string>& ids,
                                                absl::Duration timeout);
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A task spec for `handler` with `input` (JSON for the built-in handlers).
v1::TaskSpec MakeTask(const std::string& handler, const std::string& input,
                      v1::TaskClass requested_class = v1::TASK_CLASS_AUTO);

// True for SUCCEEDED, FAILED, CANCELLED and TIMED_OUT.
bool IsFinal(v1::TaskState state);

// Short names used by the CLI and in messages: "cpu", "io", "auto"; "process", "thread",
// "async"; "client-declared", "handler-hint", "learned", "default"; "succeeded", ...
std::string ClassName(v1::TaskClass c);
std::string ExecutorName(v1::Executor e);
std::string ReasonName(v1::Reason r);
std::string StateName(v1::TaskState s);
std::string FailureName(v1::FailureKind k);
// Parses "auto", "cpu", "io" (case-insensitive).
absl::StatusOr<v1::TaskClass> ParseClass(const std::string& text);

// The decision in words, several lines: what was asked, what was chosen and why, where
// it ran, how long it waited and ran, and any hint.
std::string ExplainDecision(const v1::Task& task);
// The same for a result of RunStream / RunMany (a v1::TaskResult carries the decision but
// not the spec): give the spec the task was submitted with, to name its handler (without
// it the handler shows as "?").
std::string ExplainDecision(const v1::TaskResult& result, const v1::TaskSpec& spec = {});

}  // namespace taskrt

#endif  // TASKRT_CLIENT_H_
