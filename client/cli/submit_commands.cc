// `taskrt submit` and `taskrt exec`: build task specs from the command line, submit them
// (one task, or one atomic batch), and optionally wait and report.
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/joblog.h"
#include "cli/progress.h"
#include "common/task_state.h"
#include "nlohmann/json.hpp"

namespace taskrt::cli {
namespace {

// The built-in handler that runs a command (see worker/).
constexpr char kExecHandler[] = "sys.exec";
// Exit status a shell reports for a process killed by signal N.
constexpr int kSignalExitBase = 128;

// Options shared by every subcommand that submits tasks.
struct SpecOptions {
  std::string class_name = "auto";
  std::string timeout;  // the task's own timeout; empty = the daemon's default
  int priority = 0;
  std::vector<std::string> labels;
  unsigned attempts = 1;
  std::string retry_backoff;
  std::string idempotency_key;
  bool wait = false;
};

void AddSpecOptions(CLI::App* sub, SpecOptions* opts) {
  sub->add_option("--class", opts->class_name,
                  "Task class: auto (the daemon decides), cpu (a cpu worker process, one "
                  "task at a time) or io (the io worker: its event loop for async handlers "
                  "such as sys.sleep and sys.exec, else one of its threads)")
      ->type_name("CLASS")
      ->default_val("auto");
  sub->add_option("--timeout", opts->timeout,
                  "Per-task timeout, e.g. 500ms, 30s, 2m (default: the daemon's)")
      ->type_name("DURATION");
  sub->add_option("--priority", opts->priority, "Higher runs first; FIFO within a priority")
      ->type_name("N")
      ->default_val(0);
  sub->add_option("--label", opts->labels, "Label KEY=VALUE attached to the task (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  sub->add_option("--attempts", opts->attempts,
                  "Runs allowed in all: a worker crash, a timeout, a daemon restart or a "
                  "retryable handler error is retried while attempts remain")
      ->type_name("N")
      ->default_val(1)
      ->check(CLI::Range(1, 100));
  sub->add_option("--retry-backoff", opts->retry_backoff,
                  "Delay before the 2nd attempt, doubling after (default 500ms, at most 60s)")
      ->type_name("DURATION");
  sub->add_option("--idempotency-key", opts->idempotency_key,
                  "Submitting the same key again returns the existing task instead of a new "
                  "one (for a batch: KEY-<line number>)")
      ->type_name("KEY");
  sub->add_flag("--wait,-w", opts->wait, "Wait for the task(s) to finish and report");
}

// Fills the fields common to all tasks of one command line.
absl::Status ApplySpecOptions(const SpecOptions& opts, v1::TaskSpec* spec) {
  absl::StatusOr<v1::TaskClass> task_class = ParseClass(opts.class_name);
  if (!task_class.ok()) return task_class.status();
  spec->set_requested_class(*task_class);
  absl::StatusOr<absl::Duration> timeout =
      ParseDuration("--timeout", opts.timeout, absl::ZeroDuration());
  if (!timeout.ok()) return timeout.status();
  // Round up: 0 on the wire means "the daemon's default", not "no time at all".
  spec->set_timeout_ms(static_cast<uint64_t>(
      absl::ToInt64Milliseconds(absl::Ceil(*timeout, absl::Milliseconds(1)))));
  spec->set_priority(opts.priority);
  spec->set_max_attempts(opts.attempts);
  absl::StatusOr<absl::Duration> backoff =
      ParseDuration("--retry-backoff", opts.retry_backoff, absl::ZeroDuration());
  if (!backoff.ok()) return backoff.status();
  spec->set_retry_backoff_ms(static_cast<uint64_t>(absl::ToInt64Milliseconds(*backoff)));
  spec->set_idempotency_key(opts.idempotency_key);
  for (const std::string& label : opts.labels) {
    absl::StatusOr<std::pair<std::string, std::string>> kv = ParseKeyValue("--label", label);
    if (!kv.ok()) return kv.status();
    (*spec->mutable_labels())[kv->first] = kv->second;
  }
  return absl::OkStatus();
}

// nlohmann's what() starts with "[json.exception.parse_error.101] "; keep the rest,
// which names the line, column and what was expected.
std::string JsonErrorText(const nlohmann::json::exception& e) {
  std::string text = e.what();
  if (!text.empty() && text[0] == '[') {
    const size_t end = text.find("] ");
    if (end != std::string::npos) text = text.substr(end + 2);
  }
  return text;
}

absl::Status ValidateJson(absl::string_view what, const std::string& text) {
  try {
    const nlohmann::json parsed = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON: ", JsonErrorText(e)));
  }
  return absl::OkStatus();
}

// Prints the ids of submitted tasks: one per line, or the SubmitResponse as JSON.
void PrintSubmitted(const GlobalOptions& global, const std::vector<std::string>& ids) {
  if (global.json()) {
    v1::SubmitResponse response;
    for (const std::string& id : ids) response.add_task_ids(id);
    PrintJson(response);
    return;
  }
  for (const std::string& id : ids) std::cout << id << "\n";
}

// Submits one task. Without `wait` prints its id and returns nullopt; with it, returns
// the final task.
absl::StatusOr<std::optional<v1::Task>> SubmitOne(Client& client, const GlobalOptions& global,
                                                  const v1::TaskSpec& spec, bool wait) {
  absl::StatusOr<std::string> id = client.Submit(spec);
  if (!id.ok()) return id.status();
  if (!wait) {
    PrintSubmitted(global, {*id});
    return std::nullopt;
  }
  CancelOnInterrupt on_ctrl_c(client, {*id});
  absl::StatusOr<v1::Task> task = client.Wait(*id);
  if (!task.ok()) return task.status();
  return std::optional<v1::Task>(*std::move(task));
}

// A submitted batch after waiting for all of it.
struct FinishedBatch {
  std::vector<v1::Task> tasks;  // in submission order
  absl::Duration wall;          // from submitting to the last task being final
};

// Submits `specs` as one atomic batch. Without `wait`, prints the ids and returns an
// empty batch; with it, waits for every task.
absl::StatusOr<FinishedBatch> SubmitBatch(Client& client, const GlobalOptions& global,
                                          const std::vector<v1::TaskSpec>& specs, bool wait) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<std::string>> ids = client.SubmitBatch(specs);
  if (!ids.ok()) return ids.status();
  if (!wait) {
    PrintSubmitted(global, *ids);
    return FinishedBatch{};
  }
  CancelOnInterrupt on_ctrl_c(client, *ids);
  absl::StatusOr<std::vector<v1::Task>> tasks;
  {
    BatchProgress progress(client, *ids, StderrIsTerminal());
    tasks = client.WaitAll(*ids);
  }
  if (!tasks.ok()) return tasks.status();
  return FinishedBatch{*std::move(tasks), absl::Now() - start};
}

// --- submit ---------------------------------------------------------------------------

struct SubmitOptions {
  std::string handler;
  std::string json;
  std::string input_file;
  std::string json_lines;
  SpecOptions spec;
};

// Prints a finished single task for `submit --wait`.
void PrintSubmitResult(const GlobalOptions& global, const v1::Task& task) {
  if (global.json()) {
    PrintJson(task);
    return;
  }
  std::cout << "state: " << StateName(task.state()) << "\n";
  if (task.state() == v1::TASK_STATE_SUCCEEDED) {
    if (task.output().empty()) {
      std::cout << "output: (empty)\n";
    } else {
      std::string text = FormatOutputBytes(task.output());
      if (text.back() != '\n') text.push_back('\n');
      std::cout << "output:\n" << text;
    }
  }
  std::cout << "\n" << ExplainDecision(task);
}

int RunSubmit(const SubmitOptions& opts, const CliContext& ctx) {
  v1::TaskSpec base;
  base.set_handler(opts.handler);
  if (absl::Status s = ApplySpecOptions(opts.spec, &base); !s.ok()) return Fail(s);

  std::vector<v1::TaskSpec> specs;
  if (!opts.json_lines.empty()) {
    absl::StatusOr<std::string> text = ReadFileOrStdin(opts.json_lines);
    if (!text.ok()) return Fail(text.status());
    // Validate every line before submitting anything: a batch is all or nothing.
    for (const auto& [number, line] : NonEmptyLines(*text)) {
      if (absl::Status s = ValidateJson(absl::StrCat("line ", number), line); !s.ok()) {
        PrintError(absl::StrCat(s.message(), " (in ",
                                opts.json_lines == "-" ? "stdin" : opts.json_lines,
                                "; nothing was submitted)"));
        return kExitUsage;
      }
      v1::TaskSpec spec = base;
      spec.set_input(line);
      if (!base.idempotency_key().empty()) {
        spec.set_idempotency_key(absl::StrCat(base.idempotency_key(), "-", number));
      }
      specs.push_back(std::move(spec));
    }
    if (specs.empty()) {
      PrintError(absl::StrCat(opts.json_lines,
                              " has no tasks (expected one JSON input "
                              "per line)"));
      return kExitUsage;
    }
  } else {
    v1::TaskSpec spec = base;
    if (!opts.input_file.empty()) {
      absl::StatusOr<std::string> input = ReadFileOrStdin(opts.input_file);
      if (!input.ok()) return Fail(input.status());
      spec.set_input(*std::move(input));
    } else if (!opts.json.empty()) {
      if (absl::Status s = ValidateJson("--json", opts.json); !s.ok()) {
        PrintError(absl::StrCat(s.message(), " (nothing was submitted)"));
        return kExitUsage;
      }
      spec.set_input(opts.json);
    } else {
      spec.set_input("{}");
    }
    specs.push_back(std::move(spec));
  }

  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());

