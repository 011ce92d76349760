#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/util.h"

namespace taskrt::cli {
namespace {

constexpr size_t kChunks = 200;
constexpr size_t kWaiters = 4;
constexpr auto kRedraw = std::chrono::milliseconds(100);
// A waiter's Wait call gives up after this, to notice that the batch wait ended.
constexpr absl::Duration kWaitSlice = absl::Milliseconds(500);

int TerminalWidth() {
  winsize ws{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) return ws.ws_col;
  return 80;
}

std::string FormatEta(double seconds) {
  if (seconds < 60) return absl::StrFormat("%.0fs", std::max(0.0, seconds));
  return internal::FormatMicros(static_cast<int64_t>(seconds * 1e6));
}

}  // namespace

bool StderrIsTerminal() {
  const char* term = std::getenv("TERM");
  return ::isatty(STDERR_FILENO) == 1 && !(term != nullptr && std::strcmp(term, "dumb") == 0);
}

std::string BatchProgress::Render(size_t done, size_t total, absl::Duration elapsed, int width) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  const int percent = total == 0 ? 100 : static_cast<int>(100 * done / total);
  const int digits = static_cast<int>(absl::StrCat(total).size());
  std::string tail = absl::StrFormat("  %*d/%d  %3d%%", digits, done, total, percent);
  if (done > 0 && rate > 0) {
    absl::StrAppend(&tail, absl::StrFormat("  %.0f/s", rate));
    if (done < total) {
      absl::StrAppend(&tail, "  ETA ", FormatEta(static_cast<double>(total - done) / rate));
    }
  } else {
    absl::StrAppend(&tail, "  ", FormatEta(seconds), " elapsed");
  }
  const int bar = std::max(10, width - 3 - static_cast<int>(tail.size()));
  const int filled = total == 0 ? bar : static_cast<int>(bar * done / total);
  return absl::StrCat("[", std::string(filled, '#'), std::string(bar - filled, '.'), "]", tail);
}

BatchProgress::BatchProgress(Client& client, const std::vector<std::string>& ids, bool enabled)
    : client_(client), total_(ids.size()) {
  if (!enabled || ids.size() < 2) return;
  const size_t per = std::max<size_t>(1, (ids.size() + kChunks - 1) / kChunks);
  for (size_t i = 0; i < ids.size(); i += per) {
    chunks_.emplace_back(ids.begin() + i, ids.begin() + std::min(ids.size(), i + per));
  }
  for (size_t w = 0; w < std::min(kWaiters, chunks_.size()); ++w) {
    waiters_.emplace_back([this, w] { WaitChunks(w); });
  }
  drawer_ = std::thread([this] { Draw(); });
}

BatchProgress::~BatchProgress() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (std::thread& t : waiters_) t.join();
  if (drawer_.joinable()) {
    drawer_.join();
    std::fputs("\r\033[K", stderr);  // erase the bar: the summary follows
    std::fflush(stderr);
  }
}

void BatchProgress::WaitChunks(size_t first) {
  for (size_t c = first; c < chunks_.size(); c += kWaiters) {
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
      }
      absl::StatusOr<std::vector<v1::Task>> tasks = client_.WaitAll(chunks_[c], kWaitSlice);
      if (tasks.ok()) break;
      if (!absl::IsDeadlineExceeded(tasks.status())) return;  // the daemon went away, ...
    }
    done_ += chunks_[c].size();
    changed_.notify_all();
  }
}

void BatchProgress::Draw() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const std::string line = Render(done_.load(), total_, absl::Now() - start_, TerminalWidth());
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
    changed_.wait_for(lock, kRedraw);
  }
}

}  // namespace taskrt::cli
