// taskrt::Client: the gRPC side of the SDK. The only translation unit of the client
// that includes grpcpp (each one costs seconds to compile); the naming and explaining
// helpers live in describe.cc.
#include "taskrt/client.h"

#include <grpcpp/alarm.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/async_unary_call.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_interceptor.h>
#include <grpcpp/support/status.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <mutex>  // std::once_flag
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cluster.h"
#include "common/mutex.h"
#include "common/security.h"
#include "common/status_macros.h"
#include "taskrt/v1/service.grpc.pb.h"

namespace taskrt {
namespace {

// Responses may carry large task outputs (sys.exec stdout, batches of results).
constexpr int kMaxReceiveMessageBytes = 256 << 20;
// Extra time the client grants a finite Wait beyond the server-side timeout, so that
// the server answers DEADLINE_EXCEEDED with its own message before the call expires.
constexpr absl::Duration kWaitDeadlineSlack = absl::Seconds(5);
using internal::kSystemSocketPath;

// absl and gRPC share the canonical codes, so the mapping is a cast.
absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// The filesystem path of a unix-socket target ("unix:/p", "unix:///p"), or "" for any
// other kind of target.
std::string UnixSocketPathOf(const std::string& target) {
  if (!absl::StartsWith(target, "unix:")) return "";
  std::string path = target.substr(5);
  if (absl::StartsWith(path, "//")) path = path.substr(2);
  return path;
}

bool SocketExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string NotRunningMessage(const std::string& target, absl::Duration timeout, bool tls) {
  const std::string path = UnixSocketPathOf(target);
  if (path.empty()) {
    return absl::StrCat(
        "taskrtd is not reachable at ", target, " (no daemon answered within ",
        absl::FormatDuration(timeout),
        "): check that it is running and listens on that address, or point --target at a "
        "running one",
        tls ? "; with TLS, also that it serves TLS and that its certificate is signed by "
              "--tls-ca and names the target's host (or --tls-server-name)"
            : "");
  }
  const std::string why =
      SocketExists(path) ? absl::StrCat("no daemon answered within ", absl::FormatDuration(timeout))
                         : absl::StrCat("no socket at ", path);
  return absl::StrCat("taskrtd is not running at ", target, " (", why,
                      "): start it with `taskrtd` (or `systemctl start taskrtd`), or "
                      "point TASKRT_SOCKET / --socket at a running one");
}

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

// Sets a Wait or Run request's server-side timeout and the call deadline that backs it.
template <typename Request>
void SetWaitTimeout(absl::Duration timeout, Request* request, grpc::ClientContext* context) {
  if (timeout == absl::InfiniteDuration()) {
    request->set_timeout_ms(0);  // until final
    return;
  }
  if (timeout < absl::ZeroDuration()) timeout = absl::ZeroDuration();
  // 0 means "no timeout" on the wire; a zero wait is a 1 ms wait.
  const int64_t ms = absl::ToInt64Milliseconds(timeout);
  request->set_timeout_ms(ms > 0 ? static_cast<uint64_t>(ms) : 1);
  context->set_deadline(DeadlineAfter(timeout + kWaitDeadlineSlack));
}

absl::StatusOr<v1::Task> SingleTask(const v1::WaitResponse& response, const std::string& id) {
  if (response.tasks_size() != 1) {
    return absl::InternalError(
        absl::StrCat("daemon returned ", response.tasks_size(), " tasks for a wait on task ", id));
  }
  return response.tasks(0);
}

// How a call outlives a daemon restart: UNAVAILABLE means the daemon went away (e.g. it
// is restarting), and the call is tried again, after 100 ms doubling up to 2 s, until the
// daemon has been unreachable for `reconnect_timeout` or the call's own `timeout` has
// passed. One per call; not thread-safe.
class Reconnect {
 public:
  Reconnect(absl::Duration timeout, absl::Duration reconnect_timeout)
      : timeout_(timeout), reconnect_timeout_(reconnect_timeout), start_(absl::Now()) {}

  // What is left of the call's timeout: never negative; infinite stays infinite.
  absl::Duration left() const {
    if (timeout_ == absl::InfiniteDuration()) return timeout_;
    return std::max(timeout_ - (absl::Now() - start_), absl::ZeroDuration());
  }
  // The call got somewhere (a result came): an outage counts from its next failure.
  void Progressed() {
    unreachable_since_ = absl::InfiniteFuture();
    backoff_ = kFirstBackoff;
  }
  // After an UNAVAILABLE: how long to wait before trying again, or nullopt to give up.
  std::optional<absl::Duration> NextDelay() {
    const absl::Time now = absl::Now();
    if (unreachable_since_ == absl::InfiniteFuture()) unreachable_since_ = now;
    if (now - unreachable_since_ >= reconnect_timeout_ ||
        (timeout_ != absl::InfiniteDuration() && now - start_ >= timeout_)) {
      return std::nullopt;
    }
    const absl::Duration delay = backoff_;
    backoff_ = std::min(backoff_ * 2, absl::Seconds(2));
    return delay;
  }

 private:
  static constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
  const absl::Duration timeout_;
  const absl::Duration reconnect_timeout_;
  const absl::Time start_;
  absl::Time unreachable_since_ = absl::InfiniteFuture();
  absl::Duration backoff_ = kFirstBackoff;
};

// One asynchronous wait, from WaitAsync until its callback has run: one Wait call at a
// time and, while the daemon is unreachable, an alarm before the next one.
struct AsyncWaitCall {
  AsyncWaitCall(std::string id, std::function<void(absl::StatusOr<v1::Task>)> done,
                absl::Duration timeout, absl::Duration reconnect_timeout)
      : id(std::move(id)), done(std::move(done)), reconnect(timeout, reconnect_timeout) {}

  const std::string id;
  const std::function<void(absl::StatusOr<v1::Task>)> done;
  Reconnect reconnect;
  v1::TaskService::Stub* stub = nullptr;  // of the task's daemon
  bool backing_off = false;               // the alarm is set, no call is in flight
  grpc::Alarm retry;
  // The call in flight; its context is made anew for each attempt (single-use).
  std::unique_ptr<grpc::ClientContext> context;
  v1::WaitRequest request;
  v1::WaitResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::WaitResponse>> reader;
};

// The client's asynchronous waits, completed by one thread of its own on a completion
// queue it owns. (gRPC's callback API would need no thread of ours, but in gRPC 1.51 its
// polling threads pause 100 ms after 1 s without a completion: a WaitFuture on a task of
// 1.05 s got its result 50 ms late, every time.) Like Wait, a wait outlives a daemon
// restart: UNAVAILABLE is retried, with backoff, for up to `reconnect_timeout`.
// Destroying it cancels the waits still in flight; their callbacks run with CANCELLED.
class AsyncWaits {
 public:
  AsyncWaits() : thread_([this] { Complete(); }) {}
  ~AsyncWaits() {
    {
      internal::MutexLock lock(&mu_);
      stopping_ = true;
      for (AsyncWaitCall* call : in_flight_) {
        if (call->backing_off) {
          call->retry.Cancel();
        } else {
          call->context->TryCancel();
        }
      }
    }
    cq_.Shutdown();
    thread_.join();
  }
  AsyncWaits(const AsyncWaits&) = delete;
  AsyncWaits& operator=(const AsyncWaits&) = delete;

