#include "cli/common.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/util.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace taskrt::cli {
namespace {

// How many failed tasks a batch summary names before it stops listing them.
constexpr int kMaxFailuresListed = 10;

std::string RunTimeCell(const v1::Task& task) {
  const v1::Decision& d = task.decision();
  if (d.run_time_us() > 0) return FormatMicros(d.run_time_us());
  if (d.started_unix_us() > 0 && !IsFinal(task.state())) {
    return absl::StrCat(FormatMicros(internal::NowUnixMicros() - d.started_unix_us()), "+");
  }
  return "-";
}

std::string ClassCell(const v1::Decision& d) {
  if (d.reason() == v1::REASON_UNSPECIFIED) return "-";
  return ClassName(d.resolved_class());
}

}  // namespace

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kDeadlineExceeded:
      return kExitTimeout;
    case absl::StatusCode::kUnavailable:
      return kExitUnreachable;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
      return kExitUsage;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kExitDenied;
    default:
      return kExitRpcError;
  }
}

void PrintError(absl::string_view message) { std::cerr << "taskrt: " << message << std::endl; }

int Fail(const absl::Status& status) {
  PrintError(status.message().empty() ? status.ToString() : std::string(status.message()));
  return ExitCodeFor(status);
}

absl::StatusOr<std::unique_ptr<Client>> ConnectClient(const GlobalOptions& global) {
  ClientOptions options;
  options.socket_path = global.socket_path;
  options.target = global.target;
  if (options.target.empty() && options.socket_path.empty()) {
    // An explicit --socket wins over the variable, as --target does.
    if (const char* env = std::getenv("TASKRT_TARGET"); env != nullptr) options.target = env;
  }
  options.token_file = global.token_file;
  options.tls = global.tls;
  options.tls_ca_file = global.tls_ca;
  options.tls_cert_file = global.tls_cert;
  options.tls_key_file = global.tls_key;
  options.tls_server_name = global.tls_server_name;
  return Client::Connect(options);
}

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view flag, const std::string& text,
                                             absl::Duration if_empty) {
  if (text.empty()) return if_empty;
  absl::StatusOr<absl::Duration> d = internal::ParseDurationFlag(text);
  if (!d.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", d.status().message()));
  }
  return *d;
}

absl::StatusOr<std::string> ReadFileOrStdin(const std::string& path) {
  if (path == "-") {
    std::ostringstream buffer;
    buffer << std::cin.rdbuf();
    return buffer.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

absl::StatusOr<std::pair<std::string, std::string>> ParseKeyValue(absl::string_view flag,
                                                                  const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", text, "' is not KEY=VALUE (e.g. ", flag, " team=data)"));
  }
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
}

std::vector<std::pair<int, std::string>> NonEmptyLines(const std::string& text) {
  std::vector<std::pair<int, std::string>> lines;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == absl::string_view::npos) continue;
    lines.emplace_back(number, std::string(line));
  }
  return lines;
}

std::string FormatOutputBytes(const std::string& bytes) {
  const nlohmann::json parsed =
      nlohmann::json::parse(bytes, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || (!parsed.is_object() && !parsed.is_array())) return bytes;
  return parsed.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = false;
  std::string compact;
  const auto status = google::protobuf::util::MessageToJsonString(message, &compact, options);
  if (!status.ok()) {
    // Only possible for malformed messages; keep the output valid JSON regardless.
    return nlohmann::json{{"error", std::string(status.message())}}.dump();
  }
  if (!pretty) return compact;
  return nlohmann::json::parse(compact).dump(2);
}

void PrintJson(const google::protobuf::Message& message) {
  std::cout << ToJson(message, /*pretty=*/true) << "\n";
}

