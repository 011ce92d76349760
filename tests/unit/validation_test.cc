#include "daemon/validation.h"

#include <gtest/gtest.h>

#include <string>

namespace taskrt::daemon {
namespace {

bool Known(std::string_view h) { return h == "math.primes" || h == "sys.noop"; }
std::string KnownList() { return "math.primes, sys.noop"; }

v1::TaskSpec Spec(std::string handler) {
  v1::TaskSpec s;
  s.set_handler(std::move(handler));
  return s;
}

TEST(ValidationTest, QuoteInputEscapesAndTruncates) {
  EXPECT_EQ(QuoteInput("math.prime"), "'math.prime'");
  EXPECT_EQ(QuoteInput(std::string_view("a\x01'b\n", 5)), "'a\\x01\\'b\\n'");
  const std::string big(1000000, 'x');
  const std::string q = QuoteInput(big);
  EXPECT_EQ(q, "'" + std::string(kMaxQuotedInputBytes, 'x') + "'\xE2\x80\xA6(1000000 bytes)");
}

TEST(ValidationTest, UnknownHandlerIsNamedButNotEchoedWhole) {
  const ValidationLimits limits;
  auto s = ValidateSpec(Spec("math.prime"), limits, Known, KnownList);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "handler 'math.prime' is not registered (known: math.primes, sys.noop)");
  s = ValidateSpec(Spec(std::string(20u << 20, 'h')), limits, Known, KnownList);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(s.message().size(), 400u);
  EXPECT_NE(s.message().find("(20971520 bytes)"), std::string::npos) << s.message();
}

TEST(ValidationTest, IdPrefix) {
  EXPECT_TRUE(ValidateIdPrefix("taskrt-0").ok());
  EXPECT_TRUE(ValidateIdPrefix("node_7.example").ok());
  for (const char* bad : {"", "a/b", "a b", "pod:1", "\xff"}) {
    EXPECT_EQ(ValidateIdPrefix(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateIdPrefix(std::string(65, 'a')).ok());
  EXPECT_TRUE(ValidateIdPrefix(std::string(64, 'a')).ok());
}

TEST(ValidationTest, SpecLimits) {
  ValidationLimits limits;
  limits.max_input_bytes = 4;
  EXPECT_TRUE(ValidateSpec(Spec("sys.noop"), limits, Known, KnownList).ok());
  v1::TaskSpec s = Spec("sys.noop");
  s.set_input("12345");
  EXPECT_FALSE(ValidateSpec(s, limits, Known, KnownList).ok());
  s = Spec("sys.noop");
  s.set_retry_backoff_ms(~0ull);  // would overflow the backoff arithmetic
  EXPECT_FALSE(ValidateSpec(s, limits, Known, KnownList).ok());
  s = Spec("sys.noop");
  s.set_requested_class(static_cast<v1::TaskClass>(7));
  EXPECT_FALSE(ValidateSpec(s, limits, Known, KnownList).ok());
  EXPECT_FALSE(ValidateSpec(Spec(""), limits, Known, KnownList).ok());
}

TEST(ValidationTest, TaskIds) {
  const ValidationLimits limits;
  google::protobuf::RepeatedPtrField<std::string> ids;
  EXPECT_FALSE(ValidateTaskIds(ids, limits).ok());
  EXPECT_TRUE(ValidateTaskIds(ids, limits, /*allow_empty=*/true).ok());
  *ids.Add() = "a1b2c3-17";
  *ids.Add() = "no-such-task-42";
  EXPECT_TRUE(ValidateTaskIds(ids, limits).ok());
  *ids.Add() = "bad id";
  EXPECT_EQ(ValidateTaskIds(ids, limits).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ValidateTaskId(std::string(129, 'a'), limits).ok());
  EXPECT_FALSE(ValidateTaskId("", limits).ok());
}

TEST(ValidationTest, BatchWaitAndList) {
  ValidationLimits limits;
  limits.max_batch = 2;
  EXPECT_FALSE(ValidateBatchSize(0, limits).ok());
  EXPECT_TRUE(ValidateBatchSize(2, limits).ok());
  EXPECT_FALSE(ValidateBatchSize(3, limits).ok());
  EXPECT_EQ(ClampWaitTimeoutMs(0, limits), 0u);
  EXPECT_EQ(ClampWaitTimeoutMs(250, limits), 250u);
  EXPECT_EQ(ClampWaitTimeoutMs(~0ull, limits), limits.max_wait_timeout_ms);
  v1::ListRequest list;
  EXPECT_EQ(ListLimit(list, limits), 100u);
  list.set_limit(1u << 30);
  EXPECT_EQ(ListLimit(list, limits), 100000u);
  list.add_states(v1::TASK_STATE_FAILED);
  EXPECT_TRUE(ValidateListRequest(list, limits).ok());
  list.add_states(static_cast<v1::TaskState>(99));
  EXPECT_FALSE(ValidateListRequest(list, limits).ok());
}

}  // namespace
}  // namespace taskrt::daemon
