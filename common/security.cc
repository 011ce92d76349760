#include "common/security.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/util.h"

namespace taskrt::internal {
namespace {

// A token file is one line of hex; anything much larger is the wrong file.
constexpr size_t kMaxTokenFileBytes = 4096;

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// "uid 65534 (nobody)", or "uid 4242" for a uid without a name.
std::string DescribeUid(uid_t uid) {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buffer[1024];
  if (::getpwuid_r(uid, &pw, buffer, sizeof(buffer), &found) == 0 && found != nullptr) {
    return absl::StrCat("uid ", uid, " (", found->pw_name, ")");
  }
  return absl::StrCat("uid ", uid);
}

bool WritableByOthers(mode_t mode) {
  return (mode & (S_IWGRP | S_IWOTH)) != 0 && (mode & S_ISVTX) == 0;
}

// Who, besides the caller and root, may own the socket and its directory: for the
// system service's path, the owner of its directory when only root can have created
// that directory; otherwise nobody (the caller's uid stands for "nobody else").
uid_t ServiceOwner(const std::string& path, const SocketTrustRule& rule) {
  if (path != rule.system_socket_path) return rule.caller_uid;
  const std::string dir = DirectoryOf(path);
  struct stat parent, d;
  if (::lstat(DirectoryOf(dir).c_str(), &parent) != 0 || ::lstat(dir.c_str(), &d) != 0) {
    return rule.caller_uid;
  }
  if (parent.st_uid != 0 || (parent.st_mode & (S_IWGRP | S_IWOTH)) != 0 || !S_ISDIR(d.st_mode)) {
    return rule.caller_uid;
  }
  return d.st_uid;
}

class SocketChecker {
 public:
  SocketChecker(const std::string& path, const SocketTrustRule& rule)
      : path_(path), rule_(rule), service_owner_(ServiceOwner(path, rule)) {}

  absl::Status Check() const {
    const std::string dir = DirectoryOf(path_);
    struct stat st;
    if (::lstat(dir.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && !Trusted(st.st_uid)) {
      return Foreign(absl::StrCat("its directory ", dir, " is a symbolic link owned by "),
                     st.st_uid, absl::StrCat("Remove ", dir, " if you did not create it"));
    }
    if (::stat(dir.c_str(), &st) != 0) return absl::OkStatus();  // connecting will say why
    if (!Trusted(st.st_uid)) {
      return Foreign(absl::StrCat("its directory ", dir, " is owned by "), st.st_uid,
                     absl::StrCat("Remove the directory ", dir, " if you did not create it"));
    }
    if (WritableByOthers(st.st_mode)) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "refusing %s: its directory %s is writable by group or others (mode %04o) and has "
          "no sticky bit, so another user could replace the socket and impersonate taskrtd. "
          "Fix it with `chmod go-w %s`, or use a private directory (--socket)",
          path_, dir, st.st_mode & 07777, dir));
    }
    if (::lstat(path_.c_str(), &st) != 0) return absl::OkStatus();  // nothing there yet
    if (!Trusted(st.st_uid)) {
      return Foreign("it is owned by ", st.st_uid,
                     absl::StrCat("Remove it (rm ", path_, ") if you did not create it"));
    }
    return absl::OkStatus();
  }

 private:
  bool Trusted(uid_t uid) const {
    return uid == rule_.caller_uid || uid == 0 || uid == service_owner_;
  }

  absl::Status Foreign(absl::string_view what, uid_t owner, absl::string_view advice) const {
    return absl::PermissionDeniedError(absl::StrCat(
        "refusing ", path_, ": ", what, DescribeUid(owner), ", not by you (uid ", rule_.caller_uid,
        ") or root; someone else may be impersonating taskrtd. ", advice));
  }

  const std::string& path_;
  const SocketTrustRule& rule_;
  const uid_t service_owner_;
};

}  // namespace

