// Listener: the daemon accepts its unix-socket and loopback-TCP connections itself and
// hands each one to gRPC (grpc::AddInsecureChannelFromFd), so that every call can be
// tied to who made it: gRPC's peer string for such a connection is "fd:N", and the
// ConnectionRegistry maps N to the peer's credentials read at accept (SO_PEERCRED,
// SO_PEERGROUPS) — gRPC has no API that exposes them.
//
// Limits: at most `max_connections` open connections per listener and, on a unix
// socket, `max_connections_per_uid` per peer uid; a connection over a limit is closed
// at once. When the process runs out of descriptors (EMFILE/ENFILE), the listener
// sheds the connection with a reserved descriptor and backs off (100 ms doubling to
// 1 s), then accepts again: it never stops serving (gRPC 1.51's own TCP listener gives
// up for good on EMFILE). Idle connections are closed by gRPC
// (GRPC_ARG_MAX_CONNECTION_IDLE_MS, set by the daemon).
//
// Descriptor numbers: a connection's descriptor is moved to a number chosen by a
// rotating cursor over [kFirstConnectionFd, RLIMIT_NOFILE), so a number is not reused
// until the cursor comes round again. A call whose connection closed between its
// arrival and its identification therefore cannot be mistaken for a new connection
// that happened to get the same number.
//
// Thread-safety: one accept thread per Listener; ConnectionRegistry is thread-safe.
#ifndef TASKRT_DAEMON_LISTENER_H_
#define TASKRT_DAEMON_LISTENER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace grpc {
class Server;
}

namespace taskrt::daemon {

// A TCP address as the daemon's options take it: HOST:PORT with an IP address or
// "localhost" (127.0.0.1), IPv6 in brackets ("[::1]:7070"), port 0 for any free one.
struct HostPort {
  std::string host;  // numeric, without brackets
  int port = 0;
  bool loopback = false;
};
// INVALID_ARGUMENT, naming `option` ("--listen") and quoting the input, when `address`
// is not such an address.
absl::StatusOr<HostPort> ParseHostPort(const std::string& address, absl::string_view option);

struct PeerInfo {
  bool unix_socket = false;  // false: loopback TCP (identified by its token instead)
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  std::vector<gid_t> groups;  // supplementary groups (SO_PEERGROUPS)
};

// Maps the descriptor of each connection handed to gRPC to its peer.
class ConnectionRegistry {
 public:
  // The peer of a call whose ServerContext::peer() is `peer` ("fd:N"), or nullopt when
  // the call did not come through a Listener (or its connection is gone).
  std::optional<PeerInfo> Find(absl::string_view peer);

  void Add(int fd, dev_t dev, ino_t ino, int listener, PeerInfo peer);
  // Connections of `listener` and, of those, of `uid`, counted since the last Sweep
  // (connections gRPC closed since then are still counted).
  struct Counts {
    size_t listener = 0, uid = 0;
  };
  Counts Count(int listener, uid_t uid);
  // Forgets connections whose descriptor no longer refers to their socket (gRPC closed
  // it): O(connections) fstat calls.
  void Sweep();
  size_t size();

 private:
  struct Entry {
    dev_t dev;
    ino_t ino;
    int listener;
    PeerInfo peer;
  };
  static uint64_t Key(int listener, uid_t uid) {
    return (static_cast<uint64_t>(listener) << 32) | uid;
  }
  internal::Mutex mu_;
  std::unordered_map<int, Entry> by_fd_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<int, size_t> by_listener_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, size_t> by_uid_ ABSL_GUARDED_BY(mu_);  // Key(listener, uid)
};

struct ListenerOptions {
  size_t max_connections = 4096;         // per listener
  size_t max_connections_per_uid = 256;  // per peer uid, unix sockets only
  bool verbose = true;                   // log shed connections (rate-limited)
};

class Listener {
 public:
  // Binds and listens on a unix socket at `path` with permission bits `mode` (the
  // caller has checked the directory and holds the lock file).
  static absl::StatusOr<std::unique_ptr<Listener>> Unix(const std::string& path, unsigned mode,
                                                        ListenerOptions options);
  // Binds and listens on TCP `host:port` (port 0: any). No SO_REUSEPORT: a port in use
  // is an error.
  static absl::StatusOr<std::unique_ptr<Listener>> Tcp(const std::string& address,
                                                       ListenerOptions options);
  ~Listener();

  // Starts accepting; each connection goes to `server` (already started).
  void Start(grpc::Server* server, ConnectionRegistry* registry);
  // Stops accepting and closes the listening socket. Open connections stay with gRPC.
  void Stop();
  int port() const { return port_; }  // TCP only
  const std::string& name() const { return name_; }
  // Connections closed at once because of a limit or descriptor exhaustion.
  uint64_t shed() const { return shed_.load(); }

 private:
  Listener(int fd, bool unix_socket, std::string name, ListenerOptions options);
  void Loop();
  // Accepts one connection; false when there was none to accept (EAGAIN).
  bool AcceptOne();
  void Shed(int fd, const char* why);
  int MoveToCursor(int fd);

  const int fd_;
  const bool unix_socket_;
  const std::string name_;
  const ListenerOptions options_;
  const int id_;
  int port_ = 0;
  int wake_[2] = {-1, -1};  // Stop writes to wake_[1]
  int reserve_fd_ = -1;     // closed to shed a connection when out of descriptors
  int cursor_ = 0;
  absl::Duration backoff_ = absl::ZeroDuration();
  absl::Time last_log_ = absl::InfinitePast();
  absl::Time last_sweep_ = absl::InfinitePast();
  std::atomic<uint64_t> shed_{0};
  grpc::Server* server_ = nullptr;
  ConnectionRegistry* registry_ = nullptr;
  std::thread thread_;
};

// Raises RLIMIT_NOFILE's soft limit to its hard limit (at most 1,048,576).
void RaiseDescriptorLimit();

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_LISTENER_H_
