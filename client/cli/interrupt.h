// Ctrl-C while the CLI waits for tasks it submitted: the first SIGINT asks the daemon
// to cancel them, the second detaches (prints the ids and exits 130, the tasks keep
// running). Without this a waiting `exec` left its command running and said nothing.
#ifndef TASKRT_CLIENT_CLI_INTERRUPT_H_
#define TASKRT_CLIENT_CLI_INTERRUPT_H_

#include <string>
#include <thread>
#include <vector>

#include "taskrt/client.h"

namespace taskrt::cli {

// While alive, SIGINT is handled as above; the destructor restores the previous
// disposition. On the first SIGINT the handler writes a byte to a pipe and a thread of
// its own calls the daemon (a handler may not); on the second the handler itself
// writes the prepared message and exits, even while that call hangs. One at a time
// per process.
class CancelOnInterrupt {
 public:
  CancelOnInterrupt(Client& client, std::vector<std::string> ids);
  ~CancelOnInterrupt();
  CancelOnInterrupt(const CancelOnInterrupt&) = delete;
  CancelOnInterrupt& operator=(const CancelOnInterrupt&) = delete;

 private:
  void Watch();

  Client& client_;
  const std::vector<std::string> ids_;
  std::string detach_message_;  // written by the signal handler on the second SIGINT
  int pipe_[2] = {-1, -1};
  bool installed_ = false;
  std::thread watcher_;
};

}  // namespace taskrt::cli

#endif  // TASKRT_CLIENT_CLI_INTERRUPT_H_
