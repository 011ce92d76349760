#include "common/frame.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace taskrt::internal {
namespace {

uint32_t DecodeLength(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) |
         (static_cast<uint32_t>(u[2]) << 16) | (static_cast<uint32_t>(u[3]) << 24);
}

}  // namespace

size_t FrameBytes(const v1::internal::WorkerFrame& frame) { return 4 + frame.ByteSizeLong(); }

void AppendFrame(const v1::internal::WorkerFrame& frame, std::string* out) {
  const size_t size = frame.ByteSizeLong();
  const size_t start = out->size();
  out->resize(start + 4 + size);
  char* p = out->data() + start;
  p[0] = static_cast<char>(size & 0xff);
  p[1] = static_cast<char>((size >> 8) & 0xff);
  p[2] = static_cast<char>((size >> 16) & 0xff);
  p[3] = static_cast<char>((size >> 24) & 0xff);
  frame.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(p + 4));
}

void FrameDecoder::Append(std::string_view bytes) {
  if (offset_ > 0 && offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  } else if (offset_ > (1u << 16) && offset_ * 2 > buffer_.size()) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

absl::StatusOr<bool> FrameDecoder::Next(v1::internal::WorkerFrame* frame) {
  if (buffered() < 4) return false;
  const uint32_t size = DecodeLength(buffer_.data() + offset_);
  if (size > max_frame_bytes_) {
    return absl::DataLossError(
        absl::StrCat("frame of ", size, " bytes exceeds the limit of ", max_frame_bytes_));
  }
  if (buffered() < 4 + static_cast<size_t>(size)) return false;
  if (!frame->ParseFromArray(buffer_.data() + offset_ + 4, static_cast<int>(size))) {
    return absl::DataLossError(absl::StrCat("unparsable frame of ", size, " bytes"));
  }
  offset_ += 4 + size;
  return true;
}

absl::Status WriteFrame(int fd, const v1::internal::WorkerFrame& frame) {
  std::string bytes;
  AppendFrame(frame, &bytes);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("write: ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

namespace {

// Reads exactly `size` bytes; NOT_FOUND if the stream ends before the first byte.
absl::Status ReadExactly(int fd, char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("read: ", std::strerror(errno)));
    }
    if (n == 0) {
      return done == 0 ? absl::NotFoundError("end of stream")
                       : absl::DataLossError("stream ended inside a frame");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadFrame(int fd, v1::internal::WorkerFrame* frame) {
  char header[4];
  absl::Status status = ReadExactly(fd, header, 4);
  if (!status.ok()) return status;
  const uint32_t size = DecodeLength(header);
  if (size > kMaxFrameBytes) {
    return absl::DataLossError(absl::StrCat("frame of ", size, " bytes exceeds the limit"));
  }
  std::string body(size, '\0');
  status = ReadExactly(fd, body.data(), size);
  if (absl::IsNotFound(status)) return absl::DataLossError("stream ended inside a frame");
  if (!status.ok()) return status;
  if (!frame->ParseFromString(body)) return absl::DataLossError("unparsable frame");
  return absl::OkStatus();
}

}  // namespace taskrt::internal
