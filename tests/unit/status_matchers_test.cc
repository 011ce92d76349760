// The IsOk / StatusIs matchers (tests/testing/status_matchers.h) accept what they should
// and reject the rest, naming the status they saw.
#include "tests/testing/status_matchers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace taskrt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(StatusMatchersTest, IsOkAcceptsOkStatusAndValues) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::StatusOr<int>(7), IsOk());
  EXPECT_THAT(absl::NotFoundError("gone"), Not(IsOk()));
  EXPECT_THAT(absl::StatusOr<int>(absl::InternalError("x")), Not(IsOk()));
}

TEST(StatusMatchersTest, StatusIsComparesTheCodeAndTheMessage) {
  const absl::Status status = absl::InvalidArgumentError("handler 'x' is not registered");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not registered")));
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kInvalidArgument, "handler 'x' is not registered"));
  EXPECT_THAT(status, Not(StatusIs(absl::StatusCode::kNotFound)));
  EXPECT_THAT(status, Not(StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout"))));
  EXPECT_THAT(absl::StatusOr<std::string>(absl::UnavailableError("down")),
              StatusIs(absl::StatusCode::kUnavailable, "down"));
  EXPECT_THAT(absl::StatusOr<std::string>("value"), StatusIs(absl::StatusCode::kOk));
}

TEST(StatusMatchersTest, AFailureNamesTheStatusItSaw) {
  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(
      ::testing::ExplainMatchResult(IsOk(), absl::DeadlineExceededError("too slow"), &listener));
  EXPECT_THAT(listener.str(), HasSubstr("DEADLINE_EXCEEDED: too slow"));
}

}  // namespace
}  // namespace taskrt::testing