  void Start(std::unique_ptr<AsyncWaitCall> owned) {
    AsyncWaitCall* call = owned.release();  // until Complete takes it back
    internal::MutexLock lock(&mu_);
    in_flight_.insert(call);
    CallLocked(call);
  }

 private:
  void CallLocked(AsyncWaitCall* call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    call->backing_off = false;
    call->context = std::make_unique<grpc::ClientContext>();
    call->response.Clear();
    SetWaitTimeout(call->reconnect.left(), &call->request, call->context.get());
    call->reader = call->stub->AsyncWait(call->context.get(), call->request, &cq_);
    call->reader->Finish(&call->response, &call->status, call);
  }

  // After UNAVAILABLE: sets the alarm for the next attempt, or returns false when the
  // wait gives up (see Reconnect) or the client is going away.
  bool BackOffLocked(AsyncWaitCall* call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopping_) return false;
    const std::optional<absl::Duration> delay = call->reconnect.NextDelay();
    if (!delay) return false;
    call->backing_off = true;
    call->retry.Set(&cq_, absl::ToChronoTime(absl::Now() + *delay), call);
    return true;
  }

  void Complete() {
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {  // a Finish comes back with ok; an alarm, !ok if cancelled
      auto* call = static_cast<AsyncWaitCall*>(tag);
      absl::Status s;
      {
        internal::MutexLock lock(&mu_);
        if (call->backing_off) {
          if (ok && !stopping_) {
            CallLocked(call);
            continue;
          }
          s = absl::CancelledError(absl::StrCat(
              "the client was destroyed while waiting for the daemon to come back (task ", call->id,
              ")"));
        } else {
          s = FromGrpc(call->status);
          if (absl::IsUnavailable(s) && BackOffLocked(call)) continue;
          if (absl::IsUnavailable(s) && stopping_) {
            // It failed just before the client went away (too late for TryCancel): it
            // would have retried, so it ends as the client's destruction, not the outage.
            s = absl::CancelledError(absl::StrCat(
                "the client was destroyed while waiting for the daemon to come back (task ",
                call->id, ")"));
          }
        }
        in_flight_.erase(call);
      }
      std::unique_ptr<AsyncWaitCall> owned(call);
      if (s.ok()) {
        owned->done(SingleTask(owned->response, owned->id));
      } else {
        owned->done(std::move(s));
      }
    }
  }

  grpc::CompletionQueue cq_;
  internal::Mutex mu_;
  std::unordered_set<AsyncWaitCall*> in_flight_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: it uses the members above
};

// Calls `attempt` with what is left of `timeout` until it returns anything but
// UNAVAILABLE, or Reconnect gives up.
absl::Status RetryWhileUnavailable(absl::Duration timeout, absl::Duration reconnect_timeout,
                                   const std::function<absl::Status(absl::Duration)>& attempt) {
  Reconnect reconnect(timeout, reconnect_timeout);
  while (true) {
    absl::Status status = attempt(reconnect.left());
    if (!absl::IsUnavailable(status)) return status;
    const std::optional<absl::Duration> delay = reconnect.NextDelay();
    if (!delay) return status;
    absl::SleepFor(*delay);
  }
}

// 64 random bits as 16 hex digits.
std::string RandomHex64() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return absl::StrCat(absl::Hex(gen(), absl::kZeroPad16));
}

// A key no other task has: 128 random bits.
std::string RandomKey() { return absl::StrCat("run-", RandomHex64(), RandomHex64()); }

// A prefix for the keys of one resumable stream ("s<64 random bits>-", then the spec's
// index): short, because the daemon keeps every key of the tasks it retains.
std::string ShortRandomPrefix() { return absl::StrCat("s", RandomHex64(), "-"); }

// --- Credentials for TCP targets ---------------------------------------------------

// Where the daemon keeps its token, for messages.
constexpr char kWhereTheTokenIs[] =
    "the daemon's token is in <state-dir>/token (by default "
    "~/.local/state/taskrt/token of the user running taskrtd, /var/lib/taskrt/token for "
    "the system service)";

bool IsUnixTarget(const std::string& target) {
  return absl::StartsWith(target, "unix:") || absl::StartsWith(target, "unix-abstract:");
}

std::string EnvOrEmpty(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

// The token and where it came from (for messages), by the precedence documented on
// ClientOptions::token. Both empty when there is none.
struct Token {
  std::string value;
  std::string source;
};

absl::StatusOr<Token> ResolveToken(const ClientOptions& options) {
  if (!options.token.empty()) {
    RETURN_IF_ERROR(internal::ValidateToken(options.token, "ClientOptions::token"));
    return Token{options.token, "ClientOptions::token"};
  }
  if (!options.token_file.empty()) {
    ASSIGN_OR_RETURN(std::string token, internal::ReadTokenFile(options.token_file));
    return Token{std::move(token), absl::StrCat("the token file ", options.token_file)};
  }
  if (std::string env = EnvOrEmpty("TASKRT_TOKEN"); !env.empty()) {
    RETURN_IF_ERROR(internal::ValidateToken(env, "$TASKRT_TOKEN"));
    return Token{std::move(env), "$TASKRT_TOKEN"};
  }
  if (const std::string file = EnvOrEmpty("TASKRT_TOKEN_FILE"); !file.empty()) {
    absl::StatusOr<std::string> token = internal::ReadTokenFile(file);
    if (!token.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("$TASKRT_TOKEN_FILE: ", token.status().message()));
    }
    return Token{std::move(*token), absl::StrCat("$TASKRT_TOKEN_FILE (", file, ")")};
  }
  return Token{};
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the ", what, " ", path, ": ", std::strerror(errno)));
  }
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the ", what, " ", path, " is empty"));
  }
  return text;
}

// The channel credentials ClientOptions ask for: TLS (see ClientOptions::tls) or none.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ClientOptions& options, bool* tls) {
  std::string ca_file = options.tls_ca_file;
  if (ca_file.empty()) ca_file = EnvOrEmpty("TASKRT_TLS_CA");
  *tls = options.tls || !ca_file.empty() || !options.tls_cert_file.empty() ||
         !options.tls_key_file.empty();
  if (!*tls) return grpc::InsecureChannelCredentials();
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a TLS client certificate needs its key and the other way round: give both "
        "--tls-cert and --tls-key (ClientOptions::tls_cert_file, tls_key_file)");
  }
  grpc::SslCredentialsOptions ssl;
  if (!ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(ca_file, "TLS CA file"));
  }
  if (!options.tls_cert_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(options.tls_cert_file, "TLS certificate"));
    ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(options.tls_key_file, "TLS key"));
  }
  return grpc::SslCredentials(ssl);
}

// Sends the token on every call (unary, streaming and completion-queue calls alike: an
// interceptor sees them all) and, when the daemon answers UNAUTHENTICATED, adds how to
// fix it to the message. Thread-safety: one per call, made by the factory below.
class CredentialsInterceptor : public grpc::experimental::Interceptor {
 public:
  CredentialsInterceptor(const std::string& authorization, const std::string& hint)
      : authorization_(authorization), hint_(hint) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (!authorization_.empty() &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", authorization_);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      grpc::Status* status = methods->GetRecvStatus();
      if (status->error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        *status = grpc::Status(status->error_code(), absl::StrCat(status->error_message(), hint_),
                               status->error_details());
      }
    }
    methods->Proceed();
  }

 private:
  const std::string& authorization_;  // owned by the factory, which the channel keeps
  const std::string& hint_;
};

