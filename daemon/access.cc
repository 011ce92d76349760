#include "daemon/access.h"

#include <fcntl.h>
#include <grp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace taskrt::daemon {
namespace {

constexpr size_t kMinTokenLength = 16;

std::array<unsigned char, 32> Sha256(absl::string_view s) {
  std::array<unsigned char, 32> out{};
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), out.data());
  return out;
}

absl::StatusOr<uid_t> ParseUser(absl::string_view value) {
  if (uint32_t n = 0; absl::SimpleAtoi(value, &n)) return static_cast<uid_t>(n);
  const std::string name(value);
  if (const passwd* pw = ::getpwnam(name.c_str()); pw != nullptr) return pw->pw_uid;
  return absl::InvalidArgumentError(absl::StrCat("no user named '", name, "'"));
}

absl::StatusOr<gid_t> ParseGroup(absl::string_view value) {
  if (uint32_t n = 0; absl::SimpleAtoi(value, &n)) return static_cast<gid_t>(n);
  const std::string name(value);
  if (const group* gr = ::getgrnam(name.c_str()); gr != nullptr) return gr->gr_gid;
  return absl::InvalidArgumentError(absl::StrCat("no group named '", name, "'"));
}

// The groups of `uid` from the user database (for token owners, who have no socket).
std::vector<gid_t> GroupsOf(uid_t uid, gid_t* primary) {
  const passwd* pw = ::getpwuid(uid);
  if (pw == nullptr) return {};
  *primary = pw->pw_gid;
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) return {};
  }
  groups.resize(static_cast<size_t>(n));
  return groups;
}

}  // namespace

Caller Caller::Daemon() { return Caller{UidOwner(::geteuid()), true, true}; }

std::string UidOwner(uid_t uid) { return absl::StrCat("uid:", uid); }

absl::StatusOr<AccessPolicy> AccessPolicy::Create(const AccessOptions& options, uid_t daemon_uid) {
  AccessPolicy p;
  p.daemon_uid_ = daemon_uid;
  if (!options.admin_group.empty()) {
    auto gid = ParseGroup(options.admin_group);
    if (!gid.ok())
      return absl::InvalidArgumentError(absl::StrCat("--admin-group: ", gid.status().message()));
    p.admin_gid_ = *gid;
  }
  for (const std::string& entry : options.allow_exec) {
    const auto colon = entry.find(':');
    const absl::string_view kind = absl::string_view(entry).substr(0, colon);
    const absl::string_view value = colon == std::string::npos
                                        ? absl::string_view()
                                        : absl::string_view(entry).substr(colon + 1);
    absl::Status error;
    if (entry == "all") {
      p.exec_all_ = true;
    } else if ((kind == "uid" || kind == "user") && !value.empty()) {
      auto uid = ParseUser(value);
      if (uid.ok()) p.exec_uids_.push_back(*uid);
      error = uid.status();
    } else if ((kind == "gid" || kind == "group") && !value.empty()) {
      auto gid = ParseGroup(value);
      if (gid.ok()) p.exec_gids_.push_back(*gid);
      error = gid.status();
    } else if (kind == "token" && !value.empty()) {
      p.exec_tokens_.push_back(entry);
    } else {
      error = absl::InvalidArgumentError(
          "expected uid:N, user:NAME, gid:N, group:NAME, token:NAME or all");
    }
    if (!error.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--allow-exec ", entry.substr(0, 200), ": ", error.message()));
    }
  }
  return p;
}

Caller AccessPolicy::ForPeer(uid_t uid, gid_t gid, const std::vector<gid_t>& groups) const {
  Caller c;
  c.name = UidOwner(uid);
  auto in = [&](gid_t g) {
    return gid == g || std::find(groups.begin(), groups.end(), g) != groups.end();
  };
  c.admin = uid == 0 || (admin_gid_.has_value() && in(*admin_gid_));
  c.may_exec = c.admin || uid == daemon_uid_ || exec_all_ ||
               std::find(exec_uids_.begin(), exec_uids_.end(), uid) != exec_uids_.end() ||
               std::any_of(exec_gids_.begin(), exec_gids_.end(), in);
  return c;
}

Caller AccessPolicy::ForTokenOwner(const std::string& owner) const {
  if (absl::StartsWith(owner, "uid:")) {
    uint32_t uid = 0;
    if (absl::SimpleAtoi(absl::string_view(owner).substr(4), &uid)) {
      gid_t primary = static_cast<gid_t>(-1);
      const std::vector<gid_t> groups = GroupsOf(uid, &primary);
      return ForPeer(uid, primary, groups);
    }
  }
  Caller c;
  c.name = absl::StrCat("token:", owner);
  c.may_exec = exec_all_ ||
               std::find(exec_tokens_.begin(), exec_tokens_.end(), c.name) != exec_tokens_.end();
  return c;
}

std::string AccessPolicy::HowToGrantExec(const Caller& caller) const {
  return absl::StrCat("the daemon's owner can grant it with taskrtd --allow-exec ", caller.name,
                      absl::StartsWith(caller.name, "uid:")
                          ? " (or --allow-exec group:NAME for a group, or make it an admin "
                            "with --admin-group)"
                          : "");
}

absl::StatusOr<TokenStore> TokenStore::Load(const std::string& path, uid_t daemon_uid) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read the token file ", path, ": ", std::strerror(errno)));
  }
  struct stat st {};
  ::fstat(fd, &st);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0 && text.size() < (1u << 20);) {
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the token file ", path, " can be read or written by others (mode ",
        absl::StrFormat("%04o", st.st_mode & 0777), "): it is a secret; chmod 600 it"));
  }
  TokenStore store;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() > 2 || fields[0].size() < kMinTokenLength) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file ", path, " line ", line_no,
                       ": expected 'TOKEN [OWNER]' with a token of at "
                       "least ",
                       kMinTokenLength, " characters (e.g. `openssl rand -hex 32`)"));
    }
    Entry e{Sha256(fields[0]), fields.size() == 2 ? std::string(fields[1]) : UidOwner(daemon_uid)};
    store.entries_.push_back(std::move(e));
  }
  if (store.entries_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " holds no token"));
  }
  return store;
}

absl::StatusOr<bool> TokenStore::CreateIfMissing(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the token file ", path, ": ", std::strerror(errno)));
  }
  ::fchmod(fd, 0600);  // whatever the umask
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    ::close(fd);
    ::unlink(path.c_str());
    return absl::InternalError("cannot generate a random token (RAND_bytes failed)");
  }
  std::string text;
  for (unsigned char b : raw) absl::StrAppend(&text, absl::Hex(b, absl::kZeroPad2));
  text += "\n";
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return absl::InternalError(absl::StrCat("cannot write the token file ", path));
  }
  return true;
}

std::optional<std::string> TokenStore::Lookup(absl::string_view token) const {
  const auto hash = Sha256(token);
  const Entry* found = nullptr;
  for (const Entry& e : entries_) {  // every entry is compared: no early exit
    if (CRYPTO_memcmp(e.hash.data(), hash.data(), hash.size()) == 0) found = &e;
  }
  if (found == nullptr) return std::nullopt;
  return found->owner;
}

}  // namespace taskrt::daemon
