#include "cli/joblog.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace taskrt::cli {
namespace {

constexpr char kHeader[] =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

// A command on one line: tabs and newlines would break the format (parallel does the
// same), so they become spaces.
std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

absl::StatusOr<std::map<int, JobLogEntry>> ReadJobLog(const std::string& path) {
  std::map<int, JobLogEntry> out;
  std::ifstream in(path);
  if (!in.is_open()) {
    if (errno == ENOENT) return out;
    return absl::InvalidArgumentError(
        absl::StrCat("--joblog ", path, ": cannot read it: ", std::strerror(errno)));
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || (number == 1 && line.rfind("Seq\t", 0) == 0)) continue;
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits('\t', 8));
    JobLogEntry e;
    if (f.size() != 9 || !absl::SimpleAtoi(f[0], &e.seq) || !absl::SimpleAtod(f[2], &e.start_s) ||
        !absl::SimpleAtod(f[3], &e.runtime_s) || !absl::SimpleAtoi(f[5], &e.receive) ||
        !absl::SimpleAtoi(f[6], &e.exitval) || !absl::SimpleAtoi(f[7], &e.signal)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--joblog ", path, " line ", number,
          ": not a job log line (Seq, Host, Starttime, JobRuntime, Send, Receive, Exitval, "
          "Signal, Command, tab-separated)"));
    }
    e.host = f[1];
    e.command = f[8];
    out[e.seq] = std::move(e);  // a later line for the same job wins
  }
  return out;
}

JobLogEntry JobLogEntryFor(int seq, const std::string& command, const v1::Task& task) {
  JobLogEntry e;
  e.seq = seq;
  e.host = task.id();
  e.command = OneLine(command);
  const v1::Decision& d = task.decision();
  e.start_s = static_cast<double>(d.started_unix_us()) / 1e6;
  e.runtime_s = static_cast<double>(d.run_time_us()) / 1e6;
  if (task.state() == v1::TASK_STATE_SUCCEEDED && d.has_exit_code()) {
    e.exitval = d.exit_code();
    e.signal = d.exit_signal();
    const nlohmann::json out = nlohmann::json::parse(task.output(), nullptr, false);
    if (out.is_object() && out.contains("stdout_bytes") && out["stdout_bytes"].is_number()) {
      e.receive = out["stdout_bytes"].get<uint64_t>();
    }
  }
  return e;
}

absl::Status AppendJobLog(const std::string& path, const std::vector<JobLogEntry>& entries) {
  std::ifstream probe(path);
  const bool fresh = !probe.is_open() || probe.peek() == std::ifstream::traits_type::eof();
  probe.close();
  std::ofstream out(path, std::ios::app);
  if (!out.is_open()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--joblog ", path, ": cannot write it: ", std::strerror(errno)));
  }
  if (fresh) out << kHeader << "\n";
  for (const JobLogEntry& e : entries) {
    out << absl::StrFormat("%d\t%s\t%.3f\t%.3f\t0\t%d\t%d\t%d\t%s\n", e.seq, e.host, e.start_s,
                           e.runtime_s, e.receive, e.exitval, e.signal, e.command);
  }
  out.close();
  if (!out) return absl::InvalidArgumentError(absl::StrCat("--joblog ", path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace taskrt::cli