// Thread-safety: immutable; gRPC calls it from any thread.
class CredentialsInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  CredentialsInterceptorFactory(const Token& token, const std::string& target)
      : authorization_(token.value.empty() ? "" : absl::StrCat("Bearer ", token.value)),
        hint_(token.value.empty()
                  ? absl::StrCat(" (taskrtd at ", target,
                                 " wants a token and none was sent): pass --token-file FILE "
                                 "or set TASKRT_TOKEN or TASKRT_TOKEN_FILE "
                                 "(ClientOptions::token / token_file in the SDK); ",
                                 kWhereTheTokenIs)
                  : absl::StrCat(" (taskrtd at ", target, " refused the token from ", token.source,
                                 "): ", kWhereTheTokenIs)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new CredentialsInterceptor(authorization_, hint_);  // gRPC deletes it
  }

 private:
  const std::string authorization_;  // "Bearer <token>", or "" to send none
  const std::string hint_;
};

// A channel to a TCP target with the credentials ClientOptions ask for. Refuses to send
// a token in clear text to a host that is not loopback.
absl::StatusOr<std::shared_ptr<grpc::Channel>> TcpChannel(const ClientOptions& options,
                                                          const std::string& target,
                                                          grpc::ChannelArguments& args, bool* tls) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                   ChannelCredentialsFor(options, tls));
  ASSIGN_OR_RETURN(Token token, ResolveToken(options));
  if (!token.value.empty() && !*tls) {
    if (const std::string host = internal::FirstNonLoopbackHost(target); !host.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("refusing to send the token in clear text to ", host,
                       ": use TLS (--tls-ca FILE, or --tls for the system's root certificates; "
                       "ClientOptions::tls_ca_file / tls in the SDK), or a loopback address"));
    }
  }
  if (*tls && !options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<CredentialsInterceptorFactory>(token, target));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, credentials, args,
                                                                 std::move(factories));
}

}  // namespace

namespace {

// One daemon of the target: its channel and what the client knows of it.
struct Member {
  std::string address;  // its gRPC target
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::TaskService::Stub> stub;
  // Guarded by Client::Impl::mu.
  std::string name;        // Stats.daemon; "" until it answered
  bool duplicate = false;  // another address of a daemon already known
  absl::Time probed_at = absl::InfinitePast();
  uint64_t load = 0;  // as its last answer reported
  uint64_t sent = 0;  // tasks sent since that report
  absl::Time load_at = absl::InfinitePast();
  absl::Time draining_until = absl::InfinitePast();
};

}  // namespace

// Thread-safety: the members' channels and stubs are immutable after Connect (and
// thread-safe); what the client learns of them is guarded by mu.
struct Client::Impl {
  std::string target;
  absl::Duration reconnect_timeout;
  absl::Duration connect_timeout;
  ClientOptions::Spread spread;
  bool cluster = false;
  std::vector<std::unique_ptr<Member>> members;
  internal::Mutex mu;
  // The round-robin position; it starts at random, or every short-lived client (one
  // per `taskrt submit`) would send its first task to the first daemon.
  size_t next ABSL_GUARDED_BY(mu) = std::random_device{}();
  std::once_flag async_waits_once;
  std::unique_ptr<AsyncWaits> async_waits;  // from the first WaitAsync; goes before members

  AsyncWaits& async() {
    std::call_once(async_waits_once, [this] { async_waits = std::make_unique<AsyncWaits>(); });
    return *async_waits;
  }
  Member& first() { return *members.front(); }

  // Asks the members that have not answered yet for their name (each at most once a
  // second). Returns OK when every member has a name.
  absl::Status ProbeUnnamed();
  // The daemon that owns task `id` (NOT_FOUND when none of the target's does).
  absl::StatusOr<Member*> OwnerOf(const std::string& id);
  // The daemon that owns idempotency key `key` (docs/CLUSTER.md); UNAVAILABLE while a
  // daemon has not answered.
  absl::StatusOr<Member*> KeyOwnerOf(const std::string& key);
  // The daemon for new tasks (ClientOptions::spread), not in `excluded`; null when none.
  Member* Pick(const std::vector<Member*>& excluded);
  void Sent(Member* m, size_t n);
  void Reported(Member* m, uint64_t load);
  void Draining(Member* m);
  // Asks the daemons whose last load report is a second old or more for their load
  // (their Stats): another client's tasks count too.
  void RefreshStaleLoads();
  // The names of the members known, for messages.
  std::string Known();
};

namespace {

constexpr absl::Duration kReprobeEvery = absl::Seconds(1);
constexpr absl::Duration kLoadFresh = absl::Seconds(1);
constexpr absl::Duration kDrainingFor = absl::Seconds(5);

// True when the daemon refused a Submit or Run before accepting anything (it drains):
// the tasks may go to another daemon.
bool NotAccepted(const grpc::ClientContext& context, const absl::Status& status) {
  if (!absl::IsUnavailable(status)) return false;
  const auto& trailers = context.GetServerTrailingMetadata();
  return trailers.find("taskrt-not-accepted") != trailers.end();
}

}  // namespace

absl::Status Client::Impl::ProbeUnnamed() {
  std::vector<Member*> todo;
  {
    internal::MutexLock lock(&mu);
    const absl::Time now = absl::Now();
    for (auto& m : members) {
      if (m->name.empty() && !m->duplicate && now - m->probed_at >= kReprobeEvery) {
        m->probed_at = now;
        todo.push_back(m.get());
      }
    }
  }
  for (Member* m : todo) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineAfter(connect_timeout));
    v1::Stats stats;
    if (!m->stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok()) continue;
    internal::MutexLock lock(&mu);
    for (auto& other : members) {
      if (other.get() != m && other->name == stats.daemon()) m->duplicate = true;
    }
    m->name = stats.daemon();
    uint64_t load = 0;
    for (const v1::PoolInfo& p : stats.pools()) load += p.queued() + p.running();
    m->load = load;
    m->sent = 0;
    m->load_at = absl::Now();
  }
  internal::MutexLock lock(&mu);
  for (auto& m : members) {
    if (m->name.empty() && !m->duplicate) {
      return absl::UnavailableError(
          absl::StrCat("the daemon at ", m->address, " of ", target, " has not answered yet"));
    }
  }
  return absl::OkStatus();
}

std::string Client::Impl::Known() {
  internal::MutexLock lock(&mu);
  std::vector<std::string> names;
  for (auto& m : members) {
    if (!m->name.empty() && !m->duplicate) names.push_back(m->name);
  }
  return names.empty() ? "none answered" : absl::StrJoin(names, ", ");
}

absl::StatusOr<Member*> Client::Impl::OwnerOf(const std::string& id) {
  if (!cluster) return &first();
  const absl::string_view owner = internal::OwnerOfId(id);
  for (int round = 0; round < 2; ++round) {
    {
      internal::MutexLock lock(&mu);
      for (auto& m : members) {
        if (!m->duplicate && !m->name.empty() && m->name == owner) return m.get();
      }
    }
    if (round == 0) (void)ProbeUnnamed();
  }
  return absl::NotFoundError(absl::StrCat("task ", id, " belongs to daemon '", owner,
                                          "', which is not one of the daemons of ", target, " (",
                                          Known(), ")"));
}

