// Fuzzes the validation of TaskService requests (daemon/validation.h): the input is
// parsed as each of SubmitRequest, RunRequest, StreamRequest, GetRequest, WaitRequest,
// CancelRequest, ListRequest and WatchRequest, and every one that parses goes through
// the checks the service makes (TaskManager::Submit/Get/Wait/Cancel/List and the
// service's Watch/List), with a fixed set of handlers, under taskrtd's default limits
// and under tight ones (so small inputs reach the limits).
//
// Invariants checked: nothing crashes; every error is INVALID_ARGUMENT with a bounded
// message free of raw control bytes (caller text is quoted by QuoteInput); an accepted
// spec is within the limits; clamped wait timeouts cannot overflow the deadline
// arithmetic; List limits are within bounds.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <string_view>

#include "daemon/validation.h"
#include "fuzz_check.h"
#include "google/protobuf/stubs/logging.h"
#include "taskrt/v1/service.pb.h"

namespace {

using namespace taskrt;          // NOLINT: a harness, not library code
using namespace taskrt::daemon;  // NOLINT

const std::set<std::string, std::less<>>& Handlers() {
  static const auto* handlers = new std::set<std::string, std::less<>>{
      "sys.noop", "sys.sleep", "sys.exec", "math.primes", "hash.sha256", "io.read_file"};
  return *handlers;
}

bool HandlerKnown(std::string_view h) { return Handlers().count(h) != 0; }
std::string KnownHandlers() {
  std::string out;
  for (const auto& h : Handlers()) out += (out.empty() ? "" : ", ") + h;
  return out;
}

// Quoted caller text is at most 4 bytes per input byte (\xNN) plus quotes and the
// "…(N bytes)" suffix; the fixed text and the handler list are well under 500.
constexpr size_t kMaxMessageBytes = 4 * kMaxQuotedInputBytes + 500;

void CheckError(const absl::Status& s) {
  if (s.ok()) return;
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  FUZZ_CHECK(!s.message().empty());
  FUZZ_CHECK(s.message().size() <= kMaxMessageBytes);
  for (unsigned char c : s.message()) FUZZ_CHECK(c >= 0x20 && c != 0x7f);
}

void CheckSpec(const v1::TaskSpec& spec, const ValidationLimits& limits) {
  const absl::Status s = ValidateSpec(spec, limits, HandlerKnown, KnownHandlers);
  CheckError(s);
  if (!s.ok()) return;
  FUZZ_CHECK(HandlerKnown(spec.handler()));
  FUZZ_CHECK(spec.input().size() <= limits.max_input_bytes);
  FUZZ_CHECK(v1::TaskClass_IsValid(spec.requested_class()));
  FUZZ_CHECK(spec.timeout_ms() <= limits.max_timeout_ms);
  FUZZ_CHECK(spec.max_attempts() <= limits.max_attempts);
  FUZZ_CHECK(spec.retry_backoff_ms() <= limits.max_retry_backoff_ms);
  FUZZ_CHECK(spec.idempotency_key().size() <= limits.max_idempotency_key_bytes);
  // TaskManager turns these into microsecond deadlines and backoffs in int64.
  FUZZ_CHECK(spec.timeout_ms() <=
             static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 4000));
  FUZZ_CHECK(spec.retry_backoff_ms() <=
             static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 4000));
}

// As TaskManager::Submit: the batch, then each spec.
void CheckBatch(const google::protobuf::RepeatedPtrField<v1::TaskSpec>& specs,
                const ValidationLimits& limits) {
  const absl::Status s = ValidateBatchSize(specs.size(), limits);
  CheckError(s);
  if (!s.ok()) return;
  for (const auto& spec : specs) CheckSpec(spec, limits);
}

void CheckIds(const google::protobuf::RepeatedPtrField<std::string>& ids,
              const ValidationLimits& limits, bool allow_empty) {
  const absl::Status s = ValidateTaskIds(ids, limits, allow_empty);
  CheckError(s);
  if (!s.ok()) return;
  FUZZ_CHECK(allow_empty || !ids.empty());
  for (const auto& id : ids) FUZZ_CHECK(!id.empty() && id.size() <= limits.max_task_id_bytes);
}

void CheckWaitTimeout(uint64_t timeout_ms, const ValidationLimits& limits) {
  const uint64_t ms = ClampWaitTimeoutMs(timeout_ms, limits);
  FUZZ_CHECK(ms <= timeout_ms);
  FUZZ_CHECK((ms == 0) == (timeout_ms == 0));
  // now (µs, < 2^62 for centuries) + ms * 1000 must fit in int64.
  FUZZ_CHECK(ms <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 2000));
}

template <typename Request>
bool Parse(std::string_view bytes, Request* request) {
  return request->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

void CheckAll(std::string_view bytes, const ValidationLimits& limits) {
  if (v1::SubmitRequest r; Parse(bytes, &r)) CheckBatch(r.tasks(), limits);
  if (v1::StreamRequest r; Parse(bytes, &r)) CheckBatch(r.tasks(), limits);
  if (v1::RunRequest r; Parse(bytes, &r)) {
    CheckSpec(r.spec(), limits);
    CheckWaitTimeout(r.timeout_ms(), limits);
  }
  if (v1::GetRequest r; Parse(bytes, &r)) CheckIds(r.task_ids(), limits, false);
  if (v1::CancelRequest r; Parse(bytes, &r)) CheckIds(r.task_ids(), limits, false);
  if (v1::WaitRequest r; Parse(bytes, &r)) {
    CheckIds(r.task_ids(), limits, false);
    CheckWaitTimeout(r.timeout_ms(), limits);
  }
  if (v1::WatchRequest r; Parse(bytes, &r)) CheckIds(r.task_ids(), limits, true);
  if (v1::ListRequest r; Parse(bytes, &r)) {
    CheckError(ValidateListRequest(r, limits));
    const size_t n = ListLimit(r, limits);
    FUZZ_CHECK(n >= 1 && n <= limits.max_list_limit);
  }
}

void CheckQuote(std::string_view text) {
  const std::string q = QuoteInput(text);
  FUZZ_CHECK(q.size() >= 2 && q.front() == '\'');
  FUZZ_CHECK(q.size() <= 4 * kMaxQuotedInputBytes + 40);
  for (unsigned char c : q) FUZZ_CHECK(c >= 0x20 && c != 0x7f);
  if (text.size() <= kMaxQuotedInputBytes) FUZZ_CHECK(q.back() == '\'');
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // invalid UTF-8 in strings is logged: noise
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  static const ValidationLimits kDefaults;
  static const ValidationLimits kTight = [] {
    ValidationLimits l;
    l.max_input_bytes = 64;
    l.max_batch = 4;
    l.max_timeout_ms = 1000;
    l.max_attempts = 3;
    l.max_idempotency_key_bytes = 8;
    l.max_retry_backoff_ms = 1000;
    l.max_ids = 4;
    l.max_task_id_bytes = 16;
    l.max_wait_timeout_ms = 1000;
    l.default_list_limit = 5;
    l.max_list_limit = 10;
    return l;
  }();
  CheckAll(bytes, kDefaults);
  CheckAll(bytes, kTight);
  CheckQuote(bytes);
  CheckQuote(bytes.substr(0, std::min<size_t>(size, 3 * kMaxQuotedInputBytes / 2)));
  return 0;
}
