#include "daemon/validation.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "worker/builtin_inputs.h"

namespace taskrt::daemon {
namespace {

bool IsTaskIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == ':';
}

}  // namespace

std::string QuoteInput(std::string_view text, size_t max_bytes) {
  const bool cut = text.size() > max_bytes;
  const std::string_view shown = text.substr(0, max_bytes);
  std::string out =
      absl::StrCat("'", absl::CHexEscape(absl::string_view(shown.data(), shown.size())), "'");
  if (cut) absl::StrAppend(&out, "\xE2\x80\xA6(", text.size(), " bytes)");  // "…"
  return out;
}

absl::Status ValidateSpec(const v1::TaskSpec& spec, const ValidationLimits& limits,
                          const HandlerKnownFn& handler_known,
                          const KnownHandlersFn& known_handlers) {
  if (spec.handler().empty()) {
    return absl::InvalidArgumentError("handler is required (see `taskrt handlers`)");
  }
  if (!handler_known(spec.handler())) {
    return absl::InvalidArgumentError(absl::StrCat("handler ", QuoteInput(spec.handler()),
                                                   " is not registered (known: ", known_handlers(),
                                                   ")"));
  }
  if (spec.input().size() > limits.max_input_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("input of ", spec.input().size(), " bytes exceeds the limit of ",
                     limits.max_input_bytes, " bytes (taskrtd --max-input-bytes)"));
  }
  if (!v1::TaskClass_IsValid(spec.requested_class())) {
    return absl::InvalidArgumentError(
        absl::StrCat("requested_class ", spec.requested_class(), " is not one of AUTO, CPU, IO"));
  }
  if (spec.timeout_ms() > limits.max_timeout_ms) {
    return absl::InvalidArgumentError(absl::StrCat("timeout of ", spec.timeout_ms(),
                                                   " ms exceeds the maximum of ",
                                                   limits.max_timeout_ms, " ms"));
  }
  if (spec.max_attempts() > limits.max_attempts) {
    return absl::InvalidArgumentError(absl::StrCat("max_attempts ", spec.max_attempts(),
                                                   " exceeds the limit of ", limits.max_attempts));
  }
  if (spec.retry_backoff_ms() > limits.max_retry_backoff_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("retry_backoff_ms ", spec.retry_backoff_ms(), " exceeds the maximum of ",
                     limits.max_retry_backoff_ms, " ms (the backoff is capped at 60 s anyway)"));
  }
  if (spec.idempotency_key().size() > limits.max_idempotency_key_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("idempotency_key is longer than ",
                                                   limits.max_idempotency_key_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBatchSize(size_t size, const ValidationLimits& limits) {
  if (size == 0) return absl::InvalidArgumentError("no tasks to submit");
  if (size > limits.max_batch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a batch of ", size, " tasks exceeds the limit of ", limits.max_batch, " per Submit"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTaskId(std::string_view id, const ValidationLimits& limits) {
  if (id.empty()) return absl::InvalidArgumentError("a task id is empty");
  if (id.size() > limits.max_task_id_bytes || !std::all_of(id.begin(), id.end(), IsTaskIdChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task id ", QuoteInput(id), " is not a task id: ids are at most ", limits.max_task_id_bytes,
        " letters, digits and '-', '_', '.', ':' (see `taskrt list`)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateIdPrefix(std::string_view prefix) {
  const bool ok =
      !prefix.empty() && prefix.size() <= 64 &&
      std::all_of(prefix.begin(), prefix.end(), [](char c) { return IsTaskIdChar(c) && c != ':'; });
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("--id-prefix ", QuoteInput(prefix),
                     ": expected 1 to 64 letters, digits, '-', '_' or '.' (e.g. the host's or "
                     "the pod's name)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTaskIds(const google::protobuf::RepeatedPtrField<std::string>& ids,
                             const ValidationLimits& limits, bool allow_empty) {
  if (ids.empty() && !allow_empty) return absl::InvalidArgumentError("no task ids given");
  if (static_cast<size_t>(ids.size()) > limits.max_ids) {
    return absl::InvalidArgumentError(
        absl::StrCat(ids.size(), " task ids exceed the limit of ", limits.max_ids, " per request"));
  }
  for (const std::string& id : ids) {
    if (absl::Status s = ValidateTaskId(id, limits); !s.ok()) return s;
  }
  return absl::OkStatus();
}

uint64_t ClampWaitTimeoutMs(uint64_t timeout_ms, const ValidationLimits& limits) {
  return std::min(timeout_ms, limits.max_wait_timeout_ms);
}

absl::Status ValidateListRequest(const v1::ListRequest& request, const ValidationLimits& limits) {
  for (int state : request.states()) {
    if (!v1::TaskState_IsValid(state)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "state ", state, " is not a TaskState (TASK_STATE_QUEUED ... TASK_STATE_TIMED_OUT)"));
    }
  }
  if (request.labels_size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(request.labels_size(), " label filters: at most 64"));
  }
  return absl::OkStatus();
}

size_t ListLimit(const v1::ListRequest& request, const ValidationLimits& limits) {
  if (request.limit() == 0) return limits.default_list_limit;
  return std::min<size_t>(request.limit(), limits.max_list_limit);
}

absl::Status ValidateBuiltinInput(std::string_view handler, std::string_view input) {
  absl::Status status;
  if (handler == "sys.sleep") {
    status = worker::ParseSleepInput(input).status();
  } else if (handler == "math.primes") {
    status = worker::ParsePrimesInput(input).status();
  } else if (handler == "hash.sha256") {
    status = worker::ParseSha256Input(input).status();
  } else if (handler == "io.read_file") {
    status = worker::ParseReadFileInput(input).status();
  } else if (handler == "sys.exec") {
    status = worker::ParseExecInput(input).status();
  }
  if (status.ok()) return status;
  return absl::InvalidArgumentError(absl::StrCat(status.message(), "; nothing was queued"));
}

}  // namespace taskrt::daemon