absl::StatusOr<Member*> Client::Impl::KeyOwnerOf(const std::string& key) {
  if (!cluster) return &first();
  if (absl::Status s = ProbeUnnamed(); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot place idempotency key '", key, "': ", s.message(),
                     ", and which daemon owns a key depends on all of them (docs/CLUSTER.md)"));
  }
  internal::MutexLock lock(&mu);
  std::vector<std::string> names;
  std::vector<Member*> named;
  for (auto& m : members) {
    if (m->duplicate) continue;
    names.push_back(m->name);
    named.push_back(m.get());
  }
  return named[internal::KeyOwner(names, key)];
}

void Client::Impl::RefreshStaleLoads() {
  std::vector<Member*> stale;
  {
    internal::MutexLock lock(&mu);
    const absl::Time now = absl::Now();
    for (auto& m : members) {
      if (!m->name.empty() && !m->duplicate && now - m->load_at >= kLoadFresh) {
        m->load_at = now;  // one refresh a second, even when it fails
        m->load = 0;
        m->sent = 0;
        stale.push_back(m.get());
      }
    }
  }
  for (Member* m : stale) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineAfter(std::min(connect_timeout, absl::Milliseconds(500))));
    v1::Stats stats;
    if (!m->stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok()) continue;
    uint64_t load = 0;
    for (const v1::PoolInfo& p : stats.pools()) load += p.queued() + p.running();
    internal::MutexLock lock(&mu);
    m->load = load;
  }
}

Member* Client::Impl::Pick(const std::vector<Member*>& excluded) {
  if (!cluster) return &first();
  if (std::any_of(members.begin(), members.end(), [](auto& m) { return m->name.empty(); })) {
    (void)ProbeUnnamed();
  }
  if (spread == ClientOptions::Spread::kLeastLoaded) RefreshStaleLoads();
  internal::MutexLock lock(&mu);
  const absl::Time now = absl::Now();
  const size_t n = members.size();
  auto usable = [&](Member* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return !m->name.empty() && !m->duplicate && m->draining_until <= now &&
           std::find(excluded.begin(), excluded.end(), m) == excluded.end() &&
           m->channel->GetState(false) != GRPC_CHANNEL_TRANSIENT_FAILURE;
  };
  auto estimate = [&](Member* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return m->load + m->sent; };
  // Round-robin among the daemons near the lowest estimate (all of them for
  // kRoundRobin): a load of 1 or 2 is noise, a no-op's own, not a reason to starve a
  // daemon (with the exact minimum, one got 24 % of 3000 no-ops).
  uint64_t limit = UINT64_MAX;
  if (spread == ClientOptions::Spread::kLeastLoaded) {
    for (auto& m : members) {
      if (usable(m.get())) limit = std::min(limit, estimate(m.get()));
    }
    if (limit != UINT64_MAX) limit += std::max<uint64_t>(2, limit / 4);
  }
  Member* best = nullptr;
  for (size_t k = 0; k < n && best == nullptr; ++k) {
    Member* m = members[(next + k) % n].get();
    if (usable(m) && estimate(m) <= limit) best = m;
  }
  if (best == nullptr) {  // none looks usable: take any named one, to report its error
    for (auto& m : members) {
      if (!m->name.empty() && !m->duplicate &&
          std::find(excluded.begin(), excluded.end(), m.get()) == excluded.end()) {
        best = m.get();
        break;
      }
    }
  }
  next = (next + 1) % n;
  return best;
}

void Client::Impl::Sent(Member* m, size_t n) {
  internal::MutexLock lock(&mu);
  m->sent += n;
}

void Client::Impl::Reported(Member* m, uint64_t load) {
  internal::MutexLock lock(&mu);
  m->load = load;
  m->sent = 0;
  m->load_at = absl::Now();
}

void Client::Impl::Draining(Member* m) {
  internal::MutexLock lock(&mu);
  m->draining_until = absl::Now() + kDrainingFor;
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

namespace {

// The target ClientOptions name: the target, else the socket path, else the default
// socket (or the system service's, when the user has none and TASKRT_SOCKET is unset).
std::string TargetOf(const ClientOptions& options) {
  if (!options.target.empty()) return options.target;
  std::string path = options.socket_path;
  if (path.empty()) {
    path = DefaultSocketPath();
    if (!SocketExists(path) && std::getenv("TASKRT_SOCKET") == nullptr &&
        SocketExists(kSystemSocketPath)) {
      path = kSystemSocketPath;
    }
  }
  return absl::StrCat("unix:", path);
}

// A channel to one daemon's `address`.
absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelTo(const ClientOptions& options,
                                                         const std::string& address, bool* tls) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  if (IsUnixTarget(address)) {
    // No credentials: the daemon reads the caller's uid from the socket.
    if (const std::string path = UnixSocketPathOf(address); !path.empty()) {
      RETURN_IF_ERROR(internal::CheckSocketOwner(path));
    }
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }
  return TcpChannel(options, address, args, tls);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->target = TargetOf(options);
  impl->reconnect_timeout = options.reconnect_timeout;
  impl->connect_timeout = options.connect_timeout;
  impl->spread = options.spread;
  ASSIGN_OR_RETURN(internal::ClusterTarget resolved, internal::ResolveClusterTarget(impl->target));
  impl->cluster = resolved.cluster();
  ClientOptions member_options = options;
  if (!resolved.dns_host.empty() && member_options.tls_server_name.empty()) {
    member_options.tls_server_name = resolved.dns_host;  // the certificate names the service
  }
  bool tls = false;
  for (const std::string& address : resolved.addresses) {
    auto m = std::make_unique<Member>();
    m->address = address;
    ASSIGN_OR_RETURN(m->channel, ChannelTo(member_options, address, &tls));
    m->stub = v1::TaskService::NewStub(m->channel);
    impl->members.push_back(std::move(m));
  }
  if (!impl->cluster) {
    if (!impl->first().channel->WaitForConnected(DeadlineAfter(options.connect_timeout))) {
      return absl::UnavailableError(NotRunningMessage(impl->target, options.connect_timeout, tls));
    }
    return std::unique_ptr<Client>(new Client(std::move(impl)));
  }
  (void)impl->ProbeUnnamed();
  if (impl->Known() == "none answered") {
    return absl::UnavailableError(
        absl::StrCat(NotRunningMessage(impl->target, options.connect_timeout, tls),
                     " (no daemon of the ", impl->members.size(), " addresses answered)"));
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

const std::string& Client::target() const { return impl_->target; }

absl::StatusOr<std::string> Client::Submit(const v1::TaskSpec& spec) {
  absl::StatusOr<std::vector<std::string>> ids = SubmitBatch({spec});
  if (!ids.ok()) return ids.status();
  if (ids->size() != 1) {
    return absl::InternalError(
        absl::StrCat("daemon returned ", ids->size(), " task ids for one task"));
  }
  return std::move(ids->front());
}

namespace {

// The part of `parts` (in order of first appearance) that belongs to `m`, added when
// missing: how calls on several tasks are split by daemon.
template <typename Part>
Part& PartOf(std::vector<std::pair<Member*, Part>>& parts, Member* m) {
  auto part = std::find_if(parts.begin(), parts.end(), [&](auto& p) { return p.first == m; });
  if (part != parts.end()) return part->second;
  parts.push_back({m, Part()});
  return parts.back().second;
}

// One Submit call of `specs` (at `positions` of the caller's batch) to `m`.
absl::StatusOr<std::vector<std::string>> SubmitTo(Member& m, const std::vector<v1::TaskSpec>& specs,
                                                  const std::vector<size_t>& positions,
                                                  bool* not_accepted, uint64_t* load) {
  v1::SubmitRequest request;
  request.mutable_tasks()->Reserve(static_cast<int>(positions.size()));
  for (size_t i : positions) *request.add_tasks() = specs[i];
  v1::SubmitResponse response;
  grpc::ClientContext context;
  absl::Status status = FromGrpc(m.stub->Submit(&context, request, &response));
  *not_accepted = NotAccepted(context, status);
  if (!status.ok()) return status;
  if (static_cast<size_t>(response.task_ids_size()) != positions.size()) {
    return absl::InternalError(absl::StrCat("daemon returned ", response.task_ids_size(),
                                            " task ids for ", positions.size(), " tasks"));
  }
  *load = response.load();
  return std::vector<std::string>(response.task_ids().begin(), response.task_ids().end());
}

}  // namespace

absl::StatusOr<std::vector<std::string>> Client::SubmitBatch(
    const std::vector<v1::TaskSpec>& specs) {
  Impl& impl = *impl_;
  // The owners of the batch's keys, in order of first appearance, and their specs.
  std::vector<std::pair<Member*, std::vector<size_t>>> parts;
  std::vector<size_t> unkeyed;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].idempotency_key().empty()) {
      unkeyed.push_back(i);
      continue;
    }
    ASSIGN_OR_RETURN(Member * owner, impl.KeyOwnerOf(specs[i].idempotency_key()));
    PartOf(parts, owner).push_back(i);
  }
  std::vector<std::string> ids(specs.size());
  if (parts.empty()) {  // no key: one daemon, another if it drains
    std::vector<Member*> tried;
    absl::Status last;
    for (size_t attempt = 0; attempt < impl.members.size(); ++attempt) {
      Member* m = impl.Pick(tried);
      if (m == nullptr) break;
      bool not_accepted = false;
      uint64_t load = 0;
      impl.Sent(m, specs.size());
      auto got = SubmitTo(*m, specs, unkeyed, &not_accepted, &load);
      if (got.ok()) {
        impl.Reported(m, load);
        return got;
      }
      last = got.status();
      if (!not_accepted || !impl.cluster) return last;
      impl.Draining(m);
      tried.push_back(m);
    }
    return last.ok() ? absl::UnavailableError(
                           absl::StrCat("no daemon of ", impl.target, " accepts tasks now"))
                     : last;
  }
  // Tasks without a key go with the first owner's part (one daemon when all keys agree).
  parts.front().second.insert(parts.front().second.end(), unkeyed.begin(), unkeyed.end());
  std::sort(parts.front().second.begin(), parts.front().second.end());
  std::vector<std::string> accepted;  // "daemon: n task(s)" of the parts before a failure
  for (auto& [owner, positions] : parts) {
    bool not_accepted = false;
    uint64_t load = 0;
    auto got = SubmitTo(*owner, specs, positions, &not_accepted, &load);
    if (!got.ok()) {
      if (accepted.empty()) return got.status();
      return absl::Status(
          got.status().code(),
          absl::StrCat(got.status().message(), " (the batch's keys belong to ", parts.size(),
                       " daemons; the parts already accepted keep "
                       "running: ",
                       absl::StrJoin(accepted, "; "), ")"));
    }
    impl.Reported(owner, load);
    for (size_t k = 0; k < positions.size(); ++k) ids[positions[k]] = (*got)[k];
    accepted.push_back(absl::StrCat(owner->name, ": ", absl::StrJoin(*got, " ")));
  }
  return ids;
}