  if (opts.json_lines.empty()) {
    absl::StatusOr<std::optional<v1::Task>> task =
        SubmitOne(**client, ctx.global, specs.front(), opts.spec.wait);
    if (!task.ok()) return Fail(task.status());
    if (!task->has_value()) return kExitOk;
    PrintSubmitResult(ctx.global, **task);
    return ExitCodeForTasks({**task});
  }
  absl::StatusOr<FinishedBatch> batch = SubmitBatch(**client, ctx.global, specs, opts.spec.wait);
  if (!batch.ok()) return Fail(batch.status());
  if (!opts.spec.wait) return kExitOk;
  if (ctx.global.json()) {
    PrintJsonArray(batch->tasks);
  } else {
    PrintBatchSummary(batch->tasks, batch->wall, std::cout);
  }
  return ExitCodeForTasks(batch->tasks);
}

// --- exec -----------------------------------------------------------------------------

struct ExecOptions {
  std::vector<std::string> command;
  std::string cwd;
  std::vector<std::string> env;
  std::string stdin_file;
  std::string jobs_file;
  std::string joblog;
  bool resume_failed = false;
  SpecOptions spec;
};

// What sys.exec reports about the command it ran.
struct ExecResult {
  int exit_code = 0;
  int signal = 0;
  std::string signal_name;
  std::string stdout_text;
  std::string stderr_text;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  uint64_t stdout_bytes = 0;  // what the command wrote in all (0 from older workers)
  uint64_t stderr_bytes = 0;