absl::Status CheckSocketOwner(const std::string& path, const SocketTrustRule& rule) {
  absl::Status status = SocketChecker(path, rule).Check();
  if (!status.ok()) return status;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return absl::OkStatus();
  // A symbolic link that passed: its target must pass too. realpath resolves every
  // link, so this checks one level only.
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) return absl::OkStatus();  // dangling
  return SocketChecker(resolved, rule).Check();
}

absl::Status ValidateToken(absl::string_view token, absl::string_view source) {
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the token from ", source, " is empty"));
  }
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          absl::StrCat("the token from ", source,
                       " contains a space or a character that is not printable ASCII: it cannot be "
                       "sent as a bearer token (the daemon's token is one line of hex)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the token file ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  std::string text;
  absl::Status status;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    status = absl::InvalidArgumentError(absl::StrCat("the token file ", path, " is not a file"));
  } else if ((st.st_mode & 077) != 0) {
    status = absl::InvalidArgumentError(absl::StrFormat(
        "the token file %s may be read by other users (mode %04o): make it private with "
        "`chmod 600 %s`",
        path, st.st_mode & 07777, path));
  } else {
    char buffer[kMaxTokenFileBytes + 1];
    ssize_t n = 0;
    while (text.size() <= kMaxTokenFileBytes && (n = ::read(fd, buffer, sizeof(buffer))) > 0) {
      text.append(buffer, static_cast<size_t>(n));
    }
    if (n < 0) {
      status = absl::InvalidArgumentError(
          absl::StrCat("cannot read the token file ", path, ": ", std::strerror(errno)));
    } else if (text.size() > kMaxTokenFileBytes) {
      status = absl::InvalidArgumentError(
          absl::StrCat("the token file ", path, " is larger than ", kMaxTokenFileBytes,
                       " bytes: is it the right file? (the daemon's token is one line of hex)"));
    }
  }
  ::close(fd);
  if (!status.ok()) return status;
  const std::string token(absl::StripAsciiWhitespace(text));
  if (absl::Status valid = ValidateToken(token, absl::StrCat("the file ", path)); !valid.ok()) {
    return valid;
  }
  return token;
}

std::vector<std::string> TargetHosts(const std::string& target) {
  std::string rest = target;
  std::vector<std::string> addresses;
  if (absl::StartsWith(rest, "ipv4:") || absl::StartsWith(rest, "ipv6:")) {
    addresses = absl::StrSplit(rest.substr(5), ',', absl::SkipEmpty());
  } else if (absl::StartsWith(rest, "dns:")) {
    rest = rest.substr(4);
    if (absl::StartsWith(rest, "//")) {  // dns://[authority]/host:port
      const size_t slash = rest.find('/', 2);
      if (slash == std::string::npos) return {};
      rest = rest.substr(slash + 1);
    }
    addresses = {rest};
  } else if (absl::StartsWith(rest, "unix:") || absl::StartsWith(rest, "unix-abstract:") ||
             rest.find("://") != std::string::npos) {
    return {};  // unix:, unix-abstract:, or another scheme (xds:///...)
  } else {
    addresses = {rest};  // host:port, resolved by DNS
  }
  std::vector<std::string> hosts;
  for (const std::string& address : addresses) {
    std::string host = address;
    if (absl::StartsWith(host, "[")) {
      const size_t close = host.find(']');
      host = close == std::string::npos ? host.substr(1) : host.substr(1, close - 1);
    } else if (const size_t colon = host.rfind(':');
               colon != std::string::npos && host.find(':') == colon) {
      host = host.substr(0, colon);  // one colon: host:port; more: a bare IPv6 address
    }
    hosts.push_back(host);
  }
  return hosts;
}

std::string FirstNonLoopbackHost(const std::string& target) {
  const std::vector<std::string> hosts = TargetHosts(target);
  if (hosts.empty()) return target;
  for (const std::string& host : hosts) {
    if (!IsLoopbackHost(host)) return host;
  }
  return "";
}

}  // namespace taskrt::internal
