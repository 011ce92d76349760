// The pure rules of a client of several daemons (docs/CLUSTER.md): which targets name
// a cluster, which daemon owns a task id, and which one owns an idempotency key. The
// Python SDK follows the same rules; tests/unit/cluster_test.cc pins them.
#ifndef TASKRT_CLIENT_CLUSTER_H_
#define TASKRT_CLIENT_CLUSTER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskrt::internal {

// The daemons a target names: for "ipv4:A:P,B:P" (or ipv6:) each address; for
// "dns:///HOST:PORT" (or "dns:HOST:PORT") each address HOST resolves to, with
// `dns_host` set to HOST (the name a TLS certificate must carry); for any other target,
// that target alone. INVALID_ARGUMENT for a DNS target without a port, UNAVAILABLE when
// the name does not resolve.
struct ClusterTarget {
  std::vector<std::string> addresses;
  std::string dns_host;
  bool cluster() const { return addresses.size() > 1 || !dns_host.empty(); }
};
absl::StatusOr<ClusterTarget> ResolveClusterTarget(const std::string& target);

// The daemon that owns task `id`: the text before the last '-' ("" when there is none).
absl::string_view OwnerOfId(absl::string_view id);

// FNV-1a, 64 bits, of `data`.
uint64_t Fnv1a64(absl::string_view data);

// MurmurHash3's 64-bit finalizer: FNV-1a alone mixes names that differ in one
// character so little that 30 keys over "node-0".."node-2" all went to two of them.
uint64_t Mix64(uint64_t h);

// Rendezvous hashing: the index in `names` of the daemon that owns `key`, the one with
// the highest Mix64(Fnv1a64(name + "\n" + key)), ties to the smaller name. `names` not
// empty.
size_t KeyOwner(const std::vector<std::string>& names, absl::string_view key);

}  // namespace taskrt::internal

#endif  // TASKRT_CLIENT_CLUSTER_H_
