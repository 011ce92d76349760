#include "cli/interrupt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/common.h"

namespace taskrt::cli {
namespace {

int g_interrupt_fd = -1;  // the write end while a CancelOnInterrupt is alive
struct sigaction g_previous;
std::atomic<int> g_interrupts{0};
// Written by the handler itself on the second SIGINT (the watcher may be blocked in
// the cancel call when the daemon does not answer); set before the handler is.
std::string* g_detach_message = nullptr;

constexpr char kInterrupted = 'i';
constexpr char kStop = 's';

// "tsk-1" or "3 tasks (tsk-1 ... tsk-3)": a batch may hold 100,000.
std::string Describe(const std::vector<std::string>& ids) {
  if (ids.size() <= 3) return absl::StrJoin(ids, " ");
  return absl::StrCat(ids.size(), " tasks (", ids.front(), " ... ", ids.back(), ")");
}

// Async-signal-safe: write(2), _exit(2) and a lock-free atomic only.
void OnSigint(int) {
  const int saved = errno;
  if (g_interrupts.fetch_add(1) >= 1 && g_detach_message != nullptr) {
    [[maybe_unused]] ssize_t n =
        ::write(STDERR_FILENO, g_detach_message->data(), g_detach_message->size());
    ::_exit(130);  // 128 + SIGINT, like a shell
  }
  if (g_interrupt_fd >= 0) {
    [[maybe_unused]] ssize_t n = ::write(g_interrupt_fd, &kInterrupted, 1);
  }
  errno = saved;
}

}  // namespace

CancelOnInterrupt::CancelOnInterrupt(Client& client, std::vector<std::string> ids)
    : client_(client), ids_(std::move(ids)) {
  if (ids_.empty() || ::pipe2(pipe_, O_CLOEXEC) != 0) return;
  detach_message_ =
      absl::StrCat("\ntaskrt: detached; still on the daemon: ", absl::StrJoin(ids_, " "),
                   "\n(`taskrt wait ID...` waits again)\n");
  g_detach_message = &detach_message_;
  g_interrupts = 0;
  g_interrupt_fd = pipe_[1];
  struct sigaction sa = {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  installed_ = ::sigaction(SIGINT, &sa, &g_previous) == 0;
  watcher_ = std::thread([this] { Watch(); });
}

CancelOnInterrupt::~CancelOnInterrupt() {
  if (installed_) ::sigaction(SIGINT, &g_previous, nullptr);
  if (watcher_.joinable()) {
    [[maybe_unused]] ssize_t n = ::write(pipe_[1], &kStop, 1);
    watcher_.join();
  }
  g_interrupt_fd = -1;
  g_detach_message = nullptr;
  for (int fd : pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

void CancelOnInterrupt::Watch() {
  char c = 0;
  while (true) {
    const ssize_t n = ::read(pipe_[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1 || c == kStop) return;
    std::cerr << "\ntaskrt: cancelling " << Describe(ids_)
              << " (Ctrl-C again to detach and leave it running)" << std::endl;
    absl::StatusOr<std::vector<v1::Task>> cancelled = client_.Cancel(ids_);
    if (!cancelled.ok()) {
      PrintError(absl::StrCat("cancel failed: ", cancelled.status().message()));
    }
    // The wait returns once the daemon has cancelled them.
  }
}

}  // namespace taskrt::cli