void PrintJsonArrayOf(const std::vector<const google::protobuf::Message*>& messages) {
  nlohmann::json array = nlohmann::json::array();
  for (const google::protobuf::Message* m : messages) {
    array.push_back(nlohmann::json::parse(ToJson(*m, /*pretty=*/false)));
  }
  std::cout << array.dump(2) << "\n";
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

namespace {
const GlobalOptions* g_color_options = nullptr;
}  // namespace

void SetColorOptions(const GlobalOptions* global) { g_color_options = global; }

bool ColorEnabled() {
  static const bool enabled = [] {
    const std::string when = g_color_options == nullptr ? "auto" : g_color_options->color;
    if (when == "always") return true;
    if (when == "never") return false;
    const char* no_color = std::getenv("NO_COLOR");  // https://no-color.org
    const char* term = std::getenv("TERM");
    return ::isatty(STDOUT_FILENO) == 1 && (no_color == nullptr || *no_color == '\0') &&
           !(term != nullptr && std::string_view(term) == "dumb");
  }();
  return enabled;
}

std::string Paint(absl::string_view text, v1::TaskState state) {
  if (!ColorEnabled()) return std::string(text);
  const char* code = nullptr;
  switch (state) {
    case v1::TASK_STATE_SUCCEEDED:
      code = "32";
      break;
    case v1::TASK_STATE_FAILED:
    case v1::TASK_STATE_TIMED_OUT:
      code = "31";
      break;
    case v1::TASK_STATE_CANCELLED:
      code = "33";
      break;
    case v1::TASK_STATE_RUNNING:
      code = "36";
      break;
    default:
      return std::string(text);
  }
  return absl::StrCat("\033[", code, "m", text, "\033[0m");
}

size_t VisibleWidth(absl::string_view text) {
  size_t width = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\033' && i + 1 < text.size() && text[i + 1] == '[') {
      while (i < text.size() && text[i] != 'm') ++i;  // skip "ESC [ ... m"
      continue;
    }
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++width;  // UTF-8 lead bytes
  }
  return width;
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t i = 0; i < headers_.size(); ++i) widths[i] = VisibleWidth(headers_[i]);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], VisibleWidth(row[i]));
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      line += cells[i];
      if (i + 1 < cells.size()) line.append(widths[i] - VisibleWidth(cells[i]) + 2, ' ');
    }
    out << line << "\n";
  };
  print_row(headers_);
  for (const auto& row : rows_) print_row(row);
}

void PrintTasks(const GlobalOptions& global, const std::vector<v1::Task>& tasks) {
  if (global.json()) {
    PrintJsonArray(tasks);
    return;
  }
  Table table({"ID", "HANDLER", "STATE", "EXECUTOR", "CLASS", "REASON", "RUN TIME", "AGE"});
  const int64_t now_us = internal::NowUnixMicros();
  for (const v1::Task& task : tasks) {
    const v1::Decision& d = task.decision();
    // AGE: since the task was submitted.
    const std::string age =
        d.submitted_unix_us() > 0 ? FormatMicros(now_us - d.submitted_unix_us()) : "-";
    table.AddRow({task.id(), task.spec().handler(), Paint(StateName(task.state()), task.state()),
                  ExecutorName(d.executor()), ClassCell(d), ReasonName(d.reason()),
                  RunTimeCell(task), age});
  }
  table.Print(std::cout);
}

int ExitCodeForTasks(const std::vector<v1::Task>& tasks) {
  for (const v1::Task& task : tasks) {
    if (task.state() != v1::TASK_STATE_SUCCEEDED) return kExitTaskFailed;
  }
  return kExitOk;
}

int ExitCodeForFinishedTasks(const std::vector<v1::Task>& tasks) {
  for (const v1::Task& task : tasks) {
    if (IsFinal(task.state()) && task.state() != v1::TASK_STATE_SUCCEEDED) return kExitTaskFailed;
  }
  return kExitOk;
}

void PrintBatchSummary(const std::vector<v1::Task>& tasks, absl::Duration wall, std::ostream& out) {
  std::map<int, int> by_state;
  std::map<int, int> by_executor;
  for (const v1::Task& task : tasks) {
    ++by_state[task.state()];
    ++by_executor[task.decision().executor()];
  }
  const double seconds = absl::ToDoubleSeconds(wall);
  out << tasks.size() << " tasks in " << FormatMicros(absl::ToInt64Microseconds(wall));
  if (seconds > 0) {
    out << absl::StrFormat(" (%.1f tasks/s)", static_cast<double>(tasks.size()) / seconds);
  }
  out << "\n\n";
  Table states({"STATE", "TASKS"});
  for (const auto& [state, count] : by_state) {
    const auto s = static_cast<v1::TaskState>(state);
    states.AddRow(
        {&out == &std::cout ? Paint(StateName(s), s) : StateName(s), absl::StrCat(count)});
  }
  states.Print(out);
  out << "\n";
  Table executors({"EXECUTOR", "TASKS"});
  for (const auto& [executor, count] : by_executor) {
    executors.AddRow({ExecutorName(static_cast<v1::Executor>(executor)), absl::StrCat(count)});
  }
  executors.Print(out);

  int listed = 0;
  int not_succeeded = 0;
  for (const v1::Task& task : tasks) {
    if (task.state() == v1::TASK_STATE_SUCCEEDED) continue;
    if (++not_succeeded == 1) out << "\nnot succeeded:\n";
    if (listed == kMaxFailuresListed) continue;
    ++listed;
    out << "  " << task.id() << " (" << task.spec().handler() << "): " << StateName(task.state());
    if (task.has_error()) {
      out << ": " << FailureName(task.error().kind());
      if (!task.error().message().empty()) out << ": " << task.error().message();
    }
    out << "\n";
  }
  if (not_succeeded > listed) {
    out << "  ... and " << not_succeeded - listed << " more (see `taskrt list --state failed`)\n";
  }
}

}  // namespace taskrt::cli
