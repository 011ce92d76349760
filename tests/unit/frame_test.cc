#include "common/frame.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

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

TEST(FrameTest, DecoderRefusesFramesOverItsLimit) {
  std::string stream;
  AppendFrame(RunFrame(1, std::string(1000, 'x')), &stream);
  FrameDecoder small(500);
  small.Append(stream);
  WorkerFrame f;
  auto next = small.Next(&f);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), absl::StatusCode::kDataLoss);
  FrameDecoder enough(stream.size() - 4);
  enough.Append(stream);
  next = enough.Next(&f);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(*next);
  EXPECT_EQ(FrameBytes(f), stream.size());
}

TEST(FrameTest, FrameLimitLeavesRoomForTheOutputAndStaysUnderTheWireLimit) {
  EXPECT_EQ(FrameLimitFor(1u << 20), (1u << 20) + kFrameOverheadBytes);
  EXPECT_GT(FrameLimitFor(0), kMaxErrorBytes);
  EXPECT_EQ(FrameLimitFor(kMaxOutputBytesLimit), kMaxFrameBytes);
  EXPECT_EQ(FrameLimitFor(~size_t{0}), kMaxFrameBytes);
  EXPECT_EQ(FrameDecoder(~size_t{0}).max_frame_bytes(), kMaxFrameBytes);
}

TEST(BoundedUtf8Test, KeepsValidTextAndReplacesInvalidBytes) {
  EXPECT_EQ(BoundedUtf8("plain", 100), "plain");
  EXPECT_EQ(BoundedUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 100),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(BoundedUtf8("a\xff"
                        "b\xc3"
                        "c\xc0\xaf"
                        "d\xed\xa0\x80",
                        100),
            "a?b?c??d???");
}

TEST(BoundedUtf8Test, CutsLongTextAtACharacterBoundaryWithANote) {
  std::string text = "a";
  for (int i = 0; i < 1000; ++i) text += "\xc3\xa9";
  const std::string cut = BoundedUtf8(text, 100);
  EXPECT_LE(cut.size(), 100u);
  EXPECT_NE(cut.find("[cut: 2001 bytes in all]"), std::string::npos) << cut;
  const std::string kept = cut.substr(0, cut.find("..."));
  EXPECT_EQ(BoundedUtf8(kept, 100), kept);  // still valid: no half character
  EXPECT_EQ(kept.size() % 2, 1u);
}

}  // namespace
}  // namespace taskrt::internal
