#include "daemon/task_util.h"

#include <algorithm>

#include "common/util.h"
#include "daemon/clock.h"
#include "daemon/task_manager.h"

namespace taskrt::daemon {

namespace {
class WallClock final : public Clock {
 public:
  int64_t NowUnixMicros() override { return internal::NowUnixMicros(); }
};
}  // namespace

Clock* SystemClock() {
  static WallClock* clock = new WallClock();
  return clock;
}

v1::TaskError MakeError(v1::FailureKind kind, std::string message, bool retryable) {
  v1::TaskError e;
  e.set_kind(kind);
  e.set_message(std::move(message));
  e.set_retryable(retryable);
  return e;
}

void ResetRunFields(v1::Decision* d) {
  v1::Decision kept;
  kept.set_requested_class(d->requested_class());
  kept.set_resolved_class(d->resolved_class());
  kept.set_reason(d->reason());
  // The routing evidence, without what the last run added.
  kept.set_evidence(std::string(d->evidence().substr(0, d->evidence().find(kThisRun))));
  kept.set_runtime(d->runtime());
  kept.set_pool(d->pool());
  kept.set_submitted_unix_us(d->submitted_unix_us());
  kept.set_attempt(d->attempt());
  kept.set_daemon_pid(d->daemon_pid());
  kept.set_recovered(d->recovered());
  *d = std::move(kept);
}

v1::TaskResult MakeResult(const v1::Task& t) {
  v1::TaskResult r;
  r.set_id(t.id());
  r.set_state(t.state());
  r.set_output(t.output());
  if (t.has_error()) *r.mutable_error() = t.error();
  *r.mutable_decision() = t.decision();
  *r.mutable_attempts() = t.attempts();
  return r;
}

int64_t BackoffUs(const v1::TaskSpec& spec, int attempt) {
  const int64_t base_ms = spec.retry_backoff_ms() == 0 ? 500 : spec.retry_backoff_ms();
  int64_t ms = base_ms;
  for (int i = 1; i < attempt && ms < 60'000; ++i) ms *= 2;
  return std::min<int64_t>(ms, 60'000) * 1000;
}

ValidationLimits LimitsOf(const TaskManagerOptions& o) {
  ValidationLimits limits;
  limits.max_input_bytes = o.max_input_bytes;
  limits.max_batch = o.max_batch;
  limits.max_timeout_ms = o.max_timeout_ms;
  limits.max_attempts = o.max_attempts_limit;
  return limits;
}

}  // namespace taskrt::daemon