absl::StatusOr<v1::Task> Client::Get(const std::string& id) {
  ASSIGN_OR_RETURN(Member * m, impl_->OwnerOf(id));
  v1::GetRequest request;
  request.add_task_ids(id);
  v1::GetResponse response;
  grpc::ClientContext context;
  absl::Status status = FromGrpc(m->stub->Get(&context, request, &response));
  if (!status.ok()) return status;
  if (response.tasks_size() != 1) {
    return absl::InternalError(
        absl::StrCat("daemon returned ", response.tasks_size(), " tasks for task ", id));
  }
  return response.tasks(0);
}

absl::StatusOr<v1::WaitResponse> Client::WaitResuming(const std::vector<std::string>& ids,
                                                      absl::Duration timeout) {
  // By owner, in order of first appearance; each owner's tasks in one call, one owner
  // after the other with what is left of the timeout.
  std::vector<std::pair<Member*, std::vector<size_t>>> parts;
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSIGN_OR_RETURN(Member * owner, impl_->OwnerOf(ids[i]));
    PartOf(parts, owner).push_back(i);
  }
  const absl::Time start = absl::Now();
  std::vector<v1::Task> tasks(ids.size());
  for (auto& [member, positions] : parts) {
    Member* const owner = member;  // a lambda below uses it (clang 14: no bindings there)
    v1::WaitRequest request;
    for (size_t i : positions) request.add_task_ids(ids[i]);
    v1::WaitResponse response;
    const absl::Duration left =
        timeout == absl::InfiniteDuration()
            ? timeout
            : std::max(timeout - (absl::Now() - start), absl::ZeroDuration());
    // Task ids survive a restart, so the wait goes on once the daemon is back.
    absl::Status status =
        RetryWhileUnavailable(left, impl_->reconnect_timeout, [&](absl::Duration rest) {
          grpc::ClientContext context;
          SetWaitTimeout(rest, &request, &context);
          response.Clear();
          return FromGrpc(owner->stub->Wait(&context, request, &response));
        });
    if (!status.ok()) return status;
    if (parts.size() == 1) return response;
    if (static_cast<size_t>(response.tasks_size()) != positions.size()) {
      return absl::InternalError(absl::StrCat("daemon returned ", response.tasks_size(),
                                              " tasks for a wait on ", positions.size()));
    }
    for (size_t k = 0; k < positions.size(); ++k) {
      tasks[positions[k]] = std::move(*response.mutable_tasks(static_cast<int>(k)));
    }
  }
  v1::WaitResponse all;
  for (auto& t : tasks) *all.add_tasks() = std::move(t);
  return all;
}

absl::StatusOr<v1::Task> Client::Wait(const std::string& id, absl::Duration timeout) {
  absl::StatusOr<v1::WaitResponse> response = WaitResuming({id}, timeout);
  if (!response.ok()) return response.status();
  return SingleTask(*response, id);
}

absl::StatusOr<std::vector<v1::Task>> Client::WaitAll(const std::vector<std::string>& ids,
                                                      absl::Duration timeout) {
  if (ids.empty()) return std::vector<v1::Task>();
  absl::StatusOr<v1::WaitResponse> response = WaitResuming(ids, timeout);
  if (!response.ok()) return response.status();
  if (static_cast<size_t>(response->tasks_size()) != ids.size()) {
    return absl::InternalError(absl::StrCat("daemon returned ", response->tasks_size(),
                                            " tasks for a wait on ", ids.size()));
  }
  return std::vector<v1::Task>(response->tasks().begin(), response->tasks().end());
}

