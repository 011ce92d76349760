#include "daemon/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/util.h"
#include "daemon/validation.h"

namespace taskrt::daemon {
namespace {

// Descriptors below this stay for the daemon's own use (journal, workers, gRPC).
constexpr int kFirstConnectionFd = 1024;
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);
constexpr absl::Duration kSweepEvery = absl::Milliseconds(100);
std::atomic<int> next_listener_id{1};

std::vector<gid_t> PeerGroups(int fd) {
  std::vector<gid_t> groups(32);
  socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) {
    if (errno != ERANGE) return {};
    groups.resize(len / sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) return {};
  }
  groups.resize(len / sizeof(gid_t));
  return groups;
}

int NofileLimit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 1 << 20;
  return static_cast<int>(std::min<rlim_t>(rl.rlim_cur, 1 << 20));
}

}  // namespace

void RaiseDescriptorLimit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  const rlim_t want = std::min<rlim_t>(rl.rlim_max, 1 << 20);
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// --- ConnectionRegistry -----------------------------------------------------------

std::optional<PeerInfo> ConnectionRegistry::Find(absl::string_view peer) {
  int fd = -1;
  if (!absl::ConsumePrefix(&peer, "fd:") || !absl::SimpleAtoi(peer, &fd)) return std::nullopt;
  internal::MutexLock lock(&mu_);
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return std::nullopt;
  return it->second.peer;
}

void ConnectionRegistry::Add(int fd, dev_t dev, ino_t ino, int listener, PeerInfo peer) {
  internal::MutexLock lock(&mu_);
  auto old = by_fd_.find(fd);
  if (old != by_fd_.end()) {  // gRPC closed it and the number came round again
    --by_listener_[old->second.listener];
    --by_uid_[Key(old->second.listener, old->second.peer.uid)];
  }
  ++by_listener_[listener];
  ++by_uid_[Key(listener, peer.uid)];
  by_fd_[fd] = Entry{dev, ino, listener, std::move(peer)};
}

ConnectionRegistry::Counts ConnectionRegistry::Count(int listener, uid_t uid) {
  internal::MutexLock lock(&mu_);
  return Counts{by_listener_[listener], by_uid_[Key(listener, uid)]};
}

void ConnectionRegistry::Sweep() {
  internal::MutexLock lock(&mu_);
  for (auto it = by_fd_.begin(); it != by_fd_.end();) {
    struct stat st {};
    if (::fstat(it->first, &st) == 0 && st.st_ino == it->second.ino &&
        st.st_dev == it->second.dev) {
      ++it;
      continue;
    }
    --by_listener_[it->second.listener];
    --by_uid_[Key(it->second.listener, it->second.peer.uid)];
    it = by_fd_.erase(it);
  }
}

size_t ConnectionRegistry::size() {
  internal::MutexLock lock(&mu_);
  return by_fd_.size();
}

// --- Listener -----------------------------------------------------------------------

Listener::Listener(int fd, bool unix_socket, std::string name, ListenerOptions options)
    : fd_(fd),
      unix_socket_(unix_socket),
      name_(std::move(name)),
      options_(options),
      id_(next_listener_id++) {
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) wake_[0] = wake_[1] = -1;
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  cursor_ = kFirstConnectionFd;
}

Listener::~Listener() {
  Stop();
  for (int fd : {wake_[0], wake_[1], reserve_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

absl::StatusOr<std::unique_ptr<Listener>> Listener::Unix(const std::string& path, unsigned mode,
                                                         ListenerOptions options) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is too long"));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  // Bind with no access for anyone, then open it up to `mode`: no moment where the
  // socket is wider than asked, whatever the umask.
  const mode_t old_mask = ::umask(0777);
  const int bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0 || ::chmod(path.c_str(), mode) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int err = bound != 0 ? bind_errno : errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix:", path, ": ", std::strerror(err)));
  }
  return std::unique_ptr<Listener>(new Listener(fd, true, absl::StrCat("unix:", path), options));
}

absl::StatusOr<HostPort> ParseHostPort(const std::string& address, absl::string_view option) {
  const auto colon = address.rfind(':');
  HostPort out;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &out.port) ||
      out.port < 0 || out.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(option, " ", QuoteInput(address),
                                                   ": expected HOST:PORT, e.g. 127.0.0.1:7070"));
  }
  out.host = address.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (absl::AsciiStrToLower(out.host) == "localhost") out.host = "127.0.0.1";
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, out.host.c_str(), &v4) != 1 &&
      ::inet_pton(AF_INET6, out.host.c_str(), &v6) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(option, " ", QuoteInput(address), ": ",
                                                   QuoteInput(out.host), " is not an IP address"));
  }
  out.loopback = internal::IsLoopbackHost(out.host);
  return out;
}