  // The status a shell would report: the exit code, or 128+N when killed by signal N.
  int ShellStatus() const { return signal > 0 ? kSignalExitBase + signal : exit_code; }
};

absl::StatusOr<ExecResult> ParseExecOutput(const std::string& output) {
  const nlohmann::json j = nlohmann::json::parse(output, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InternalError(
        absl::StrCat(kExecHandler, " returned output that is not a JSON object"));
  }
  ExecResult r;
  try {
    r.exit_code = j.value("exit_code", 0);
    r.signal = j.value("signal", 0);
    r.signal_name = j.value("signal_name", std::string());
    r.stdout_text = j.value("stdout", std::string());
    r.stderr_text = j.value("stderr", std::string());
    r.stdout_truncated = j.value("stdout_truncated", false);
    r.stderr_truncated = j.value("stderr_truncated", false);
    r.stdout_bytes = j.value("stdout_bytes", uint64_t{0});
    r.stderr_bytes = j.value("stderr_bytes", uint64_t{0});
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(
        absl::StrCat(kExecHandler, " returned unexpected output: ", JsonErrorText(e)));
  }
  return r;
}

// The sys.exec input for `argv`, with the options that apply to every command.
absl::StatusOr<std::string> ExecInput(const std::vector<std::string>& argv, const ExecOptions& opts,
                                      const std::string& stdin_text) {
  nlohmann::json input = {{"argv", argv}};
  if (!opts.env.empty()) {
    nlohmann::json env = nlohmann::json::object();
    for (const std::string& entry : opts.env) {
      absl::StatusOr<std::pair<std::string, std::string>> kv = ParseKeyValue("--env", entry);
      if (!kv.ok()) return kv.status();
      env[kv->first] = kv->second;
    }
    input["env"] = std::move(env);
  }
  if (!opts.cwd.empty()) input["cwd"] = opts.cwd;
  if (!stdin_text.empty()) input["stdin"] = stdin_text;
  try {
    return input.dump();
  } catch (const nlohmann::json::type_error& e) {
    // JSON strings must be UTF-8; sys.exec cannot carry arbitrary bytes.
    return absl::InvalidArgumentError(absl::StrCat(
        "the command, its environment or its stdin is not valid UTF-8 (", JsonErrorText(e), ")"));
  }
}

