// Small helpers shared by the daemon, the worker and the client. Internal to taskrt.
#ifndef TASKRT_COMMON_UTIL_H_
#define TASKRT_COMMON_UTIL_H_

#include <spawn.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace taskrt::internal {

// Microseconds since the Unix epoch.
int64_t NowUnixMicros();

// "SIGSEGV" for 11, "signal 99" for unknown numbers.
std::string SignalName(int signal);

// The default socket path (see taskrt::DefaultSocketPath in taskrt/client.h):
// $TASKRT_SOCKET if set, else PerUserSocketPath().
std::string DefaultSocketPath();

// The per-user socket path, ignoring $TASKRT_SOCKET: $XDG_RUNTIME_DIR/taskrt/taskrt.sock
// when XDG_RUNTIME_DIR is an absolute path, else /tmp/taskrt-<uid>/taskrt.sock. The one
// definition of that path for the daemon, the SDK and the CLI.
std::string PerUserSocketPath();

// Where DefaultSocketPath() looks, in words, for the --help of taskrtd and taskrt (one
// text, so that they cannot drift from each other; keep it in step with the two above).
inline constexpr char kDefaultSocketText[] =
    "$TASKRT_SOCKET, else $XDG_RUNTIME_DIR/taskrt/taskrt.sock, else "
    "/tmp/taskrt-<uid>/taskrt.sock";

// True for the hosts that name this machine's loopback interface: 127.0.0.0/8, ::1
// (with or without brackets) and "localhost".
bool IsLoopbackHost(const std::string& host);

// A duration for people: "0.2 ms", "812.4 ms", "4.03 s", "4m 05s", "2h 05m", "3d 4h"
// (the same units as `taskrt stats`' uptimes).
std::string FormatMicros(int64_t us);

// Initialises `attr` so that a spawned child starts with an empty signal mask and
// default dispositions (the parent blocks or ignores some signals), plus `extra_flags`.
// The caller destroys it.
void InitCleanSpawnAttr(posix_spawnattr_t* attr, short extra_flags = 0);

// Parses "250ms", "30s", "2m", "1h", "1.5s"; a bare number is seconds.
absl::StatusOr<absl::Duration> ParseDurationFlag(const std::string& text);

// The length of the valid UTF-8 sequence at the start of `s` (RFC 3629: no overlong
// forms, no surrogates, nothing past U+10FFFF), or 0 when there is none (or `s` is empty).
size_t Utf8SequenceLength(std::string_view s);

// `text` as valid UTF-8 (protobuf `string` fields must be) of at most `max_bytes`
// bytes: each invalid byte becomes '?', and a longer text is cut at a character
// boundary and ends with a note of its full size. `max_bytes` should be at least 64.
std::string BoundedUtf8(std::string_view text, size_t max_bytes);

}  // namespace taskrt::internal

#endif  // TASKRT_COMMON_UTIL_H_
