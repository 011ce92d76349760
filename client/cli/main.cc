// `taskrt`: the command-line client of taskrtd. Parses the command line and runs one
// subcommand (see commands.h); everything talks to the daemon through the C++ SDK.
#include "CLI/CLI.hpp"
#include "cli/commands.h"
#include "cli/common.h"
#include "common/util.h"

namespace {

// --token-file and the --tls-* options (what they mean: taskrt::ClientOptions).
void AddSecurityOptions(CLI::App& app, taskrt::cli::GlobalOptions& global) {
  app.add_option("--token-file", global.token_file,
                 "File with the daemon's token, for a TCP --target (the daemon writes "
                 "<state-dir>/token; must be mode 0600). Default: $TASKRT_TOKEN (the token "
                 "itself), else $TASKRT_TOKEN_FILE")
      ->type_name("FILE");
  app.add_flag("--tls", global.tls,
               "Use TLS to a TCP --target, trusting the system's root certificates");
  app.add_option("--tls-ca", global.tls_ca,
                 "Use TLS, trusting the PEM root certificates in FILE (default: "
                 "$TASKRT_TLS_CA)")
      ->type_name("FILE");
  app.add_option("--tls-cert", global.tls_cert,
                 "PEM client certificate, for a daemon that requires mutual TLS (with --tls-key)")
      ->type_name("FILE");
  app.add_option("--tls-key", global.tls_key, "PEM key of --tls-cert")->type_name("FILE");
  app.add_option("--tls-server-name", global.tls_server_name,
                 "Name the daemon's certificate must carry, if not the --target host")
      ->type_name("NAME");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace taskrt::cli;  // NOLINT(build/namespaces): a main() file only
  CliContext ctx;
  CLI::App app(
      "taskrt: submit tasks to the taskrt daemon (taskrtd), wait for them, and "
      "see where and why they ran.",
      "taskrt");
  app.set_version_flag("--version", "taskrt " TASKRT_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  app.footer(
      "Exit status:\n"
      "  0  success\n"
      "  1  a task did not succeed (failed, cancelled or timed out)\n"
      "  2  usage error or bad input (also an unknown handler or task id)\n"
      "  3  timeout: a wait gave up before the tasks were final\n"
      "  4  the daemon is not reachable (start it with `taskrtd`)\n"
      "  5  any other error from the daemon\n"
      "  6  not allowed: the daemon wants a token (or refused it, or the caller), or the\n"
      "     socket belongs to someone else\n\n"
      "Environment: TASKRT_SOCKET (--socket), TASKRT_TARGET (--target), TASKRT_TOKEN (the\n"
      "daemon's token itself), TASKRT_TOKEN_FILE (--token-file), TASKRT_TLS_CA (--tls-ca).\n"
      "A token goes only to TCP targets, as `authorization: Bearer <token>`, and only over\n"
      "TLS unless the target is loopback; the unix socket needs none.\n\n"
      "Run `taskrt SUBCOMMAND --help` for the options of a subcommand.");
  app.add_option("--socket", ctx.global.socket_path,
                 "Unix socket of the daemon (default: " +
                     std::string(taskrt::internal::kDefaultSocketText) +
                     "; when that does not exist and $TASKRT_SOCKET is unset, the system "
                     "service's /run/taskrt/taskrt.sock)")
      ->type_name("PATH");
  app.add_option("--target", ctx.global.target,
                 "gRPC target of the daemon instead of the socket, e.g. 127.0.0.1:7070, or of "
                 "several daemons: ipv4:10.0.0.1:7070,10.0.0.2:7070 or dns:///HOST:PORT "
                 "(docs/CLUSTER.md) (default: $TASKRT_TARGET unless --socket is given)")
      ->type_name("TARGET");
  AddSecurityOptions(app, ctx.global);
  app.add_option("--output,-o", ctx.global.output,
                 "Output format: table (for people) or json (proto JSON, field names "
                 "as in the .proto)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"table", "json"}))
      ->default_val("table");
  app.add_option("--color", ctx.global.color,
                 "Colour task states: auto (when stdout is a terminal and $NO_COLOR is unset), "
                 "always, never")
      ->type_name("WHEN")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->default_val("auto");
  SetColorOptions(&ctx.global);

  AddSubmitCommand(app, ctx);
  AddExecCommand(app, ctx);
  AddLogsCommand(app, ctx);
  AddWaitCommand(app, ctx);
  AddStatusCommand(app, ctx);
  AddCancelCommand(app, ctx);
  AddListCommand(app, ctx);
  AddWatchCommand(app, ctx);
  AddExplainCommand(app, ctx);
  AddStatsCommand(app, ctx);
  AddHandlersCommand(app, ctx);
  AddDashboardCommand(app, ctx);
  AddTraceCommand(app, ctx);
  // Global options may stand before or after the subcommand (fallthrough): say so in
  // every subcommand's help, which CLI11 prints without its parent's options.
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    std::string footer = sub->get_footer();
    if (!footer.empty()) footer += "\n\n";
    sub->footer(footer +
                "Global options (before or after the subcommand; `taskrt --help` "
                "explains them):\n  --socket PATH, --target HOST:PORT, --token-file FILE, "
                "--tls, --tls-ca FILE,\n  --tls-cert FILE, --tls-key FILE, "
                "--tls-server-name NAME, -o/--output table|json, --color WHEN");
  }

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