absl::StatusOr<v1::Task> Client::Run(const v1::TaskSpec& spec, absl::Duration timeout) {
  v1::RunRequest request;
  *request.mutable_spec() = spec;
  Member* m = nullptr;
  const bool own_key = !spec.idempotency_key().empty();
  if (own_key) {
    ASSIGN_OR_RETURN(m, impl_->KeyOwnerOf(spec.idempotency_key()));
  } else {
    request.mutable_spec()->set_idempotency_key(RandomKey());
    m = impl_->Pick({});
  }
  std::vector<Member*> drained;
  v1::Task task;
  // The same key finds the task if it was accepted before the daemon went away. A key of
  // this call's own may move to another daemon when this one drains (nothing accepted).
  absl::Status status =
      RetryWhileUnavailable(timeout, impl_->reconnect_timeout, [&](absl::Duration left) {
        grpc::ClientContext context;
        SetWaitTimeout(left, &request, &context);
        task.Clear();
        impl_->Sent(m, 1);
        absl::Status s = FromGrpc(m->stub->Run(&context, request, &task));
        if (!own_key && impl_->cluster && NotAccepted(context, s)) {
          impl_->Draining(m);
          drained.push_back(m);
          if (Member* other = impl_->Pick(drained); other != nullptr) m = other;
        }
        return s;
      });
  if (!status.ok()) return status;
  return task;
}

namespace {

// Writes the specs at `todo` as batches of `batch` (tag = batch number), then WritesDone.
// Stops early when the call has ended (Finish then says why).
void WriteBatches(grpc::ClientReaderWriterInterface<v1::StreamRequest, v1::StreamResponse>& stream,
                  const std::vector<v1::TaskSpec>& specs, const std::vector<size_t>& todo,
                  const std::string& key_prefix, size_t batch) {
  const size_t batches = (todo.size() + batch - 1) / batch;
  v1::StreamRequest request;
  for (size_t b = 0; b < batches; ++b) {
    request.Clear();
    request.set_tag(b);
    const size_t end = std::min(todo.size(), (b + 1) * batch);
    request.mutable_tasks()->Reserve(static_cast<int>(end - b * batch));
    for (size_t k = b * batch; k < end; ++k) {
      v1::TaskSpec* spec = request.add_tasks();
      *spec = specs[todo[k]];
      if (!key_prefix.empty() && spec->idempotency_key().empty()) {
        spec->set_idempotency_key(absl::StrCat(key_prefix, todo[k]));
      }
    }
    if (!stream.Write(request)) return;
  }
  stream.WritesDone();
}

// The error for a refused batch: which batch and tasks (1-based positions in specs), the
// daemon's reason (its "nothing was submitted" is about this batch only), and how many
// tasks of earlier batches this call had already submitted, which keep running.
absl::Status BatchRefused(const v1::StreamResponse::Accepted& a, const std::vector<size_t>& todo,
                          size_t batch, size_t batches, size_t accepted_batches,
                          size_t accepted_tasks) {
  const size_t first = a.tag() * batch;
  const size_t last = std::min(todo.size(), (a.tag() + 1) * batch) - 1;
  const std::string earlier =
      accepted_tasks == 0
          ? "no task of this call was submitted"
          : absl::StrCat(accepted_tasks, " task(s) of ", accepted_batches,
                         " earlier batch(es) of this call were already submitted and keep "
                         "running (their ids are in the results delivered so far)");
  return absl::Status(
      static_cast<absl::StatusCode>(a.code()),
      absl::StrCat("batch ", a.tag() + 1, " of ", batches, " (tasks ", todo[first] + 1,
                   first == last ? "" : absl::StrCat("-", todo[last] + 1),
                   ") was refused: ", a.message(), " (this batch only; ", earlier, ")"));
}

// Cancels the Stream calls of one RunStream over several daemons when one of them fails.
// Thread-safety: thread-safe.
class StreamCancel {
 public:
  // Cancels every call registered, and those registered later at once.
  void CancelAll() {
    internal::MutexLock lock(&mu_);
    cancelled_ = true;
    for (grpc::ClientContext* c : calls_) c->TryCancel();
  }
  bool cancelled() {
    internal::MutexLock lock(&mu_);
    return cancelled_;
  }
  // A call in flight, from construction to destruction (a null StreamCancel: none).
  class Registration {
   public:
    Registration(StreamCancel* cancel, grpc::ClientContext* context)
        : cancel_(cancel), context_(context) {
      if (cancel_ == nullptr) return;
      internal::MutexLock lock(&cancel_->mu_);
      cancel_->calls_.insert(context_);
      if (cancel_->cancelled_) context_->TryCancel();
    }
    ~Registration() {
      if (cancel_ == nullptr) return;
      internal::MutexLock lock(&cancel_->mu_);
      cancel_->calls_.erase(context_);
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    StreamCancel* const cancel_;
    grpc::ClientContext* const context_;
  };

