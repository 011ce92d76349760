#include "common/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace taskrt::internal {

int64_t NowUnixMicros() { return absl::ToUnixMicros(absl::Now()); }

std::string SignalName(int signal) {
  switch (signal) {
    case SIGHUP:
      return "SIGHUP";
    case SIGINT:
      return "SIGINT";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGILL:
      return "SIGILL";
    case SIGTRAP:
      return "SIGTRAP";
    case SIGABRT:
      return "SIGABRT";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGKILL:
      return "SIGKILL";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGUSR2:
      return "SIGUSR2";
    case SIGPIPE:
      return "SIGPIPE";
    case SIGALRM:
      return "SIGALRM";
    case SIGTERM:
      return "SIGTERM";
    case SIGXCPU:
      return "SIGXCPU";
    case SIGXFSZ:
      return "SIGXFSZ";
    case SIGSYS:
      return "SIGSYS";
    default:
      return absl::StrCat("signal ", signal);
  }
}

std::string DefaultSocketPath() {
  if (const char* env = std::getenv("TASKRT_SOCKET"); env != nullptr && *env != '\0') {
    return env;
  }
  return PerUserSocketPath();
}

std::string PerUserSocketPath() {
  // The XDG spec says to ignore a relative XDG_RUNTIME_DIR.
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg == '/') {
    return absl::StrCat(xdg, "/taskrt/taskrt.sock");
  }
  return absl::StrCat("/tmp/taskrt-", ::getuid(), "/taskrt.sock");
}

bool IsLoopbackHost(const std::string& host) {
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (absl::AsciiStrToLower(h) == "localhost") return true;
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return ::inet_pton(AF_INET6, h.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

void InitCleanSpawnAttr(posix_spawnattr_t* attr, short extra_flags) {
  posix_spawnattr_init(attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigmask(attr, &none);
  posix_spawnattr_setsigdefault(attr, &all);
  posix_spawnattr_setflags(
      attr, static_cast<short>(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | extra_flags));
}

std::string FormatMicros(int64_t us) {
  if (us < 0) us = 0;
  if (us < 1'000'000) return absl::StrFormat("%.1f ms", static_cast<double>(us) / 1e3);
  if (us < 60'000'000) return absl::StrFormat("%.2f s", static_cast<double>(us) / 1e6);
  const int64_t s = us / 1'000'000;
  if (s < 3600) return absl::StrFormat("%dm %02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh %02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd %dh", s / 86400, (s % 86400) / 3600);
}

absl::StatusOr<absl::Duration> ParseDurationFlag(const std::string& text) {
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    if (seconds < 0) return absl::InvalidArgumentError("duration must not be negative");
    return absl::Seconds(seconds);
  }
  absl::Duration d;
  // absl has no unit for days; accept "7d" as people write it.
  if (!text.empty() && text.back() == 'd') {
    double days = 0;
    if (absl::SimpleAtod(text.substr(0, text.size() - 1), &days) && days >= 0) {
      return absl::Hours(24 * days);
    }
  }
  if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration '", text, "': use e.g. 500ms, 30s, 2m, 1h, 7d"));
  }
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("duration must not be negative");
  }
  return d;
}

namespace {

bool InRange(unsigned char c, unsigned char lo, unsigned char hi) { return c >= lo && c <= hi; }

}  // namespace

size_t Utf8SequenceLength(std::string_view s) {
  if (s.empty()) return 0;
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (InRange(c, 0xC2, 0xDF)) {
    len = 2;
  } else if (InRange(c, 0xE0, 0xEF)) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (InRange(c, 0xF0, 0xF4)) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < len || !InRange(b(1), lo, hi)) return 0;
  for (size_t i = 2; i < len; ++i) {
    if (!InRange(b(i), 0x80, 0xBF)) return 0;
  }
  return len;
}

std::string BoundedUtf8(std::string_view text, size_t max_bytes) {
  const std::string note = absl::StrCat("... [cut: ", text.size(), " bytes in all]");
  const size_t keep =
      text.size() <= max_bytes || note.size() >= max_bytes ? max_bytes : max_bytes - note.size();
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  size_t i = 0;
  while (i < text.size()) {
    const size_t len = Utf8SequenceLength(text.substr(i));
    if (out.size() + std::max<size_t>(len, 1) > keep) break;
    if (len == 0) {
      out.push_back('?');
      ++i;
    } else {
      out.append(text.substr(i, len));
      i += len;
    }
  }
  if (i < text.size() && out.size() + note.size() <= max_bytes) out += note;
  return out;
}

}  // namespace taskrt::internal
