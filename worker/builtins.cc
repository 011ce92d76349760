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
#include "worker/registry.h"

namespace taskrt::worker {
namespace {

using json = nlohmann::json;

// Parses `input` as a JSON object; an empty input is an empty object.
absl::StatusOr<json> ParseObject(const char* handler, std::string_view input) {
  if (input.empty()) return json::object();
  json value = json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(handler, ": input must be a JSON object, e.g. ",
                                                   std::string_view(handler) == "math.primes"
                                                       ? R"({"below": 1000000})"
                                                       : R"({"path": "/etc/hostname"})"));
  }
  return value;
}

// Reads a non-negative integer field; `fallback` when absent.
absl::StatusOr<uint64_t> UintField(const char* handler, const json& obj, const char* key,
                                   std::optional<uint64_t> fallback) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (fallback) return *fallback;
    return absl::InvalidArgumentError(absl::StrCat(handler, ": field \"", key, "\" is required"));
  }
  if (!it->is_number_integer() ||
      (it->is_number_integer() && it->get<int64_t>() < 0 && !it->is_number_unsigned())) {
    return absl::InvalidArgumentError(
        absl::StrCat(handler, ": field \"", key, "\" must be a non-negative integer"));
  }
  return it->get<uint64_t>();
}

// Counts primes below n by trial division: CPU-bound on purpose, no memory to speak of.
absl::StatusOr<std::string> Primes(TaskContext& ctx, std::string_view input) {
  auto obj = ParseObject("math.primes", input);
  if (!obj.ok()) return obj.status();
  constexpr uint64_t kMax = 4'000'000'000ULL;
  auto below = UintField("math.primes", *obj, "below", std::nullopt);
  if (!below.ok()) return below.status();
  if (*below > kMax) {
    return absl::InvalidArgumentError(absl::StrCat("math.primes: below must be at most ", kMax));
  }
  uint64_t count = *below > 2 ? 1 : 0;  // 2
  for (uint64_t n = 3; n < *below; n += 2) {
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
  return json{{"below", *below}, {"count", count}}.dump();
}

absl::StatusOr<std::string> Sha256(TaskContext& ctx, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("hash.sha256: cannot initialise SHA-256");
  }
  uint64_t total = 0;
  json obj = json::parse(input, nullptr, false);
  if (!obj.is_discarded() && obj.is_object() && obj.contains("path")) {
    if (!obj["path"].is_string()) {
      return absl::InvalidArgumentError("hash.sha256: \"path\" must be a string");
    }
    const std::string path = obj["path"].get<std::string>();
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
    std::string_view data = input;
    std::string holder;
    if (!obj.is_discarded() && obj.is_object() && obj.contains("data")) {
      if (!obj["data"].is_string()) {
        return absl::InvalidArgumentError("hash.sha256: \"data\" must be a string");
      }
      holder = obj["data"].get<std::string>();
      data = holder;
    }
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
  auto obj = ParseObject("io.read_file", input);
  if (!obj.ok()) return obj.status();
  auto path_it = obj->find("path");
  if (path_it == obj->end() || !path_it->is_string()) {
    return absl::InvalidArgumentError("io.read_file: field \"path\" (a string) is required");
  }
  constexpr uint64_t kDefaultMax = 64ull << 20;
  auto max_bytes = UintField("io.read_file", *obj, "max_bytes", kDefaultMax);
  if (!max_bytes.ok()) return max_bytes.status();
  const std::string path = path_it->get<std::string>();
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
    if (out.size() > *max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("io.read_file: ", path, " is larger than max_bytes (", *max_bytes, ")"));
    }
    if (ctx.cancelled()) return absl::CancelledError("io.read_file: cancelled");
  }
  return out;
}

void Noop(asio::io_context&, std::shared_ptr<AsyncCall> call) { call->Finish({std::string()}); }

void Sleep(asio::io_context& loop, std::shared_ptr<AsyncCall> call) {
  auto obj = ParseObject("sys.sleep", call->input());
  if (!obj.ok()) return call->Finish({obj.status()});
  auto ms = UintField("sys.sleep", *obj, "ms", std::nullopt);
  if (!ms.ok()) return call->Finish({ms.status()});
  if (*ms > 7 * 24 * 3600 * 1000ull) {
    return call->Finish({absl::InvalidArgumentError("sys.sleep: ms must be at most a week")});
  }
  auto timer = std::make_shared<asio::steady_timer>(loop, std::chrono::milliseconds(*ms));
  call->set_on_cancel([timer] { timer->cancel(); });
  const uint64_t slept = *ms;
  timer->async_wait([call, timer, slept](const std::error_code& ec) {
    if (ec || call->cancelled()) {
      return call->Finish({absl::CancelledError("sys.sleep: cancelled")});
    }
    call->Finish({json{{"slept_ms", slept}}.dump()});
  });
}

}  // namespace

void RegisterBuiltins(Registry& registry, const BuiltinOptions& options) {
  registry.RegisterAsync("sys.noop", ClassHint::kIo,
                         "does nothing; measures the runtime's own overhead", Noop);
  registry.RegisterAsync("sys.sleep", ClassHint::kIo,
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
