// Shared plumbing of the `taskrt` command-line tool: global options, exit codes, error
// reporting, and the table / JSON output every subcommand uses. Internal to the CLI.
// Thread-safety: the CLI is single-threaded; nothing here is meant for concurrent use.
#ifndef TASKRT_CLIENT_CLI_COMMON_H_
#define TASKRT_CLIENT_CLI_COMMON_H_

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/util.h"
#include "google/protobuf/message.h"
#include "taskrt/client.h"

namespace taskrt::cli {

// The process exit codes, also listed in `taskrt --help`.
inline constexpr int kExitOk = 0;
inline constexpr int kExitTaskFailed = 1;   // a task did not succeed
inline constexpr int kExitUsage = 2;        // bad command line or bad input
inline constexpr int kExitTimeout = 3;      // a wait gave up
inline constexpr int kExitUnreachable = 4;  // no daemon answered
inline constexpr int kExitRpcError = 5;     // any other error from the daemon
inline constexpr int kExitDenied = 6;       // not allowed: token missing or refused, unsafe socket

// Options that come before (or, with fallthrough, after) the subcommand.
struct GlobalOptions {
  std::string socket_path;       // --socket; empty = the SDK's default path
  std::string target;            // --target, else $TASKRT_TARGET; overrides socket_path
  std::string token_file;        // --token-file; empty = $TASKRT_TOKEN, $TASKRT_TOKEN_FILE
  bool tls = false;              // --tls
  std::string tls_ca;            // --tls-ca; empty = $TASKRT_TLS_CA, else system roots
  std::string tls_cert;          // --tls-cert (mutual TLS, with --tls-key)
  std::string tls_key;           // --tls-key
  std::string tls_server_name;   // --tls-server-name
  std::string output = "table";  // --output / -o: "table" or "json"
  std::string color = "auto";    // --color: auto (a terminal, NO_COLOR unset), always, never

  bool json() const { return output == "json"; }
};

// What subcommand callbacks share: the parsed global options in, the exit code out.
struct CliContext {
  GlobalOptions global;
  int exit_code = kExitOk;
};

// The exit code for a failed SDK call: 3 for DEADLINE_EXCEEDED, 4 for UNAVAILABLE,
// 2 for INVALID_ARGUMENT / NOT_FOUND (bad input), 6 for UNAUTHENTICATED /
// PERMISSION_DENIED, else 5.
int ExitCodeFor(const absl::Status& status);

// Prints "taskrt: <message>" to stderr.
void PrintError(absl::string_view message);

// Prints the status as an error and returns ExitCodeFor(status).
int Fail(const absl::Status& status);

// Connects to the daemon named by the global options: --target, else --socket, else
// $TASKRT_TARGET, else the SDK's default socket; with the --token-file and --tls-*
// credentials (the SDK reads the TASKRT_TOKEN* and TASKRT_TLS_CA variables itself).
absl::StatusOr<std::unique_ptr<Client>> ConnectClient(const GlobalOptions& global);

// Parses a duration flag ("500ms", "30s", "2m"); empty text is `if_empty`.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view flag, const std::string& text,
                                             absl::Duration if_empty);

// The whole content of `path`, or of standard input for "-".
absl::StatusOr<std::string> ReadFileOrStdin(const std::string& path);

// Splits "key=value"; `flag` names the option in the error message.
absl::StatusOr<std::pair<std::string, std::string>> ParseKeyValue(absl::string_view flag,
                                                                  const std::string& text);

// The non-empty lines of `text`, with their 1-based line numbers.
std::vector<std::pair<int, std::string>> NonEmptyLines(const std::string& text);

// "0.2 ms", "812.4 ms", "12.3 s", "4m 05s".
using internal::FormatMicros;

// `bytes` as text for a terminal: pretty-printed when it is JSON, else as is.
std::string FormatOutputBytes(const std::string& bytes);

// The proto3 JSON mapping with proto field names and default values printed.
std::string ToJson(const google::protobuf::Message& message, bool pretty);

// Prints one message as pretty JSON, followed by a newline.
void PrintJson(const google::protobuf::Message& message);

// Prints messages as one pretty JSON array.
void PrintJsonArrayOf(const std::vector<const google::protobuf::Message*>& messages);
template <typename M>
void PrintJsonArray(const std::vector<M>& messages) {
  std::vector<const google::protobuf::Message*> pointers;
  pointers.reserve(messages.size());
  for (const M& m : messages) pointers.push_back(&m);
  PrintJsonArrayOf(pointers);
}

// A plain-text table with left-aligned columns separated by two spaces.
// Colour of task states in tables, watch lines and summaries (stdout): green succeeded,
// red failed and timed out, yellow cancelled, cyan running. `global` decides when
// (--color), read at the first Paint; main() sets it before parsing.
void SetColorOptions(const GlobalOptions* global);
bool ColorEnabled();
// `text` in the colour of `state` when colour is on, else `text`.
std::string Paint(absl::string_view text, v1::TaskState state);
// Columns `text` takes on a terminal (ANSI colour sequences take none).
size_t VisibleWidth(absl::string_view text);

class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  void Print(std::ostream& out) const;

 private:
  const std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// The tasks as a table (id, handler, state, executor, class, reason, run time), or as
// a JSON array with --output json.
void PrintTasks(const GlobalOptions& global, const std::vector<v1::Task>& tasks);

// 0 when every task succeeded, else kExitTaskFailed.
int ExitCodeForTasks(const std::vector<v1::Task>& tasks);
// For commands that do not wait (status, explain): kExitTaskFailed when any task is final
// and did not succeed (failed, cancelled, timed out), else 0 (queued and running too).
int ExitCodeForFinishedTasks(const std::vector<v1::Task>& tasks);

// Counts by final state and executor, wall time and throughput of a finished batch,
// then one line per task that did not succeed (at most a few).
void PrintBatchSummary(const std::vector<v1::Task>& tasks, absl::Duration wall, std::ostream& out);

}  // namespace taskrt::cli

#endif  // TASKRT_CLIENT_CLI_COMMON_H_
