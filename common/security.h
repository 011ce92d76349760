// File: common/security.h
//
// What a client checks before it trusts a daemon's unix socket or sends a daemon its
// token: pure rules over the file system and the target text, shared by the C++ SDK and
// the CLI. Internal to taskrt; the Python SDK implements the same rules (keep them in
// step with this header).
//
// Example:
//   RETURN_IF_ERROR(internal::CheckSocketOwner("/tmp/taskrt-1000/taskrt.sock"));
//   ASSIGN_OR_RETURN(std::string token, internal::ReadTokenFile(path));
//
// Thread-safety: every function is safe to call from any thread.
#ifndef TASKRT_COMMON_SECURITY_H_
#define TASKRT_COMMON_SECURITY_H_

#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskrt::internal {

// Where the system service (deploy/taskrtd.service) listens.
inline constexpr char kSystemSocketPath[] = "/run/taskrt/taskrt.sock";

// Whom CheckSocketOwner trusts. The defaults are what clients use; tests change them.
struct SocketTrustRule {
  // The user the client runs as. Default: geteuid().
  uid_t caller_uid = ::geteuid();
  // The system service's socket, which may belong to the service's own user (systemd's
  // DynamicUser= picks a uid at each start). Default: kSystemSocketPath.
  std::string system_socket_path = kSystemSocketPath;
};

// Refuses a unix socket that someone other than the caller may have put in place, so
// that a client never sends its tasks (or reads results) from a process impersonating
// taskrtd. The rule, for a socket path P in directory D:
//   1. D (the directory itself, and the symbolic link if D is one) must be owned by the
//      caller or root, and must not be writable by group or others unless it has the
//      sticky bit (as /tmp has: others may add files but not replace ours).
//   2. P (the socket, and the symbolic link if P is one; then its target is checked the
//      same way) must be owned by the caller or root.
//   Exception, the system service: for P == system_socket_path, D and P may also be owned
//   by D's owner when D's parent (/run) is owned by root and not writable by group or
//   others, i.e. only root (systemd's RuntimeDirectory=) can have made D.
// Only the socket's own directory is checked, not every ancestor. A path where nothing
// exists passes (connecting then reports that no daemon runs there). Because D is
// checked too, the answer stays true while the client reconnects later: nobody else can
// put a socket into a directory that passed.
// Errors: PERMISSION_DENIED, with the path, the owner found and what to do.
absl::Status CheckSocketOwner(const std::string& path, const SocketTrustRule& rule = {});

// Reads a bearer token from `path`: the whole file, surrounding whitespace trimmed (the
// daemon writes one line of hex). Like ssh with private keys, refuses a file that group
// or others may access (mode & 077), with "chmod 600 <path>" in the message.
// Errors: INVALID_ARGUMENT for an unreadable, empty, too large (> 4 KiB) or shared file,
// or a token ValidateToken refuses.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// OK when `token` can be sent as "authorization: Bearer <token>": non-empty, printable
// ASCII without spaces. INVALID_ARGUMENT otherwise; the message names `source` (e.g.
// "$TASKRT_TOKEN") but never the token.
absl::Status ValidateToken(absl::string_view token, absl::string_view source);

// The hosts a gRPC TCP target names, without ports or brackets: "127.0.0.1:7070" ->
// {"127.0.0.1"}, "[::1]:7070" -> {"::1"}, "ipv4:127.0.0.1:1,127.0.0.2:2" -> both,
// "dns:///example.com:443" -> {"example.com"}. Empty for unix targets and for schemes it
// does not know (those count as not loopback).
std::vector<std::string> TargetHosts(const std::string& target);

// The first host of `target` that is not loopback (see IsLoopbackHost in common/util.h),
// or "" when every host is loopback. A target without known hosts returns itself.
std::string FirstNonLoopbackHost(const std::string& target);

}  // namespace taskrt::internal

#endif  // TASKRT_COMMON_SECURITY_H_