 private:
  internal::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::unordered_set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
};

// Runs `work(member, part, push)` for each part on a thread of its own and hands what
// they push to `consume`, on the calling thread, in arrival order, until all have
// ended. When `consume` returns false or a part fails, the others are cancelled through
// `cancel` (with which `work` registers its calls). Returns the first failure, named
// by its daemon; OK once `consume` stopped.
template <typename Item, typename Part>
absl::Status FanIn(
    std::vector<std::pair<Member*, Part>>& parts, StreamCancel& cancel,
    const std::function<absl::Status(Member*, Part&, const std::function<void(Item)>&)>& work,
    const std::function<bool(Item&)>& consume) {
  internal::Mutex mu;
  std::deque<Item> ready;         // guarded by mu
  size_t running = parts.size();  // guarded by mu
  absl::Status failure;           // guarded by mu
  std::vector<std::thread> threads;
  for (auto& [member, part] : parts) {
    threads.emplace_back([&, m = member, p = &part] {
      absl::Status s = work(m, *p, [&](Item item) {
        internal::MutexLock lock(&mu);
        ready.push_back(std::move(item));
      });
      internal::MutexLock lock(&mu);
      --running;
      if (!s.ok() && failure.ok()) {
        failure = absl::Status(s.code(), absl::StrCat("daemon ", m->name, ": ", s.message()));
        cancel.CancelAll();
      }
    });
  }
  bool stopped = false;
  for (bool finished = false; !finished;) {
    std::deque<Item> batch;
    {
      internal::MutexLock lock(&mu);
      auto wake = [&]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !ready.empty() || running == 0; };
      mu.Await(absl::Condition(&wake));
      batch.swap(ready);
      finished = running == 0;
    }
    for (Item& item : batch) {
      if (stopped) break;
      if (!consume(item)) {
        stopped = true;
        cancel.CancelAll();
      }
    }
  }
  for (std::thread& t : threads) t.join();
  return stopped ? absl::OkStatus() : failure;
}

// One Stream call over the specs at `todo` (indices into `specs`, in order), until each
// has its result or the call fails. Results go to `deliver`, which returns false for a
// spec that already had one (specs sharing an idempotency key share a task, whose
// result comes again for each batch that names it).
absl::Status StreamOnce(v1::TaskService::Stub& stub, const std::vector<v1::TaskSpec>& specs,
                        const std::vector<size_t>& todo, const std::string& key_prefix,
                        size_t batch, absl::Duration timeout,
                        const std::function<bool(size_t, v1::TaskResult&)>& deliver,
                        StreamCancel* cancel) {
  const size_t batches = (todo.size() + batch - 1) / batch;
  grpc::ClientContext context;
  if (timeout != absl::InfiniteDuration()) context.set_deadline(DeadlineAfter(timeout));
  StreamCancel::Registration registration(cancel, &context);
  auto stream = stub.Stream(&context);
  // One thread writes the batches while this one reads: gRPC allows one reader and one
  // writer at a time on a stream.
  std::thread writer([&] { WriteBatches(*stream, specs, todo, key_prefix, batch); });
  // task id -> positions in specs (several when specs share an idempotency key). A
  // SwissTable: std::unordered_multimap's lookups were 15 % of the client's CPU.
  absl::flat_hash_map<std::string, absl::InlinedVector<size_t, 1>> index;
  index.reserve(todo.size());
  absl::flat_hash_map<std::string, v1::TaskResult> early;  // results before their ids
  size_t done = 0;
  size_t accepted_batches = 0;
  size_t accepted_tasks = 0;
  auto take = [&](size_t i, v1::TaskResult& r) {
    if (deliver(i, r)) ++done;
  };
  absl::Status failure;
  v1::StreamResponse response;
  while (failure.ok() && done < todo.size() && stream->Read(&response)) {
    for (const auto& a : response.accepted()) {
      if (a.code() != 0) {
        failure = BatchRefused(a, todo, batch, batches, accepted_batches, accepted_tasks);
        break;
      }
      ++accepted_batches;
      accepted_tasks += static_cast<size_t>(a.task_ids_size());
      for (int k = 0; k < a.task_ids_size(); ++k) {
        const size_t at = a.tag() * batch + static_cast<size_t>(k);
        if (at >= todo.size()) break;
        index[a.task_ids(k)].push_back(todo[at]);
        auto e = early.find(a.task_ids(k));
        if (e != early.end()) {
          v1::TaskResult copy = e->second;  // kept: another spec may share the task
          take(todo[at], copy);
        }
      }
    }
    for (auto& r : *response.mutable_results()) {
      auto found = index.find(r.id());
      if (found == index.end()) {
        early.emplace(r.id(), std::move(r));
        continue;
      }
      const absl::InlinedVector<size_t, 1>& positions = found->second;
      for (size_t p = 0; p + 1 < positions.size(); ++p) {
        v1::TaskResult copy = r;
        take(positions[p], copy);
      }
      take(positions.back(), r);
    }
  }
  // Cancel only our own giving up; a call that ended by itself keeps its status.
  if (!failure.ok()) context.TryCancel();
  writer.join();
  const absl::Status finish = FromGrpc(stream->Finish());
  if (!failure.ok()) return failure;
  if (done < todo.size()) {
    if (!finish.ok()) return finish;
    return absl::InternalError(
        absl::StrCat("the stream ended after ", done, " of ", todo.size(), " results"));
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// RunStream on one daemon over the specs at `todo`: Stream calls until each has its
// result, again after an outage with `resume` (see StreamOptions). `deliver` runs once
// per spec, on this thread.
absl::Status StreamResuming(v1::TaskService::Stub& stub, const std::vector<v1::TaskSpec>& specs,
                            std::vector<size_t> todo, const std::string& key_prefix,
                            const Client::StreamOptions& options, absl::Duration reconnect_timeout,
                            const std::function<void(size_t, v1::TaskResult&)>& deliver,
                            StreamCancel* cancel) {
  const size_t batch = std::max<size_t>(1, options.batch_size);
  absl::flat_hash_set<size_t> seen;
  seen.reserve(todo.size());
  const std::vector<size_t> all = todo;
  auto take = [&](size_t i, v1::TaskResult& r) {
    if (!seen.insert(i).second) return false;
    deliver(i, r);
    return true;
  };
  // As RetryWhileUnavailable, but an outage is counted from the last result: a long call
  // that made progress gets the whole reconnect_timeout for each restart.
  Reconnect reconnect(options.timeout, reconnect_timeout);
  while (true) {
    const size_t before = seen.size();
    absl::Status status =
        StreamOnce(stub, specs, todo, key_prefix, batch, reconnect.left(), take, cancel);
    if (!options.resume || !absl::IsUnavailable(status)) return status;
    if (cancel != nullptr && cancel->cancelled()) return status;
    if (seen.size() > before) reconnect.Progressed();
    const std::optional<absl::Duration> delay = reconnect.NextDelay();
    if (!delay) return status;
    absl::SleepFor(*delay);
    todo.clear();
    for (size_t i : all) {
      if (!seen.contains(i)) todo.push_back(i);
    }
  }
}

}  // namespace

absl::Status Client::RunStream(const std::vector<v1::TaskSpec>& specs,
                               const std::function<void(size_t, v1::TaskResult&)>& on_result,
                               const StreamOptions& options) {
  if (specs.empty()) return absl::OkStatus();
  const std::string key_prefix = options.resume ? ShortRandomPrefix() : "";
  if (!impl_->cluster) {
    std::vector<size_t> todo(specs.size());
    for (size_t i = 0; i < todo.size(); ++i) todo[i] = i;
    return StreamResuming(*impl_->first().stub, specs, std::move(todo), key_prefix, options,
                          impl_->reconnect_timeout, on_result, nullptr);
  }
  // Several daemons: each spec to its key's owner or, without a key, least-loaded (task
  // by task); one Stream per daemon at once, each on a thread of its own, their results
  // handed to this thread.
  std::vector<std::pair<Member*, std::vector<size_t>>> parts;
  for (size_t i = 0; i < specs.size(); ++i) {
    Member* m = nullptr;
    if (!specs[i].idempotency_key().empty()) {
      ASSIGN_OR_RETURN(m, impl_->KeyOwnerOf(specs[i].idempotency_key()));
    } else {
      m = impl_->Pick({});
    }
    if (m == nullptr) return absl::UnavailableError("no daemon of the target accepts tasks now");
    impl_->Sent(m, 1);
    PartOf(parts, m).push_back(i);
  }
  StreamCancel cancel;
  using Result = std::pair<size_t, v1::TaskResult>;
  return FanIn<Result, std::vector<size_t>>(
      parts, cancel,
      [&](Member* m, std::vector<size_t>& positions, const std::function<void(Result)>& push) {
        return StreamResuming(
            *m->stub, specs, positions, key_prefix, options, impl_->reconnect_timeout,
            [&](size_t i, v1::TaskResult& r) { push(Result(i, std::move(r))); }, &cancel);
      },
      [&](Result& r) {
        on_result(r.first, r.second);
        return true;
      });
}

absl::StatusOr<std::vector<v1::TaskResult>> Client::RunMany(const std::vector<v1::TaskSpec>& specs,
                                                            const StreamOptions& options) {
  std::vector<v1::TaskResult> results(specs.size());
  absl::Status s = RunStream(
      specs, [&](size_t i, v1::TaskResult& r) { results[i] = std::move(r); }, options);
  if (!s.ok()) return s;
  return results;
}

void Client::WaitAsync(const std::string& id, std::function<void(absl::StatusOr<v1::Task>)> done,
                       absl::Duration timeout) {
  auto call =
      std::make_unique<AsyncWaitCall>(id, std::move(done), timeout, impl_->reconnect_timeout);
  call->request.add_task_ids(id);
  absl::StatusOr<Member*> owner = impl_->OwnerOf(id);
  if (!owner.ok()) {
    call->done(owner.status());
    return;
  }
  call->stub = (*owner)->stub.get();
  impl_->async().Start(std::move(call));
}

std::future<absl::StatusOr<v1::Task>> Client::WaitFuture(const std::string& id,
                                                         absl::Duration timeout) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<v1::Task>>>();
  std::future<absl::StatusOr<v1::Task>> future = promise->get_future();
  WaitAsync(
      id, [promise](absl::StatusOr<v1::Task> task) { promise->set_value(std::move(task)); },
      timeout);
  return future;
}

absl::StatusOr<std::vector<v1::Task>> Client::Cancel(const std::vector<std::string>& ids) {
  std::vector<std::pair<Member*, v1::CancelRequest>> parts;
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(Member * owner, impl_->OwnerOf(id));
    PartOf(parts, owner).add_task_ids(id);
  }
  absl::flat_hash_map<std::string, v1::Task> by_id;
  for (auto& [owner, request] : parts) {
    v1::CancelResponse response;
    grpc::ClientContext context;
    absl::Status status = FromGrpc(owner->stub->Cancel(&context, request, &response));
    if (!status.ok()) return status;
    if (parts.size() == 1) {
      return std::vector<v1::Task>(response.tasks().begin(), response.tasks().end());
    }
    for (v1::Task& t : *response.mutable_tasks()) by_id[t.id()] = std::move(t);
  }
  std::vector<v1::Task> out;
  for (const std::string& id : ids) {
    if (auto it = by_id.find(id); it != by_id.end()) out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<std::vector<v1::Task>> Client::List(const v1::ListRequest& request) {
  std::vector<v1::Task> out;
  // A daemon that never answered would be missing from the list without a word.
  if (impl_->cluster) {
    if (absl::Status s = impl_->ProbeUnnamed(); !s.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "cannot list every daemon's tasks: ", s.message(), " (docs/CLUSTER.md)"));
    }
  }
  for (auto& m : impl_->members) {
    {
      internal::MutexLock lock(&impl_->mu);
      if (impl_->cluster && (m->duplicate || m->name.empty())) continue;
    }
    v1::ListResponse response;
    grpc::ClientContext context;
    absl::Status status = FromGrpc(m->stub->List(&context, request, &response));
    if (!status.ok()) {
      if (!impl_->cluster) return status;
      return absl::Status(status.code(), absl::StrCat("daemon ", m->name, " (", m->address,
                                                      "): ", status.message()));
    }
    for (v1::Task& t : *response.mutable_tasks()) out.push_back(std::move(t));
  }
  if (impl_->cluster) {  // newest first, as each daemon lists them, and the limit of all
    std::stable_sort(out.begin(), out.end(), [](const v1::Task& a, const v1::Task& b) {
      return a.decision().submitted_unix_us() > b.decision().submitted_unix_us();
    });
    const size_t limit = request.limit() == 0 ? 100 : request.limit();
    if (out.size() > limit) out.resize(limit);
  }
  return out;
}

