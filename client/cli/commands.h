// The subcommands of the `taskrt` tool. Each Add...Command registers one subcommand,
// its options and a callback that runs it and stores the exit code in the context.
#ifndef TASKRT_CLIENT_CLI_COMMANDS_H_
#define TASKRT_CLIENT_CLI_COMMANDS_H_

#include "CLI/App.hpp"
#include "cli/common.h"

namespace taskrt::cli {

// submit_commands.cc
void AddSubmitCommand(CLI::App& app, CliContext& ctx);
void AddExecCommand(CLI::App& app, CliContext& ctx);
void AddLogsCommand(CLI::App& app, CliContext& ctx);

// task_commands.cc
void AddWaitCommand(CLI::App& app, CliContext& ctx);
void AddStatusCommand(CLI::App& app, CliContext& ctx);
void AddCancelCommand(CLI::App& app, CliContext& ctx);
void AddListCommand(CLI::App& app, CliContext& ctx);
void AddWatchCommand(CLI::App& app, CliContext& ctx);
void AddExplainCommand(CLI::App& app, CliContext& ctx);

// daemon_commands.cc
void AddStatsCommand(CLI::App& app, CliContext& ctx);
void AddHandlersCommand(CLI::App& app, CliContext& ctx);
void AddDashboardCommand(CLI::App& app, CliContext& ctx);

// trace_command.cc
void AddTraceCommand(CLI::App& app, CliContext& ctx);

}  // namespace taskrt::cli

#endif  // TASKRT_CLIENT_CLI_COMMANDS_H_