// The shell status of a finished sys.exec task, or 1 when the task did not succeed.
int ShellStatusOf(const v1::Task& task) {
  if (task.state() != v1::TASK_STATE_SUCCEEDED) return kExitTaskFailed;
  absl::StatusOr<ExecResult> result = ParseExecOutput(task.output());
  return result.ok() ? result->ShellStatus() : kExitTaskFailed;
}

// "stdout (kept 1048576 of 300000000 bytes)", or "" when not truncated.
std::string TruncationNote(absl::string_view stream, bool truncated, size_t kept, uint64_t total) {
  if (!truncated) return "";
  if (total == 0) return std::string(stream);
  return absl::StrCat(stream, " (kept ", kept, " of ", total, " bytes)");
}

// Reports one finished sys.exec task the way running the command locally would: its
// stdout and stderr verbatim. Returns the shell status, or 1 when the task failed.
// `printed_out`/`printed_err`: bytes of each stream already printed as they came
// (exec --wait, logs -f); only the rest is printed.
int ReportExec(const v1::Task& task, absl::string_view what, size_t printed_out = 0,
               size_t printed_err = 0) {
  if (task.state() != v1::TASK_STATE_SUCCEEDED) {
    std::string message = absl::StrCat(what, " ", StateName(task.state()));
    if (task.has_error()) {
      absl::StrAppend(&message, ": ", FailureName(task.error().kind()));
      if (!task.error().message().empty()) {
        absl::StrAppend(&message, ": ", task.error().message());
      }
    }
    absl::StrAppend(&message, " (task ", task.id(), "; `taskrt explain ", task.id(),
                    "` says more)");
    PrintError(message);
    return kExitTaskFailed;
  }
  absl::StatusOr<ExecResult> result = ParseExecOutput(task.output());
  if (!result.ok()) {
    PrintError(absl::StrCat(what, ": ", result.status().message()));
    return kExitTaskFailed;
  }
  std::cout << result->stdout_text.substr(std::min(printed_out, result->stdout_text.size()))
            << std::flush;
  std::cerr << result->stderr_text.substr(std::min(printed_err, result->stderr_text.size()))
            << std::flush;
  if (result->stdout_truncated || result->stderr_truncated) {
    PrintError(absl::StrCat("the worker truncated the ",
                            TruncationNote("stdout", result->stdout_truncated,
                                           result->stdout_text.size(), result->stdout_bytes),
                            result->stdout_truncated && result->stderr_truncated ? " and " : "",
                            TruncationNote("stderr", result->stderr_truncated,
                                           result->stderr_text.size(), result->stderr_bytes),
                            " of ", what, " (taskrtd --max-output-bytes raises the limit)"));
  }
  return result->ShellStatus();
}

