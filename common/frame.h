// Length-prefixed protobuf frames for the daemon <-> worker socketpair.
//
// Wire format: 4-byte little-endian length, then that many bytes of a serialized
// WorkerFrame. Frames larger than kMaxFrameBytes are refused on both ends; the daemon
// refuses frames larger than FrameLimitFor(--max-output-bytes), which a worker never
// sends (it replaces a result that would not fit by an OUTPUT_TOO_LARGE failure).
// Thread-safety: FrameDecoder is not thread-safe; the free functions are.
#ifndef TASKRT_COMMON_FRAME_H_
#define TASKRT_COMMON_FRAME_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "taskrt/v1/worker.pb.h"

namespace taskrt::internal {

inline constexpr size_t kMaxFrameBytes = 256u << 20;
// Handler error messages are cut to this many bytes, so that an error can never make a
// TaskDone frame too large.
inline constexpr size_t kMaxErrorBytes = 64u << 10;
// The bytes of a worker's frame besides a task's output: a capped error, the other
// TaskDone fields, or a hello's handler list.
inline constexpr size_t kFrameOverheadBytes = kMaxErrorBytes + (1u << 20);
// Largest accepted --max-output-bytes: a result of that size still fits in a frame.
inline constexpr size_t kMaxOutputBytesLimit = kMaxFrameBytes - kFrameOverheadBytes;
// Default of taskrtd --max-output-bytes (and of taskrt-worker's).
inline constexpr size_t kDefaultMaxOutputBytes = 16u << 20;

// The largest frame a worker sends when task outputs are capped at `max_output_bytes`:
// the daemon's decoder limit, and the worker's check before it sends a result.
constexpr size_t FrameLimitFor(size_t max_output_bytes) {
  return std::min(kMaxFrameBytes,
                  std::min(max_output_bytes, kMaxOutputBytesLimit) + kFrameOverheadBytes);
}

// The bytes `frame` takes on the wire, length prefix included.
size_t FrameBytes(const v1::internal::WorkerFrame& frame);

// Appends the frame for `frame` to `out`.
void AppendFrame(const v1::internal::WorkerFrame& frame, std::string* out);

// Splits a byte stream into frames. Feed bytes with Append, then call Next until it
// returns false. A corrupt stream (a length over `max_frame_bytes`, an unparsable
// body) is an error after which the decoder should be discarded.
class FrameDecoder {
 public:
  // `max_frame_bytes` is clamped to kMaxFrameBytes.
  explicit FrameDecoder(size_t max_frame_bytes = kMaxFrameBytes)
      : max_frame_bytes_(std::min(max_frame_bytes, kMaxFrameBytes)) {}
  void Append(std::string_view bytes);
  // True and fills `frame` when a whole frame was buffered; false when more bytes are
  // needed; an error for a corrupt stream.
  absl::StatusOr<bool> Next(v1::internal::WorkerFrame* frame);
  size_t buffered() const { return buffer_.size() - offset_; }
  size_t max_frame_bytes() const { return max_frame_bytes_; }

 private:
  size_t max_frame_bytes_;
  std::string buffer_;
  size_t offset_ = 0;
};

// Blocking helpers for simple loops (tests, worker start-up). They retry on EINTR.
absl::Status WriteFrame(int fd, const v1::internal::WorkerFrame& frame);
// Returns NOT_FOUND at a clean end of stream before any byte of a frame.
absl::Status ReadFrame(int fd, v1::internal::WorkerFrame* frame);

}  // namespace taskrt::internal

#endif  // TASKRT_COMMON_FRAME_H_
