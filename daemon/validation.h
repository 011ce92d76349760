// Validation of what TaskService callers send: task specs, batches, task ids, wait
// timeouts and list requests.
//
// Pure functions over data (no locks, no clock, no gRPC): TaskManager and the service
// layer call them, and tests/fuzz/request_validation_fuzz.cc feeds them arbitrary
// requests. Every error is INVALID_ARGUMENT, says what was wrong and what to do, and
// quotes at most kMaxQuotedInputBytes of any caller-supplied text (QuoteInput), so a
// 200 MB handler name cannot come back whole in an error message.
// Thread-safety: all functions are thread-safe (the callbacks passed in must be too,
// or be called under the caller's lock).
#ifndef TASKRT_DAEMON_VALIDATION_H_
#define TASKRT_DAEMON_VALIDATION_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/repeated_field.h"
#include "taskrt/v1/service.pb.h"

namespace taskrt::daemon {

// Caller input quoted in an error message is cut after this many bytes.
inline constexpr size_t kMaxQuotedInputBytes = 200;

// `text` in single quotes for an error message: non-printable bytes, quotes and
// backslashes C-escaped, and cut after `max_bytes` bytes of `text` with "…(N bytes)"
// saying how long it was. E.g. 'math.prime', 'a\x01b', 'xxxx…'(209715200 bytes).
std::string QuoteInput(std::string_view text, size_t max_bytes = kMaxQuotedInputBytes);

// What a caller may send. The defaults are taskrtd's (TaskManagerOptions has the same
// defaults for the configurable ones).
struct ValidationLimits {
  size_t max_input_bytes = 16u << 20;                 // TaskSpec.input (--max-input-bytes)
  size_t max_batch = 100000;                          // tasks per Submit / Stream batch
  uint64_t max_timeout_ms = 7 * 24 * 3600 * 1000ull;  // TaskSpec.timeout_ms
  uint32_t max_attempts = 100;                        // TaskSpec.max_attempts
  size_t max_idempotency_key_bytes = 256;             // TaskSpec.idempotency_key
  // TaskSpec.retry_backoff_ms (the backoff itself is capped at 60 s; larger values are
  // accepted up to this, beyond it they would overflow the backoff arithmetic).
  uint64_t max_retry_backoff_ms = 7 * 24 * 3600 * 1000ull;
  // Ids per Get / Wait / Cancel / Watch request.
  size_t max_ids = 100000;
  // A task id is 1 to this many bytes of [A-Za-z0-9._:-] (the daemon makes
  // "<hex prefix>-<seq>").
  size_t max_task_id_bytes = 128;
  // Wait / Run timeout_ms larger than this (about 100 years) are treated as this, so
  // the deadline arithmetic (now + timeout in µs, int64) cannot overflow.
  uint64_t max_wait_timeout_ms = 100ull * 365 * 24 * 3600 * 1000;
  // ListRequest.limit: 0 means default_list_limit; larger than max_list_limit is cut.
  size_t default_list_limit = 100;
  size_t max_list_limit = 100000;
};

// True when `handler` is registered.
using HandlerKnownFn = std::function<bool(std::string_view handler)>;
// The registered handlers for an error message ("math.primes, sys.exec, …"); called
// only when a spec names an unknown handler.
using KnownHandlersFn = std::function<std::string()>;

// One task spec: a registered handler, input, class, timeout, attempts, backoff and
// idempotency key within `limits`.
absl::Status ValidateSpec(const v1::TaskSpec& spec, const ValidationLimits& limits,
                          const HandlerKnownFn& handler_known,
                          const KnownHandlersFn& known_handlers);

// A Submit / Stream batch of `size` tasks: at least one, at most limits.max_batch.
absl::Status ValidateBatchSize(size_t size, const ValidationLimits& limits);

// The input of a built-in handler (sys.sleep, math.primes, hash.sha256, io.read_file,
// sys.exec), parsed as its worker will parse it (worker/builtin_inputs.h); OK for any
// other handler. INVALID_ARGUMENT with the handler's own message.
absl::Status ValidateBuiltinInput(std::string_view handler, std::string_view input);

// One task id (not whether it exists: that is NOT_FOUND, later).
absl::Status ValidateTaskId(std::string_view id, const ValidationLimits& limits);
// taskrtd --id-prefix: 1 to 64 letters, digits, '-', '_', '.' (task ids are
// "<prefix>-<sequence number>", at most max_task_id_bytes). INVALID_ARGUMENT otherwise.
absl::Status ValidateIdPrefix(std::string_view prefix);

// The ids of a Get / Wait / Cancel (`allow_empty` false) or Watch (true: all tasks)
// request: how many, and each as ValidateTaskId.
absl::Status ValidateTaskIds(const google::protobuf::RepeatedPtrField<std::string>& ids,
                             const ValidationLimits& limits, bool allow_empty = false);

// A Wait / Run timeout_ms as the daemon uses it: 0 stays 0 (no limit), larger than
// limits.max_wait_timeout_ms becomes that.
uint64_t ClampWaitTimeoutMs(uint64_t timeout_ms, const ValidationLimits& limits);

// A List request: every state filter is a TaskState.
absl::Status ValidateListRequest(const v1::ListRequest& request, const ValidationLimits& limits);
// How many tasks a List request returns at most.
size_t ListLimit(const v1::ListRequest& request, const ValidationLimits& limits);

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_VALIDATION_H_
