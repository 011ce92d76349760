// Fuzzes taskrt::internal::FrameDecoder (common/frame.h) with arbitrary bytes, fed
// whole, byte by byte and in chunks whose sizes the input's last bytes choose.
//
// Invariants checked (a violation aborts, which libFuzzer reports as a crash):
// - every way of chunking the same bytes decodes the same frames and ends the same way
//   (the same error, or the same number of bytes left waiting for more);
// - an error ends decoding: Next keeps returning it, even after more bytes arrive;
// - a decoded frame re-encodes (AppendFrame) into a frame that decodes to the same
//   message, and the decoder's bookkeeping (buffered()) adds up;
// - without an error, what is left is less than a whole frame.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/frame.h"
#include "fuzz_check.h"
#include "google/protobuf/stubs/logging.h"

namespace {

using taskrt::internal::AppendFrame;
using taskrt::internal::FrameDecoder;
using taskrt::internal::kMaxFrameBytes;
using taskrt::v1::internal::WorkerFrame;

// What one decoding of the stream produced.
struct Outcome {
  std::vector<std::string> frames;  // serialized, in order
  bool failed = false;
  std::string error;
  size_t left = 0;  // buffered() at the end
};

uint32_t LengthAt(std::string_view stream, size_t offset) {
  const auto* u = reinterpret_cast<const unsigned char*>(stream.data() + offset);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) |
         (static_cast<uint32_t>(u[2]) << 16) | (static_cast<uint32_t>(u[3]) << 24);
}

// The frame re-encodes to bytes that decode, alone, to the same message.
void CheckReencodes(const WorkerFrame& frame) {
  FUZZ_CHECK(frame.ByteSizeLong() <= kMaxFrameBytes);
  std::string bytes;
  AppendFrame(frame, &bytes);
  FUZZ_CHECK(bytes.size() == 4 + frame.ByteSizeLong());
  FrameDecoder again;
  again.Append(bytes);
  WorkerFrame copy;
  auto next = again.Next(&copy);
  FUZZ_CHECK(next.ok() && *next);
  FUZZ_CHECK(again.buffered() == 0);
  FUZZ_CHECK(copy.SerializeAsString() == frame.SerializeAsString());
  auto end = again.Next(&copy);
  FUZZ_CHECK(end.ok() && !*end);
}

// Drains every whole frame; returns false once the decoder reported an error.
bool Drain(FrameDecoder& decoder, std::string_view stream, size_t appended, Outcome& out) {
  while (true) {
    WorkerFrame frame;
    const size_t before = decoder.buffered();
    auto next = decoder.Next(&frame);
    if (!next.ok()) {
      out.failed = true;
      out.error = std::string(next.status().message());
      FUZZ_CHECK(decoder.buffered() == before);
      return false;
    }
    if (!*next) {
      FUZZ_CHECK(decoder.buffered() == before);
      return true;
    }
    // A frame took its 4-byte header and the body it announced off the buffer (the
    // message may re-encode shorter: duplicate fields, non-minimal varints).
    const size_t offset = appended - before;
    FUZZ_CHECK(before - decoder.buffered() == 4 + static_cast<size_t>(LengthAt(stream, offset)));
    CheckReencodes(frame);
    out.frames.push_back(frame.SerializeAsString());
  }
}

// Feeds `stream` in chunks of `sizes` (cycled; 0 = the rest at once).
Outcome Decode(std::string_view stream, const std::vector<size_t>& sizes) {
  Outcome out;
  FrameDecoder decoder;
  size_t appended = 0;
  size_t i = 0;
  while (appended < stream.size()) {
    size_t n = sizes.empty() ? 0 : sizes[i++ % sizes.size()];
    if (n == 0 || n > stream.size() - appended) n = stream.size() - appended;
    decoder.Append(stream.substr(appended, n));
    appended += n;
    if (!Drain(decoder, stream, appended, out)) break;
  }
  if (out.failed) {
    // An error ends decoding: it stays, whatever arrives after it.
    WorkerFrame frame;
    decoder.Append(std::string_view("\0\0\0\0", 4));
    auto again = decoder.Next(&frame);
    FUZZ_CHECK(!again.ok());
    FUZZ_CHECK(again.status().code() == absl::StatusCode::kDataLoss);
    return out;
  }
  out.left = decoder.buffered();
  FUZZ_CHECK(out.left <= stream.size());
  // What is left is an incomplete frame: a partial header, or a body not all here.
  const size_t offset = stream.size() - out.left;
  FUZZ_CHECK(out.left < 4 || 4 + static_cast<size_t>(LengthAt(stream, offset)) > out.left);
  return out;
}

void CheckSame(const Outcome& a, const Outcome& b) {
  FUZZ_CHECK(a.frames == b.frames);
  FUZZ_CHECK(a.failed == b.failed);
  FUZZ_CHECK(a.error == b.error);
  FUZZ_CHECK(a.left == b.left);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Unparsable strings (invalid UTF-8) are logged by protobuf: expected here, and noise.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view stream(reinterpret_cast<const char*>(data), size);
  const Outcome whole = Decode(stream, {});
  CheckSame(whole, Decode(stream, {1}));
  // Chunk sizes 1..64 from the last (up to) 8 bytes of the input.
  std::vector<size_t> sizes;
  for (size_t i = 0; i < 8 && i < size; ++i) sizes.push_back(1 + data[size - 1 - i] % 64);
  CheckSame(whole, Decode(stream, sizes));
  return 0;
}
