// Who is calling and what they may do: the principal of every call (Caller), the
// rules that make a caller an admin or let it run commands (AccessPolicy), and the
// bearer tokens that identify TCP callers (TokenStore).
//
// A unix-socket caller is its peer uid (SO_PEERCRED, see listener.h); a TCP caller is
// the owner of the token it presents. Tasks record their owner's name; a caller sees
// and touches only tasks it owns unless it is an admin (root, or a member of
// --admin-group). Handlers that run caller-chosen code (sys.exec, io.read_file,
// hash.sha256 of a path) are a privilege: the daemon's own uid, admins, and what
// --allow-exec grants.
//
// Thread-safety: all three are immutable after construction and safe to share.
#ifndef TASKRT_DAEMON_ACCESS_H_
#define TASKRT_DAEMON_ACCESS_H_

#include <sys/types.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskrt::daemon {

struct Caller {
  std::string name;       // the owner recorded on tasks: "uid:1000" or "token:NAME"
  bool admin = false;     // sees and touches every task, sees per-owner stats
  bool may_exec = false;  // may submit privileged handlers
  // The daemon itself (in-process calls): an admin with every privilege.
  static Caller Daemon();
};

// The name a task of `uid` is recorded under.
std::string UidOwner(uid_t uid);

struct AccessOptions {
  // Members of this group (and root) are admins. Empty: root only.
  std::string admin_group;
  // Who else may run privileged handlers, each "uid:N", "user:NAME", "gid:N",
  // "group:NAME", "token:NAME" or "all". The daemon's own uid and admins always may.
  std::vector<std::string> allow_exec;
};

class AccessPolicy {
 public:
  // INVALID_ARGUMENT for an entry that does not parse or names an unknown user/group.
  static absl::StatusOr<AccessPolicy> Create(const AccessOptions& options, uid_t daemon_uid);
  AccessPolicy() = default;

  // A unix-socket peer: its uid, primary gid and supplementary groups.
  Caller ForPeer(uid_t uid, gid_t gid, const std::vector<gid_t>& groups) const;
  // The owner of a token: "uid:N" acts as that local user (its groups from the user
  // database), any other name as "token:NAME".
  Caller ForTokenOwner(const std::string& owner) const;
  // What the refusal of a privileged handler says: which option would grant it.
  std::string HowToGrantExec(const Caller& caller) const;

 private:
  uid_t daemon_uid_ = 0;
  std::optional<gid_t> admin_gid_;
  bool exec_all_ = false;
  std::vector<uid_t> exec_uids_;
  std::vector<gid_t> exec_gids_;
  std::vector<std::string> exec_tokens_;  // "token:NAME"
};

// Bearer tokens for TCP callers. A token file holds one token per line, optionally
// followed by whitespace and its owner ("uid:N" or a name); a line with a token alone
// is owned by the daemon's uid. '#' starts a comment. Lookup hashes the presented token
// and compares it with every stored hash in constant time.
class TokenStore {
 public:
  // Reads `path`. FAILED_PRECONDITION when the file is readable or writable by group or
  // others (it is a secret: chmod 600), INVALID_ARGUMENT for a malformed line, short
  // token (< 16 characters) or no token at all.
  static absl::StatusOr<TokenStore> Load(const std::string& path, uid_t daemon_uid);
  // Creates `path` (mode 0600, whatever the umask) holding one new random token of 64
  // hex characters, unless it exists. Returns whether it was created.
  static absl::StatusOr<bool> CreateIfMissing(const std::string& path);

  // The owner of `token`, or nullopt.
  std::optional<std::string> Lookup(absl::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::array<unsigned char, 32> hash;
    std::string owner;
  };
  std::vector<Entry> entries_;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_ACCESS_H_