// The specs of --jobs-file, one `/bin/sh -c LINE` per non-empty line, and the lines.
// Returns kExitOk, or the exit code after printing why (then nothing is submitted).
int ExecJobSpecs(const ExecOptions& opts, const v1::TaskSpec& base, const std::string& stdin_text,
                 std::vector<v1::TaskSpec>* specs, std::vector<std::string>* job_lines) {
  absl::StatusOr<std::string> text = ReadFileOrStdin(opts.jobs_file);
  if (!text.ok()) return Fail(text.status());
  for (auto& [number, line] : NonEmptyLines(*text)) {
    absl::StatusOr<std::string> input = ExecInput({"/bin/sh", "-c", line}, opts, stdin_text);
    if (!input.ok()) {
      PrintError(absl::StrCat("line ", number, ": ", input.status().message(),
                              " (nothing was submitted)"));
      return kExitUsage;
    }
    v1::TaskSpec spec = base;
    spec.set_input(*std::move(input));
    if (!base.idempotency_key().empty()) {
      spec.set_idempotency_key(absl::StrCat(base.idempotency_key(), "-", number));
    }
    specs->push_back(std::move(spec));
    job_lines->push_back(std::move(line));
  }
  if (specs->empty()) {
    PrintError(absl::StrCat(opts.jobs_file, " has no jobs (expected one command per line)"));
    return kExitUsage;
  }
  return kExitOk;
}

// The results of a waited-for --jobs-file batch: JSON, or each job's output in line order
// then the summary. Exit 1 when a job did not exit with status 0.
int ReportExecBatch(const FinishedBatch& batch, const std::vector<std::string>& job_lines,
                    const std::vector<int>& seqs, const CliContext& ctx) {
  if (ctx.global.json()) {
    PrintJsonArray(batch.tasks);
    for (const v1::Task& task : batch.tasks) {
      if (ShellStatusOf(task) != 0) return kExitTaskFailed;
    }
    return kExitOk;
  }
  // Jobs' outputs in line order (like `parallel -k`), then the summary on stderr so
  // that stdout is exactly the jobs' output.
  std::vector<std::string> failed;  // "job 3 `false`: status 1"
  for (size_t i = 0; i < batch.tasks.size(); ++i) {
    const std::string what = absl::StrCat("job ", i < seqs.size() ? seqs[i] : i + 1, " `",
                                          i < job_lines.size() ? job_lines[i] : "?", "`");
    const int status = ReportExec(batch.tasks[i], what);
    if (status == 0) continue;
    failed.push_back(batch.tasks[i].state() == v1::TASK_STATE_SUCCEEDED
                         ? absl::StrCat(what, ": status ", status)
                         : absl::StrCat(what, ": ", StateName(batch.tasks[i].state()), " (task ",
                                        batch.tasks[i].id(), ")"));
  }
  std::cerr << "\n";
  PrintBatchSummary(batch.tasks, batch.wall, std::cerr);
  if (failed.empty()) return kExitOk;
  std::cerr << "\n"
            << failed.size() << " of " << batch.tasks.size()
            << " jobs did not exit with status 0:\n";
  constexpr size_t kNamed = 20;  // the rest are counted
  for (size_t i = 0; i < failed.size() && i < kNamed; ++i) std::cerr << "  " << failed[i] << "\n";
  if (failed.size() > kNamed) std::cerr << "  and " << failed.size() - kNamed << " more\n";
  return kExitTaskFailed;
}

// Follows task `id`'s output live (Logs), printing each chunk as it comes; returns the
// bytes printed of stdout and stderr. A daemon without Logs (or a broken stream) prints
// nothing here: the caller prints the result's output instead.
std::pair<size_t, size_t> FollowOutput(Client& client, const std::string& id) {
  size_t out = 0, err = 0;
  absl::Status s = client.Logs(id, /*follow=*/true, [&](const v1::OutputChunk& chunk) {
    (chunk.is_stderr() ? std::cerr : std::cout) << chunk.data() << std::flush;
    (chunk.is_stderr() ? err : out) += chunk.data().size();
  });
  (void)s;  // whatever was printed counts; the result has the rest
  return {out, err};
}

