// `taskrt`: the command-line client of taskrtd. Parses the command line and runs one
// subcommand (see commands.h); everything talks to the daemon through the C++ SDK.
#include "CLI/CLI.hpp"
#include "cli/commands.h"
#include "cli/common.h"

int main(int argc, char** argv) {
  using namespace taskrt::cli;  // NOLINT(build/namespaces): a main() file only
  CliContext ctx;
  CLI::App app(
      "taskrt: submit tasks to the taskrt daemon (taskrtd), wait for them, and "
      "see where and why they ran.",
      "taskrt");
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  app.footer(
      "Exit status:\n"
      "  0  success\n"
      "  1  a task did not succeed (failed, cancelled or timed out)\n"
      "  2  usage error or bad input (also an unknown handler or task id)\n"
      "  3  timeout: a wait gave up before the tasks were final\n"
      "  4  the daemon is not reachable (start it with `taskrtd`)\n"
      "  5  any other error from the daemon\n\n"
      "Run `taskrt SUBCOMMAND --help` for the options of a subcommand.");
  app.add_option("--socket", ctx.global.socket_path,
                 "Unix socket of the daemon (default: $TASKRT_SOCKET, else "
                 "$XDG_RUNTIME_DIR/taskrt/taskrt.sock, else /tmp/taskrt-$UID/taskrt.sock)")
      ->type_name("PATH");
  app.add_option("--target", ctx.global.target,
                 "gRPC target of the daemon instead of the socket, e.g. 127.0.0.1:7070")
      ->type_name("HOST:PORT");
  app.add_option("--output,-o", ctx.global.output,
                 "Output format: table (for people) or json (proto JSON, field names "
                 "as in the .proto)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"table", "json"}))
      ->default_val("table");

  AddSubmitCommand(app, ctx);
  AddExecCommand(app, ctx);
  AddWaitCommand(app, ctx);
  AddStatusCommand(app, ctx);
  AddCancelCommand(app, ctx);
  AddListCommand(app, ctx);
  AddWatchCommand(app, ctx);
  AddExplainCommand(app, ctx);
  AddStatsCommand(app, ctx);
  AddHandlersCommand(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, or the error and a hint
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr && app.got_subcommand("exec")) {
      PrintError("put `--` before the command: taskrt exec [OPTIONS] -- CMD ARGS...");
    }
    return code == 0 ? kExitOk : kExitUsage;
  }
  return ctx.exit_code;
}
