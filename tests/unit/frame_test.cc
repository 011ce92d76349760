#include "common/frame.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace taskrt::internal {
namespace {

using v1::internal::WorkerFrame;

WorkerFrame RunFrame(uint64_t seq, std::string input) {
  WorkerFrame f;
  f.mutable_run()->set_seq(seq);
  f.mutable_run()->set_handler("sys.noop");
  f.mutable_run()->set_input(std::move(input));
  return f;
}

TEST(FrameTest, RoundTripsSeveralFramesFedByteByByte) {
  std::string stream;
  AppendFrame(RunFrame(1, "a"), &stream);
  AppendFrame(RunFrame(2, std::string(100000, 'x')), &stream);
  AppendFrame(WorkerFrame(), &stream);  // empty body is a valid frame
  FrameDecoder decoder;
  std::vector<WorkerFrame> got;
  for (char c : stream) {
    decoder.Append(std::string_view(&c, 1));
    WorkerFrame f;
    while (true) {
      auto next = decoder.Next(&f);
      ASSERT_TRUE(next.ok()) << next.status();
      if (!*next) break;
      got.push_back(f);
    }
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].run().seq(), 1u);
  EXPECT_EQ(got[0].run().input(), "a");
  EXPECT_EQ(got[1].run().input().size(), 100000u);
  EXPECT_FALSE(got[2].has_run());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameTest, RejectsOversizedLength) {
  FrameDecoder decoder;
  const char header[4] = {'\xff', '\xff', '\xff', '\x7f'};
  decoder.Append(std::string_view(header, 4));
  WorkerFrame f;
  auto next = decoder.Next(&f);
  EXPECT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), absl::StatusCode::kDataLoss);
}

TEST(FrameTest, RejectsGarbageBody) {
  FrameDecoder decoder;
  const char bytes[] = {3, 0, 0, 0, '\xff', '\xff', '\xff'};
  decoder.Append(std::string_view(bytes, sizeof(bytes)));
  WorkerFrame f;
  EXPECT_FALSE(decoder.Next(&f).ok());
}

TEST(FrameTest, BlockingHelpersOverSocketpair) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ASSERT_TRUE(WriteFrame(fds[0], RunFrame(7, "hello")).ok());
  WorkerFrame f;
  ASSERT_TRUE(ReadFrame(fds[1], &f).ok());
  EXPECT_EQ(f.run().seq(), 7u);
  EXPECT_EQ(f.run().input(), "hello");
  ::close(fds[0]);
  EXPECT_EQ(ReadFrame(fds[1], &f).code(), absl::StatusCode::kNotFound);  // clean EOF
  ::close(fds[1]);
}

TEST(FrameTest, TruncatedStreamIsDataLoss) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  std::string bytes;
  AppendFrame(RunFrame(1, "abcdef"), &bytes);
  ASSERT_EQ(::write(fds[0], bytes.data(), bytes.size() - 2),
            static_cast<ssize_t>(bytes.size() - 2));
  ::close(fds[0]);
  WorkerFrame f;
  EXPECT_EQ(ReadFrame(fds[1], &f).code(), absl::StatusCode::kDataLoss);
  ::close(fds[1]);
}

}  // namespace
}  // namespace taskrt::internal