namespace {

// One Watch call until it ends, `deliver` returns false (then OK) or `timeout` passes
// (OK: the deadline is how the timeout is implemented, not a failure).
absl::Status WatchOne(v1::TaskService::Stub& stub, const v1::WatchRequest& request,
                      absl::Duration timeout,
                      const std::function<bool(const v1::TaskEvent&)>& deliver,
                      StreamCancel* cancel) {
  grpc::ClientContext context;
  const bool finite = timeout != absl::InfiniteDuration();
  if (finite) context.set_deadline(DeadlineAfter(std::max(timeout, absl::ZeroDuration())));
  StreamCancel::Registration registration(cancel, &context);
  std::unique_ptr<grpc::ClientReader<v1::TaskEvent>> reader = stub.Watch(&context, request);
  v1::TaskEvent event;
  bool stopped = false;
  while (reader->Read(&event)) {
    if (!deliver(event)) {
      stopped = true;
      context.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  if (stopped || (cancel != nullptr && cancel->cancelled())) return absl::OkStatus();
  if (finite && status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::OkStatus();
  }
  return FromGrpc(status);
}

}  // namespace

absl::Status Client::Watch(const v1::WatchRequest& request,
                           const std::function<bool(const v1::TaskEvent&)>& on_event,
                           absl::Duration timeout) {
  if (!impl_->cluster) return WatchOne(*impl_->first().stub, request, timeout, on_event, nullptr);
  // Several daemons: the ids' owners (every daemon for a watch of all tasks), one Watch
  // each on a thread of its own, the events handed to this thread.
  std::vector<std::pair<Member*, v1::WatchRequest>> parts;
  if (request.task_ids().empty()) {
    (void)impl_->ProbeUnnamed();
    internal::MutexLock lock(&impl_->mu);
    for (auto& m : impl_->members) {
      if (!m->name.empty() && !m->duplicate) parts.push_back({m.get(), request});
    }
  }
  for (const std::string& id : request.task_ids()) {
    ASSIGN_OR_RETURN(Member * owner, impl_->OwnerOf(id));
    auto part = std::find_if(parts.begin(), parts.end(), [&](auto& p) { return p.first == owner; });
    if (part == parts.end()) {
      v1::WatchRequest r = request;
      r.clear_task_ids();
      parts.push_back({owner, std::move(r)});
      part = parts.end() - 1;
    }
    part->second.add_task_ids(id);
  }
  if (parts.size() == 1) {
    return WatchOne(*parts[0].first->stub, parts[0].second, timeout, on_event, nullptr);
  }
  StreamCancel cancel;
  return FanIn<v1::TaskEvent, v1::WatchRequest>(
      parts, cancel,
      [&](Member* m, v1::WatchRequest& r, const std::function<void(v1::TaskEvent)>& push) {
        return WatchOne(
            *m->stub, r, timeout,
            [&](const v1::TaskEvent& e) {
              push(e);
              return true;
            },
            &cancel);
      },
      [&](v1::TaskEvent& e) { return on_event(e); });
}

absl::Status Client::Logs(const std::string& id, bool follow,
                          const std::function<void(const v1::OutputChunk&)>& on_chunk) {
  grpc::ClientContext context;
  v1::LogsRequest request;
  request.set_task_id(id);
  request.set_follow(follow);
  ASSIGN_OR_RETURN(Member * owner, impl_->OwnerOf(id));
  std::unique_ptr<grpc::ClientReader<v1::OutputChunk>> reader =
      owner->stub->Logs(&context, request);
  v1::OutputChunk chunk;
  while (reader->Read(&chunk)) on_chunk(chunk);
  return FromGrpc(reader->Finish());
}

absl::StatusOr<v1::Stats> Client::GetStats() {
  std::vector<DaemonStats> all = ClusterStats();
  for (DaemonStats& d : all) {
    if (d.stats.ok()) return std::move(d.stats);
  }
  return all.front().stats.status();
}

std::vector<Client::DaemonStats> Client::ClusterStats() {
  std::vector<DaemonStats> out;
  for (auto& m : impl_->members) {
    {
      internal::MutexLock lock(&impl_->mu);
      if (m->duplicate) continue;
    }
    v1::Stats response;
    grpc::ClientContext context;
    absl::Status status = FromGrpc(m->stub->GetStats(&context, v1::GetStatsRequest(), &response));
    DaemonStats d{m->address, response.daemon(), std::move(response)};
    if (!status.ok()) d.stats = status;
    out.push_back(std::move(d));
  }
  return out;
}

size_t Client::daemons() const { return impl_->members.size(); }

absl::StatusOr<std::vector<v1::HandlerInfo>> Client::ListHandlers() {
  v1::ListHandlersResponse response;
  grpc::ClientContext context;
  absl::Status status =
      FromGrpc(impl_->first().stub->ListHandlers(&context, v1::ListHandlersRequest(), &response));
  if (!status.ok()) return status;
  return std::vector<v1::HandlerInfo>(response.handlers().begin(), response.handlers().end());
}

}  // namespace taskrt
