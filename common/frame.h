// Length-prefixed protobuf frames for the daemon <-> worker socketpair.
//
// Wire format: 4-byte little-endian length, then that many bytes of a serialized
// WorkerFrame. Frames larger than kMaxFrameBytes are refused on both ends.
// Thread-safety: FrameDecoder is not thread-safe; the free functions are.
#ifndef TASKRT_COMMON_FRAME_H_
#define TASKRT_COMMON_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "taskrt/v1/worker.pb.h"

namespace taskrt::internal {

inline constexpr size_t kMaxFrameBytes = 256u << 20;

// Appends the frame for `frame` to `out`.
void AppendFrame(const v1::internal::WorkerFrame& frame, std::string* out);

// Splits a byte stream into frames. Feed bytes with Append, then call Next until it
// returns false. A corrupt stream (oversized length, unparsable body) is an error
// after which the decoder should be discarded.
class FrameDecoder {
 public:
  void Append(std::string_view bytes);
  // True and fills `frame` when a whole frame was buffered; false when more bytes are
  // needed; an error for a corrupt stream.
  absl::StatusOr<bool> Next(v1::internal::WorkerFrame* frame);
  size_t buffered() const { return buffer_.size() - offset_; }

 private:
  std::string buffer_;
  size_t offset_ = 0;
};

// Blocking helpers for simple loops (tests, worker start-up). They retry on EINTR.
absl::Status WriteFrame(int fd, const v1::internal::WorkerFrame& frame);
// Returns NOT_FOUND at a clean end of stream before any byte of a frame.
absl::Status ReadFrame(int fd, v1::internal::WorkerFrame* frame);

}  // namespace taskrt::internal

#endif  // TASKRT_COMMON_FRAME_H_