// exec --wait of one command: its stdout and stderr as it writes them, then its status.
int RunExecStreaming(Client& client, const v1::TaskSpec& spec, const std::string& what) {
  absl::StatusOr<std::string> id = client.Submit(spec);
  if (!id.ok()) return Fail(id.status());
  CancelOnInterrupt on_ctrl_c(client, {*id});
  const auto [out, err] = FollowOutput(client, *id);
  absl::StatusOr<v1::Task> task = client.Wait(*id);
  if (!task.ok()) return Fail(task.status());
  return ReportExec(*task, what, out, err);
}

// --- logs ------------------------------------------------------------------------------

struct LogsOptions {
  std::string id;
  bool follow = false;
};

int RunLogs(const LogsOptions& opts, const CliContext& ctx) {
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<v1::Task> task = (*client)->Get(opts.id);
  if (!task.ok()) return Fail(task.status());
  if (task->spec().handler() != kExecHandler) {
    PrintError(absl::StrCat("task ", opts.id, " runs ", task->spec().handler(),
                            ", not a command (sys.exec): `taskrt status ", opts.id,
                            "` shows its output"));
    return kExitUsage;
  }
  const std::string what = absl::StrCat("task ", opts.id);
  if (internal::IsFinal(task->state())) return ReportExec(*task, what);
  if (!opts.follow) {  // what it wrote so far
    absl::Status s = (*client)->Logs(opts.id, false, [](const v1::OutputChunk& chunk) {
      (chunk.is_stderr() ? std::cerr : std::cout) << chunk.data() << std::flush;
    });
    return s.ok() ? kExitOk : Fail(s);
  }
  const auto [out, err] = FollowOutput(**client, opts.id);
  task = (*client)->Wait(opts.id);
  if (!task.ok()) return Fail(task.status());
  return ReportExec(*task, what, out, err);
}

// --resume-failed: drops the jobs whose latest line in `joblog` says they exited 0
// with the same command. Returns kExitOk, or the exit code after printing why.
int SkipSucceededJobs(const std::string& joblog, std::vector<v1::TaskSpec>* specs,
                      std::vector<std::string>* job_lines, std::vector<int>* seqs) {
  absl::StatusOr<std::map<int, JobLogEntry>> log = ReadJobLog(joblog);
  if (!log.ok()) return Fail(log.status());
  std::vector<v1::TaskSpec> kept_specs;
  std::vector<std::string> kept_lines;
  std::vector<int> kept_seqs;
  for (size_t i = 0; i < specs->size(); ++i) {
    auto it = log->find((*seqs)[i]);
    const std::string command = JobLogEntryFor(0, (*job_lines)[i], v1::Task()).command;
    if (it != log->end() && it->second.succeeded() && it->second.command == command) continue;
    kept_specs.push_back(std::move((*specs)[i]));
    kept_lines.push_back(std::move((*job_lines)[i]));
    kept_seqs.push_back((*seqs)[i]);
  }
  const size_t skipped = specs->size() - kept_specs.size();
  if (skipped > 0) {
    std::cerr << "taskrt: " << skipped << " of " << specs->size()
              << " jobs exited 0 before (--joblog " << joblog
              << "): " << (kept_specs.empty() ? "nothing to run" : "running the others") << "\n";
  }
  *specs = std::move(kept_specs);
  *job_lines = std::move(kept_lines);
  *seqs = std::move(kept_seqs);
  return kExitOk;
}