absl::StatusOr<std::unique_ptr<Listener>> Listener::Tcp(const std::string& address,
                                                        ListenerOptions options) {
  ASSIGN_OR_RETURN(HostPort parsed, ParseHostPort(address, "--listen"));
  const std::string& host = parsed.host;
  const int port = parsed.port;
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v4);
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", address, ": ", host, " is not an IP address"));
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));  // never SO_REUSEPORT
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address, ": ", std::strerror(err),
                     err == EADDRINUSE ? " (another program has it)" : ""));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  auto l = std::unique_ptr<Listener>(new Listener(fd, false, address, options));
  l->port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                              : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return l;
}

void Listener::Start(grpc::Server* server, ConnectionRegistry* registry) {
  server_ = server;
  registry_ = registry;
  thread_ = std::thread([this] { Loop(); });
}

void Listener::Stop() {
  if (!thread_.joinable()) return;
  const char b = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_[1], &b, 1);
  thread_.join();
  ::close(fd_);
}

void Listener::Loop() {
  while (true) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    // While backing off from descriptor exhaustion, only the wake pipe is watched.
    const bool backing_off = backoff_ > absl::ZeroDuration();
    const int timeout = backing_off ? static_cast<int>(absl::ToInt64Milliseconds(backoff_)) : -1;
    const int n = ::poll(backing_off ? fds + 1 : fds, backing_off ? 1 : 2, timeout);
    if (n < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;  // Stop
    if (backing_off && n == 0) {
      backoff_ = -backoff_;  // sign marks "tried again": doubled if exhaustion persists
    }
    // Accept what is there, a bounded number at a time so Stop is heard promptly.
    for (int i = 0; i < 64 && AcceptOne(); ++i) {
    }
    if (backoff_ < absl::ZeroDuration()) backoff_ = absl::ZeroDuration();  // recovered
  }
}

bool Listener::AcceptOne() {
  const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EMFILE || errno == ENFILE) {
      // Out of descriptors: take the pending connection with the reserve and close it,
      // so the peer hears at once and the backlog does not keep poll awake.
      if (reserve_fd_ >= 0) ::close(reserve_fd_);
      const int shed = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (shed >= 0) Shed(shed, "the daemon is out of file descriptors (RLIMIT_NOFILE)");
      reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      const absl::Duration last = absl::AbsDuration(backoff_);
      backoff_ =
          last == absl::ZeroDuration() ? absl::Milliseconds(100) : std::min(last * 2, kMaxBackoff);
    }
    return false;  // EAGAIN, ECONNABORTED, EINTR...: poll again
  }
  PeerInfo peer;
  peer.unix_socket = unix_socket_;
  if (unix_socket_) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      Shed(fd, "its peer credentials could not be read");
      return true;
    }
    peer.uid = cred.uid;
    peer.gid = cred.gid;
    peer.groups = PeerGroups(fd);
  } else {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ConnectionRegistry::Counts counts = registry_->Count(id_, peer.uid);
  auto over = [&] {
    return counts.listener >= options_.max_connections ||
           (unix_socket_ && counts.uid >= options_.max_connections_per_uid);
  };
  if (over() && absl::Now() - last_sweep_ >= kSweepEvery) {
    // The counts include connections gRPC has closed since the last sweep: recount, at
    // most every kSweepEvery so that a flood cannot make each accept cost O(n).
    registry_->Sweep();
    last_sweep_ = absl::Now();
    counts = registry_->Count(id_, peer.uid);
  }
  if (counts.listener >= options_.max_connections) {
    Shed(fd, "the listener has its --max-connections open");
    return true;
  }
  if (unix_socket_ && counts.uid >= options_.max_connections_per_uid) {
    Shed(fd, "its uid has --max-connections-per-uid open");
    return true;
  }
  const int moved = MoveToCursor(fd);
  struct stat st {};
  ::fstat(moved, &st);
  registry_->Add(moved, st.st_dev, st.st_ino, id_, std::move(peer));
  grpc::AddInsecureChannelFromFd(server_, moved);
  return true;
}

int Listener::MoveToCursor(int fd) {
  const int limit = NofileLimit();
  if (limit - kFirstConnectionFd < 2 * static_cast<int>(options_.max_connections)) return fd;
  if (cursor_ >= limit) cursor_ = kFirstConnectionFd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, cursor_);
  if (moved < 0 && cursor_ != kFirstConnectionFd) {
    cursor_ = kFirstConnectionFd;  // came round: start again from the bottom
    moved = ::fcntl(fd, F_DUPFD_CLOEXEC, cursor_);
  }
  if (moved < 0) return fd;
  ::close(fd);
  cursor_ = moved + 1;
  return moved;
}

void Listener::Shed(int fd, const char* why) {
  ::close(fd);
  ++shed_;
  const absl::Time now = absl::Now();
  if (options_.verbose && now - last_log_ > absl::Seconds(10)) {
    last_log_ = now;
    std::fprintf(stderr, "taskrtd: %s: closed a new connection: %s (%llu so far)\n", name_.c_str(),
                 why, static_cast<unsigned long long>(shed_.load()));
  }
}

}  // namespace taskrt::daemon
