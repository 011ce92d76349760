#include "worker/builtin_inputs.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace taskrt::worker {
namespace {

using json = nlohmann::json;

// A valid input of each handler whose input is a JSON object, for error messages.
const char* ExampleInput(std::string_view handler) {
  if (handler == "math.primes") return R"({"below": 1000000})";
  if (handler == "sys.sleep") return R"({"ms": 250})";
  if (handler == "sys.exec") return R"({"argv": ["echo", "hi"]})";
  return R"({"path": "/etc/hostname"})";
}

// Parses `input` as a JSON object; an empty input is an empty object.
absl::StatusOr<json> ParseObject(const char* handler, std::string_view input) {
  if (input.empty()) return json::object();
  json value = json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(handler, ": input must be a JSON object, e.g. ", ExampleInput(handler)));
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

// The string becomes a C string (a path, argv, environment, directory): a NUL would
// silently cut it, and a different file or command than the one named would be used.
bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

}  // namespace

absl::StatusOr<SleepInput> ParseSleepInput(std::string_view input) {
  auto obj = ParseObject("sys.sleep", input);
  if (!obj.ok()) return obj.status();
  auto ms = UintField("sys.sleep", *obj, "ms", std::nullopt);
  if (!ms.ok()) return ms.status();
  if (*ms > 7 * 24 * 3600 * 1000ull) {
    return absl::InvalidArgumentError("sys.sleep: ms must be at most a week");
  }
  return SleepInput{*ms};
}

absl::StatusOr<PrimesInput> ParsePrimesInput(std::string_view input) {
  auto obj = ParseObject("math.primes", input);
  if (!obj.ok()) return obj.status();
  auto below = UintField("math.primes", *obj, "below", std::nullopt);
  if (!below.ok()) return below.status();
  if (*below > kMaxPrimesBelow) {
    return absl::InvalidArgumentError(
        absl::StrCat("math.primes: below must be at most ", kMaxPrimesBelow));
  }
  return PrimesInput{*below};
}

absl::StatusOr<Sha256Input> ParseSha256Input(std::string_view input) {
  Sha256Input out;
  json obj = json::parse(input, nullptr, false);
  if (obj.is_discarded() || !obj.is_object()) return out;
  if (auto path = obj.find("path"); path != obj.end()) {
    if (!path->is_string()) {
      return absl::InvalidArgumentError("hash.sha256: \"path\" must be a string");
    }
    out.path = path->get<std::string>();
    if (HasNul(*out.path)) {
      return absl::InvalidArgumentError("hash.sha256: \"path\" must not contain NUL (\\u0000)");
    }
  } else if (auto data = obj.find("data"); data != obj.end()) {
    if (!data->is_string()) {
      return absl::InvalidArgumentError("hash.sha256: \"data\" must be a string");
    }
    out.data = data->get<std::string>();
  }
  return out;
}

absl::StatusOr<ReadFileInput> ParseReadFileInput(std::string_view input) {
  auto obj = ParseObject("io.read_file", input);
  if (!obj.ok()) return obj.status();
  auto path_it = obj->find("path");
  if (path_it == obj->end() || !path_it->is_string()) {
    return absl::InvalidArgumentError("io.read_file: field \"path\" (a string) is required");
  }
  auto max_bytes = UintField("io.read_file", *obj, "max_bytes", kDefaultReadFileMaxBytes);
  if (!max_bytes.ok()) return max_bytes.status();
  ReadFileInput out{path_it->get<std::string>(), *max_bytes};
  if (HasNul(out.path)) {
    return absl::InvalidArgumentError("io.read_file: \"path\" must not contain NUL (\\u0000)");
  }
  return out;
}

absl::StatusOr<ExecSpec> ParseExecInput(std::string_view input) {
  json obj = json::parse(input, nullptr, false);
  if (obj.is_discarded() || !obj.is_object()) {
    return absl::InvalidArgumentError(
        "sys.exec: input must be a JSON object like {\"argv\": [\"echo\", \"hi\"]}");
  }
  ExecSpec spec;
  auto argv = obj.find("argv");
  if (argv == obj.end() || !argv->is_array() || argv->empty()) {
    return absl::InvalidArgumentError("sys.exec: \"argv\" must be a non-empty array of strings");
  }
  for (const auto& a : *argv) {
    if (!a.is_string())
      return absl::InvalidArgumentError("sys.exec: \"argv\" items must be strings");
    spec.argv.push_back(a.get<std::string>());
    if (HasNul(spec.argv.back())) {
      return absl::InvalidArgumentError("sys.exec: \"argv\" items must not contain NUL (\\u0000)");
    }
  }
  if (auto env = obj.find("env"); env != obj.end()) {
    if (!env->is_object()) return absl::InvalidArgumentError("sys.exec: \"env\" must be an object");
    for (const auto& [k, v] : env->items()) {
      if (!v.is_string() || k.empty() || k.find('=') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("sys.exec: env entry '", k, "' must be NAME: \"string\""));
      }
      std::string value = v.get<std::string>();
      if (HasNul(k) || HasNul(value)) {
        return absl::InvalidArgumentError(
            "sys.exec: env names and values must not contain NUL (\\u0000)");
      }
      spec.env[k] = std::move(value);
    }
  }
  if (auto cwd = obj.find("cwd"); cwd != obj.end()) {
    if (!cwd->is_string()) return absl::InvalidArgumentError("sys.exec: \"cwd\" must be a string");
    spec.cwd = cwd->get<std::string>();
    if (HasNul(spec.cwd)) {
      return absl::InvalidArgumentError("sys.exec: \"cwd\" must not contain NUL (\\u0000)");
    }
  }
  if (auto in = obj.find("stdin"); in != obj.end()) {
    if (!in->is_string()) return absl::InvalidArgumentError("sys.exec: \"stdin\" must be a string");
    spec.stdin_data = in->get<std::string>();
  }
  return spec;
}

}  // namespace taskrt::worker