int RunExec(const ExecOptions& opts, const CliContext& ctx) {
  if (opts.jobs_file.empty() == opts.command.empty()) {
    PrintError(opts.command.empty()
                   ? "exec needs a command (`taskrt exec -- CMD ARGS...`) or --jobs-file"
                   : "exec takes either a command or --jobs-file, not both");
    return kExitUsage;
  }
  if (!opts.joblog.empty() && (opts.jobs_file.empty() || !opts.spec.wait)) {
    PrintError("--joblog needs --jobs-file and --wait (it records how each job ended)");
    return kExitUsage;
  }
  if (opts.resume_failed && opts.joblog.empty()) {
    PrintError("--resume-failed needs --joblog FILE (the log of an earlier run)");
    return kExitUsage;
  }
  v1::TaskSpec base;
  base.set_handler(kExecHandler);
  if (absl::Status s = ApplySpecOptions(opts.spec, &base); !s.ok()) return Fail(s);
  std::string stdin_text;
  if (!opts.stdin_file.empty()) {
    absl::StatusOr<std::string> text = ReadFileOrStdin(opts.stdin_file);
    if (!text.ok()) return Fail(text.status());
    stdin_text = *std::move(text);
  }

  std::vector<v1::TaskSpec> specs;
  std::vector<std::string> job_lines;
  if (!opts.jobs_file.empty()) {
    if (int rc = ExecJobSpecs(opts, base, stdin_text, &specs, &job_lines); rc != kExitOk) {
      return rc;
    }
  } else {
    absl::StatusOr<std::string> input = ExecInput(opts.command, opts, stdin_text);
    if (!input.ok()) return Fail(input.status());
    v1::TaskSpec spec = base;
    spec.set_input(*std::move(input));
    specs.push_back(std::move(spec));
  }

  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(ctx.global);
  if (!client.ok()) return Fail(client.status());

  const std::string what = absl::StrCat("`", absl::StrJoin(opts.command, " "), "`");
  if (opts.jobs_file.empty() && opts.spec.wait && !ctx.global.json()) {
    return RunExecStreaming(**client, specs.front(), what);
  }
  if (opts.jobs_file.empty()) {
    absl::StatusOr<std::optional<v1::Task>> task =
        SubmitOne(**client, ctx.global, specs.front(), opts.spec.wait);
    if (!task.ok()) return Fail(task.status());
    if (!task->has_value()) return kExitOk;
    if (ctx.global.json()) {
      PrintJson(**task);
      return ShellStatusOf(**task);
    }
    return ReportExec(**task, what);
  }

  std::vector<int> seqs(specs.size());
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i] = static_cast<int>(i) + 1;
  if (opts.resume_failed) {
    if (int rc = SkipSucceededJobs(opts.joblog, &specs, &job_lines, &seqs); rc != kExitOk) {
      return rc;
    }
    if (specs.empty()) return kExitOk;
  }
  absl::StatusOr<FinishedBatch> batch = SubmitBatch(**client, ctx.global, specs, opts.spec.wait);
  if (!batch.ok()) return Fail(batch.status());
  if (!opts.spec.wait) return kExitOk;
  if (!opts.joblog.empty()) {
    std::vector<JobLogEntry> entries;
    for (size_t i = 0; i < batch->tasks.size(); ++i) {
      entries.push_back(JobLogEntryFor(seqs[i], job_lines[i], batch->tasks[i]));
    }
    if (absl::Status s = AppendJobLog(opts.joblog, entries); !s.ok()) PrintError(s.message());
  }
  return ReportExecBatch(*batch, job_lines, seqs, ctx);
}

}  // namespace

void AddLogsCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<LogsOptions>();
  CLI::App* sub = app.add_subcommand(
      "logs", "Show a command's output (sys.exec): what it wrote so far, or all once it ended");
  sub->add_option("id", opts->id, "Task id (from taskrt exec)")->required()->type_name("ID");
  sub->add_flag("--follow,-f", opts->follow,
                "Keep printing what it writes until it ends, then exit with its status");
  sub->footer(
      "stdout and stderr go to stdout and stderr. For a running command, the daemon keeps\n"
      "what it wrote in its current run (up to taskrtd --max-output-bytes of each stream,\n"
      "as its result does). Exit status with -f or for an ended command: the command's\n"
      "(128+N for signal N), 1 when the task failed; 2 for a task that is not a command.");
  sub->callback([opts, &ctx] { ctx.exit_code = RunLogs(*opts, ctx); });
}

void AddSubmitCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<SubmitOptions>();
  CLI::App* sub = app.add_subcommand("submit", "Submit a task (or a batch) to a handler");
  sub->footer(
      "Examples:\n"
      "  taskrt submit math.primes --json '{\"below\":100000}' --wait\n"
      "  taskrt submit demo.upper --input-file note.txt --class io\n"
      "  taskrt submit math.primes --json-lines inputs.jsonl --wait\n\n"
      "Without --wait prints the task id(s); with -o json the SubmitResponse "
      "({\"task_ids\":[...]}). With --wait on one task prints its state, output and "
      "decision (exit 1 unless it succeeded); on a batch, a summary.");
  sub->add_option("handler", opts->handler, "Registered handler name, e.g. math.primes")
      ->type_name("HANDLER")
      ->required();
  CLI::Option* json = sub->add_option("--json", opts->json,
                                      "Task input as JSON text, checked locally before submitting "
                                      "(default: {})")
                          ->type_name("JSON");
  CLI::Option* file = sub->add_option("--input-file", opts->input_file,
                                      "Read the task input (any bytes) from PATH, - for stdin")
                          ->type_name("PATH");
  CLI::Option* lines =
      sub->add_option(
             "--json-lines", opts->json_lines,
             "Submit one task per non-empty line of FILE (- for stdin), each line a JSON input, "
             "as one atomic batch")
          ->type_name("FILE");
  json->excludes(file)->excludes(lines);
  file->excludes(lines);
  AddSpecOptions(sub, &opts->spec);
  sub->callback([opts, &ctx] { ctx.exit_code = RunSubmit(*opts, ctx); });
}

void AddExecCommand(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<ExecOptions>();
  CLI::App* sub =
      app.add_subcommand("exec", "Run a command (or a file of command lines) on a worker");
  sub->footer(
      "Examples:\n"
      "  taskrt exec --wait -- make -j1 test\n"
      "  taskrt exec --wait --env LC_ALL=C --cwd /srv/data -- sort big.txt\n"
      "  taskrt exec --wait --jobs-file jobs.txt     # like GNU parallel -k\n\n"
      "With --wait the command's stdout and stderr are printed verbatim and taskrt exits "
      "with its exit status (128+N if killed by signal N; 1 if the task itself failed). "
      "With --jobs-file each line runs as `/bin/sh -c LINE`; outputs are printed in line "
      "order, the summary goes to stderr, and the exit status is 1 if any job failed.");
  sub->add_option("command", opts->command, "The command and its arguments (after --)")
      ->type_name("CMD ARGS...");
  sub->add_option("--cwd", opts->cwd, "Working directory of the command on the worker")
      ->type_name("DIR");
  sub->add_option("--env", opts->env, "Environment variable K=V for the command (repeatable)")
      ->type_name("K=V")
      ->allow_extra_args(false);
  sub->add_option("--stdin-file", opts->stdin_file,
                  "Feed the content of FILE (- for stdin; UTF-8 text) to the command's stdin")
      ->type_name("FILE");
  sub->add_option("--jobs-file", opts->jobs_file,
                  "Run each non-empty line of FILE (- for stdin) as a shell command, as one "
                  "atomic batch")
      ->type_name("FILE");
  sub->add_option("--joblog", opts->joblog,
                  "With --jobs-file and --wait: append a line per job to FILE in GNU parallel's "
                  "--joblog format (Host = the task id)")
      ->type_name("FILE");
  sub->add_flag("--resume-failed", opts->resume_failed,
                "With --joblog: skip the jobs the log says exited 0 (same command), run the "
                "others, append their lines (like parallel --resume-failed)");
  AddSpecOptions(sub, &opts->spec);
  sub->callback([opts, &ctx] { ctx.exit_code = RunExec(*opts, ctx); });
}

}  // namespace taskrt::cli
