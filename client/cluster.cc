#include "client/cluster.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace taskrt::internal {
namespace {

// "HOST:PORT" or "[V6]:PORT" split into host and port; false without a port.
bool SplitHostPort(absl::string_view hostport, std::string* host, std::string* port) {
  if (absl::StartsWith(hostport, "[")) {
    const size_t close = hostport.find(']');
    if (close == absl::string_view::npos || close + 1 >= hostport.size() ||
        hostport[close + 1] != ':') {
      return false;
    }
    *host = std::string(hostport.substr(1, close - 1));
    *port = std::string(hostport.substr(close + 2));
  } else {
    const size_t colon = hostport.rfind(':');
    if (colon == absl::string_view::npos) return false;
    *host = std::string(hostport.substr(0, colon));
    *port = std::string(hostport.substr(colon + 1));
  }
  return !host->empty() && !port->empty();
}

absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host, const std::string& port) {
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", ::gai_strerror(rc)));
  }
  std::vector<std::string> out;
  for (struct addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[NI_MAXHOST];
    if (::getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) !=
        0) {
      continue;
    }
    std::string address = a->ai_family == AF_INET6 ? absl::StrCat("ipv6:[", text, "]:", port)
                                                   : absl::StrCat("ipv4:", text, ":", port);
    if (std::find(out.begin(), out.end(), address) == out.end()) out.push_back(address);
  }
  ::freeaddrinfo(found);
  if (out.empty()) return absl::UnavailableError(absl::StrCat(host, " has no address"));
  return out;
}

}  // namespace

absl::StatusOr<ClusterTarget> ResolveClusterTarget(const std::string& target) {
  ClusterTarget out;
  for (const char* scheme : {"ipv4:", "ipv6:"}) {
    if (absl::StartsWith(target, scheme) && absl::StrContains(target, ',')) {
      for (absl::string_view a :
           absl::StrSplit(absl::string_view(target).substr(5), ',', absl::SkipEmpty())) {
        out.addresses.push_back(absl::StrCat(scheme, a));
      }
      return out;
    }
  }
  if (absl::StartsWith(target, "dns:")) {
    absl::string_view rest = absl::string_view(target).substr(4);
    if (absl::StartsWith(rest, "//")) {  // dns://[authority]/host:port
      const size_t slash = rest.find('/', 2);
      rest = slash == absl::string_view::npos ? "" : rest.substr(slash + 1);
    }
    std::string host, port;
    if (!SplitHostPort(rest, &host, &port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the target ", target,
                       " names no port: write dns:///HOST:PORT, e.g. "
                       "dns:///taskrt.default.svc.cluster.local:7070"));
    }
    auto resolved = Resolve(host, port);
    if (!resolved.ok()) {
      return absl::UnavailableError(
          absl::StrCat("the cluster target ", target, ": ", resolved.status().message()));
    }
    out.addresses = *std::move(resolved);
    out.dns_host = host;
    return out;
  }
  out.addresses.push_back(target);
  return out;
}

absl::string_view OwnerOfId(absl::string_view id) {
  const size_t dash = id.rfind('-');
  return dash == absl::string_view::npos ? absl::string_view() : id.substr(0, dash);
}

uint64_t Fnv1a64(absl::string_view data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t Mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

size_t KeyOwner(const std::vector<std::string>& names, absl::string_view key) {
  size_t best = 0;
  uint64_t best_hash = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const uint64_t h = Mix64(Fnv1a64(absl::StrCat(names[i], "\n", key)));
    if (i == 0 || h > best_hash || (h == best_hash && names[i] < names[best])) {
      best = i;
      best_hash = h;
    }
  }
  return best;
}

}  // namespace taskrt::internal
