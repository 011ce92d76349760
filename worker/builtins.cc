// Built-in handlers other than sys.exec. Inputs are JSON objects; outputs are JSON,
// except io.read_file which returns the file's bytes.
#include <openssl/evp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "asio/steady_timer.hpp"
#include "nlohmann/json.hpp"
#include "worker/builtin_inputs.h"
#include "worker/registry.h"

namespace taskrt::worker {
namespace {

using json = nlohmann::json;

// Counts primes below n by trial division: CPU-bound on purpose, no memory to speak of.
absl::StatusOr<std::string> Primes(TaskContext& ctx, std::string_view input) {
  auto parsed = ParsePrimesInput(input);
  if (!parsed.ok()) return parsed.status();
  const uint64_t below = parsed->below;
  uint64_t count = below > 2 ? 1 : 0;  // 2
  for (uint64_t n = 3; n < below; n += 2) {
    if ((n & 0xfff) == 1 && ctx.cancelled()) {
      return absl::CancelledError("math.primes: cancelled");
    }
    bool prime = true;
    for (uint64_t d = 3; d * d <= n; d += 2) {
      if (n % d == 0) {
        prime = false;
        break;
      }
    }
    count += prime ? 1 : 0;
  }
  return json{{"below", below}, {"count", count}}.dump();
}

absl::StatusOr<std::string> Sha256(TaskContext& ctx, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("hash.sha256: cannot initialise SHA-256");
  }
  uint64_t total = 0;
  auto parsed = ParseSha256Input(input);
  if (!parsed.ok()) return parsed.status();
  if (parsed->path) {
    const std::string& path = *parsed->path;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("hash.sha256: cannot open ", path, ": ", std::strerror(errno)));
    }
    std::string buf(1 << 20, '\0');
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const auto n = static_cast<size_t>(in.gcount());
      if (n == 0) break;
      EVP_DigestUpdate(md.get(), buf.data(), n);
      total += n;
      if (ctx.cancelled()) return absl::CancelledError("hash.sha256: cancelled");
    }
    if (in.bad()) return absl::DataLossError(absl::StrCat("hash.sha256: read error on ", path));
  } else {
    const std::string_view data = parsed->data ? std::string_view(*parsed->data) : input;
    EVP_DigestUpdate(md.get(), data.data(), data.size());
    total = data.size();
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(md.get(), digest, &len);
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i)
    absl::StrAppend(&hex, absl::Hex(digest[i], absl::kZeroPad2));
  return json{{"sha256", hex}, {"bytes", total}}.dump();
}

absl::StatusOr<std::string> ReadFile(TaskContext& ctx, std::string_view input) {
  auto parsed = ParseReadFileInput(input);
  if (!parsed.ok()) return parsed.status();
  const std::string& path = parsed->path;
  const uint64_t max_bytes = parsed->max_bytes;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("io.read_file: cannot open ", path, ": ", std::strerror(errno)));
  }
  std::string out;
  std::string buf(1 << 16, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    out.append(buf.data(), static_cast<size_t>(in.gcount()));
    if (out.size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("io.read_file: ", path, " is larger than max_bytes (", max_bytes, ")"));
    }
    if (ctx.cancelled()) return absl::CancelledError("io.read_file: cancelled");
  }
  return out;
}

void Noop(asio::io_context&, std::shared_ptr<AsyncCall> call) { call->Finish({std::string()}); }

void Sleep(asio::io_context& loop, std::shared_ptr<AsyncCall> call) {
  auto parsed = ParseSleepInput(call->input());
  if (!parsed.ok()) return call->Finish({parsed.status()});
  const uint64_t slept = parsed->ms;
  auto timer = std::make_shared<asio::steady_timer>(loop, std::chrono::milliseconds(slept));
  call->set_on_cancel([timer] { timer->cancel(); });
  timer->async_wait([call, timer, slept](const std::error_code& ec) {
    if (ec || call->cancelled()) {
      return call->Finish({absl::CancelledError("sys.sleep: cancelled")});
    }
    call->Finish({json{{"slept_ms", slept}}.dump()});
  });
}

}  // namespace

void RegisterBuiltins(Registry& registry, const BuiltinOptions& options) {
  registry.RegisterLoop("sys.noop", ClassHint::kIo,
                        "does nothing; measures the runtime's own overhead", Noop);
  registry.RegisterLoop("sys.sleep", ClassHint::kIo,
                        "waits {\"ms\": N} on the async loop without holding a thread", Sleep);
  registry.Register({"math.primes", ClassHint::kCpu,
                     "counts primes below {\"below\": N} by trial division (CPU-bound)", Primes});
  registry.Register({"hash.sha256", ClassHint::kCpu,
                     "SHA-256 of {\"path\": P}, {\"data\": S} or of the raw input bytes", Sha256});
  registry.Register({"io.read_file", ClassHint::kIo,
                     "returns the bytes of {\"path\": P} (max_bytes, default 64 MiB)", ReadFile});
  RegisterExecHandler(registry, options);
}

}  // namespace taskrt::worker
