// Fuzzes the input parsing of the built-in handlers (worker/builtin_inputs.h): every
// input goes through the parsers of sys.sleep, sys.exec, math.primes, hash.sha256 and
// io.read_file. Only parsing: nothing sleeps, runs a command or opens a file.
//
// Invariants checked: nothing crashes or throws (nlohmann::json is used without
// exceptions; an escaping one aborts); errors are INVALID_ARGUMENT; what parses is
// within each handler's documented limits (sleep at most a week, primes below at most
// kMaxPrimesBelow, exec argv non-empty and env names non-empty without '='), and no
// string that becomes a C string (a path, argv, env, cwd) holds a NUL byte, which would
// silently cut it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "fuzz_check.h"
#include "worker/builtin_inputs.h"

namespace {

using namespace taskrt::worker;  // NOLINT: a harness, not library code

template <typename T>
bool Ok(const absl::StatusOr<T>& r) {
  if (!r.ok()) {
    FUZZ_CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(!r.status().message().empty());
  }
  return r.ok();
}

bool NoNul(std::string_view s) { return s.find('\0') == std::string_view::npos; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  if (auto sleep = ParseSleepInput(input); Ok(sleep)) {
    FUZZ_CHECK(sleep->ms <= 7 * 24 * 3600 * 1000ull);
  }
  if (auto primes = ParsePrimesInput(input); Ok(primes)) {
    FUZZ_CHECK(primes->below <= kMaxPrimesBelow);
  }
  if (auto sha = ParseSha256Input(input); Ok(sha)) {
    FUZZ_CHECK(!(sha->path && sha->data));
    if (sha->path) FUZZ_CHECK(NoNul(*sha->path));
  }
  if (auto read = ParseReadFileInput(input); Ok(read)) {
    // "path" is required; an empty string is the handler's problem (cannot open).
    FUZZ_CHECK(!input.empty());
    FUZZ_CHECK(NoNul(read->path));  // the file opened is the one named
  }
  if (auto exec = ParseExecInput(input); Ok(exec)) {
    // What is run is what was asked for: C strings end at the first NUL.
    FUZZ_CHECK(!exec->argv.empty());
    for (const auto& a : exec->argv) FUZZ_CHECK(NoNul(a));
    for (const auto& [name, value] : exec->env) {
      FUZZ_CHECK(!name.empty() && name.find('=') == std::string::npos);
      FUZZ_CHECK(NoNul(name) && NoNul(value));
    }
    FUZZ_CHECK(NoNul(exec->cwd));
  }
  return 0;
}
