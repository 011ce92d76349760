// Test-only plugin: handlers that crash, abort, hang, throw, spin and nap, for the
// isolation, timeout and classifier tests. Never shipped.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "taskrt/handler.h"

namespace {

// Milliseconds from input "N" (plain number), default 50.
int Millis(std::string_view input) {
  if (input.empty()) return 50;
  return std::atoi(std::string(input).c_str());
}

}  // namespace

TASKRT_PLUGIN(registry) {
  registry.Register({"test.crash", taskrt::ClassHint::kCpu, "dies of SIGSEGV",
                     [](taskrt::TaskContext&, std::string_view) -> absl::StatusOr<std::string> {
                       ::raise(SIGSEGV);
                       return std::string("unreachable");
                     }});
  registry.Register({"test.abort", taskrt::ClassHint::kCpu, "calls abort()",
                     [](taskrt::TaskContext&, std::string_view) -> absl::StatusOr<std::string> {
                       std::abort();
                     }});
  registry.Register({"test.hang", taskrt::ClassHint::kCpu,
                     "sleeps forever and ignores cancellation",
                     [](taskrt::TaskContext&, std::string_view) -> absl::StatusOr<std::string> {
                       for (int i = 0; i < 1'000'000; ++i) ::sleep(1);
                       return std::string();
                     }});
  registry.Register({"test.fail", taskrt::ClassHint::kIo, "returns an error",
                     [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
                       return absl::InternalError("test.fail failed on purpose");
                     }});
  registry.Register({"test.throw", taskrt::ClassHint::kIo, "throws std::runtime_error",
                     [](taskrt::TaskContext&, std::string_view) -> absl::StatusOr<std::string> {
                       throw std::runtime_error("thrown on purpose");
                     }});
  registry.Register({"test.echo", taskrt::ClassHint::kIo, "returns its input",
                     [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
                       return std::string(in);
                     }});
  registry.Register({"test.pid", taskrt::ClassHint::kNone, "returns the worker's pid",
                     [](taskrt::TaskContext&, std::string_view) -> absl::StatusOr<std::string> {
                       return std::to_string(::getpid());
                     }});
  // Appends "<task id>\n" to the file named by the input, then sleeps 2 ms: the
  // reliability tests count executions per task from that file.
  registry.Register(
      {"test.record", taskrt::ClassHint::kCpu,
       "records its execution in the file named by its input",
       [](taskrt::TaskContext& ctx, std::string_view in) -> absl::StatusOr<std::string> {
         const std::string line = ctx.task_id() + "\n";
         const int fd =
             ::open(std::string(in).c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
         if (fd < 0) return absl::InvalidArgumentError("cannot open record file");
         const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
         ::close(fd);
         if (!ok) return absl::InternalError("short write to record file");
         std::this_thread::sleep_for(std::chrono::milliseconds(2));
         return std::string("recorded");
       }});
  // Fails with a retryable error until it has been called N times for the counter file
  // in its input ("PATH N"), then succeeds.
  registry.Register({"test.flaky", taskrt::ClassHint::kIo,
                     "fails (retryable) until its N-th call, counted in a file",
                     [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
                       const std::string text(in);
                       const auto space = text.rfind(' ');
                       const std::string path = text.substr(0, space);
                       const int needed = std::atoi(text.c_str() + space + 1);
                       int calls = 0;
                       std::ifstream(path) >> calls;
                       ++calls;
                       std::ofstream(path, std::ios::trunc) << calls;
                       if (calls < needed) {
                         return absl::UnavailableError("flaky: call " + std::to_string(calls));
                       }
                       return "succeeded on call " + std::to_string(calls);
                     }});
  // Allocates and touches N MiB (input "N"), then frees it.
  registry.Register({"test.alloc", taskrt::ClassHint::kCpu, "allocates N MiB",
                     [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
                       const size_t bytes = static_cast<size_t>(Millis(in)) << 20;
                       std::vector<char> block(bytes, 1);
                       return std::to_string(block.size() >> 20);
                     }});
  // Returns N bytes (input "N"): the output-limit tests make it exceed
  // --max-output-bytes.
  registry.Register({"test.big_output", taskrt::ClassHint::kIo, "returns N bytes of 'x'",
                     [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
                       return std::string(std::strtoull(std::string(in).c_str(), nullptr, 10), 'x');
                     }});
  // Fails with an error message of about N bytes (input "N"): an 'a' and then 'é'
  // (2 bytes each), so that a cut at an even length lands inside a character. Input
  // "N invalid" ends the message with a byte that is not UTF-8.
  registry.Register({"test.big_error", taskrt::ClassHint::kIo,
                     "fails with an error message of N bytes",
                     [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
                       const size_t n = std::strtoull(std::string(in).c_str(), nullptr, 10);
                       std::string message = "a";
                       while (message.size() + 2 <= n) message += "\xc3\xa9";
                       if (in.find(" invalid") != std::string_view::npos) message += '\xff';
                       return absl::InternalError(message);
                     }});
  // No hint: the classifier must learn these two.
  registry.Register(
      {"test.burn", taskrt::ClassHint::kNone,
       "busy-loops for N ms (input \"N\"), honouring cancellation",
       [](taskrt::TaskContext& ctx, std::string_view in) -> absl::StatusOr<std::string> {
         const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(Millis(in));
         volatile uint64_t x = 0;
         while (std::chrono::steady_clock::now() < end) {
           for (int i = 0; i < 10000; ++i) x = x + i;
           if (ctx.cancelled()) return absl::CancelledError("burn cancelled");
         }
         return std::string("burnt");
       }});
  registry.Register({"test.nap", taskrt::ClassHint::kNone,
                     "sleeps N ms on its thread (input \"N\")",
                     [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
                       std::this_thread::sleep_for(std::chrono::milliseconds(Millis(in)));
                       return std::string("rested");
                     }});
}
