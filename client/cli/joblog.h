// The job log of `taskrt exec --jobs-file FILE --wait --joblog LOG`, in GNU parallel's
// --joblog format (tab-separated, a header line, then a line per finished job):
//   Seq  Host  Starttime  JobRuntime  Send  Receive  Exitval  Signal  Command
// Seq is the job's number (its place among the non-empty lines of FILE, as in the
// "job N" messages), Host the task's id, Starttime Unix seconds, JobRuntime seconds,
// Send 0, Receive the bytes of stdout, Exitval the command's exit status (-1 when the
// task did not succeed: timed out, cancelled, its worker crashed), Signal the signal
// that ended the command. With --resume-failed the log is read first: a job whose
// latest line says it exited 0 with the same command is skipped; the others run, and
// their lines are appended.
#ifndef TASKRT_CLIENT_CLI_JOBLOG_H_
#define TASKRT_CLIENT_CLI_JOBLOG_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "taskrt/v1/task.pb.h"

namespace taskrt::cli {

struct JobLogEntry {
  int seq = 0;
  std::string host;  // the task id
  double start_s = 0, runtime_s = 0;
  uint64_t receive = 0;
  int exitval = -1, signal = 0;
  std::string command;

  bool succeeded() const { return exitval == 0 && signal == 0; }
};

// The latest entry of each job in `path`. An absent file has none; INVALID_ARGUMENT
// (naming the line) for a line that is not of this format.
absl::StatusOr<std::map<int, JobLogEntry>> ReadJobLog(const std::string& path);

// The entry for job `seq` (`command`), finished as `task`.
JobLogEntry JobLogEntryFor(int seq, const std::string& command, const v1::Task& task);

// Appends `entries` to `path` (0644 less the umask), writing the header first when the
// file is new or empty.
absl::Status AppendJobLog(const std::string& path, const std::vector<JobLogEntry>& entries);

}  // namespace taskrt::cli

#endif  // TASKRT_CLIENT_CLI_JOBLOG_H_
