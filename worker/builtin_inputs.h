// The JSON inputs of the built-in handlers, parsed: pure functions from the task's
// input bytes to what the handler needs, with the handler's own error messages.
//
// Nothing here sleeps, reads files or starts processes: worker/builtins.cc and
// worker/exec_handler.cc do that with the result, and tests/fuzz/builtin_input_fuzz.cc
// feeds these functions arbitrary bytes. Errors are INVALID_ARGUMENT.
// Thread-safety: all functions are thread-safe.
#ifndef TASKRT_WORKER_BUILTIN_INPUTS_H_
#define TASKRT_WORKER_BUILTIN_INPUTS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace taskrt::worker {

// sys.sleep: {"ms": N}, N at most a week.
struct SleepInput {
  uint64_t ms = 0;
};
absl::StatusOr<SleepInput> ParseSleepInput(std::string_view input);

// math.primes: {"below": N}, N at most kMaxPrimesBelow.
inline constexpr uint64_t kMaxPrimesBelow = 4'000'000'000ULL;
struct PrimesInput {
  uint64_t below = 0;
};
absl::StatusOr<PrimesInput> ParsePrimesInput(std::string_view input);

// hash.sha256: {"path": P} hashes a file, {"data": S} a string, anything else (not a
// JSON object with one of those keys) the raw input bytes.
struct Sha256Input {
  std::optional<std::string> path;
  std::optional<std::string> data;  // unset with `path` unset: hash the raw input
};
absl::StatusOr<Sha256Input> ParseSha256Input(std::string_view input);

// io.read_file: {"path": P, "max_bytes": N (default kDefaultReadFileMaxBytes)}.
inline constexpr uint64_t kDefaultReadFileMaxBytes = 64ull << 20;
struct ReadFileInput {
  std::string path;
  uint64_t max_bytes = kDefaultReadFileMaxBytes;
};
absl::StatusOr<ReadFileInput> ParseReadFileInput(std::string_view input);

// sys.exec: {"argv": ["cmd", "arg"...], "env": {"K": "V"}, "cwd": "/dir", "stdin": "..."}.
struct ExecSpec {
  std::vector<std::string> argv;  // never empty
  std::map<std::string, std::string> env;
  std::string cwd;
  std::string stdin_data;
};
absl::StatusOr<ExecSpec> ParseExecInput(std::string_view input);

}  // namespace taskrt::worker

#endif  // TASKRT_WORKER_BUILTIN_INPUTS_H_
