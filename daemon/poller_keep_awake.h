// PollerKeepAwake: keeps gRPC's callback-API polling threads from pausing.
//
// In the gRPC this daemon builds against (1.51), the server's callback API is driven by
// two "nexting" threads that also poll the sockets. A nexting thread that sees no
// completion for 1 s sleeps 100 ms before polling again, and after any burst both start
// their 1 s wait together, so an idle daemon was deaf for 100 ms of every 1.1 s: a
// request, or the next message of a result stream, that arrived then waited (sleep_1000
// in taskrt-bench measured 1.10 s for 1 s of sleeping). One in-process call every
// `period` gives one of them a completion well within its second, and so keeps it polling.
//
// Thread-safety: constructed and destroyed by one thread; the destructor stops and joins
// the calling thread, and must run before the server shuts down.
#ifndef TASKRT_DAEMON_POLLER_KEEP_AWAKE_H_
#define TASKRT_DAEMON_POLLER_KEEP_AWAKE_H_

#include <memory>
#include <thread>

#include "absl/time/time.h"
#include "common/mutex.h"

namespace grpc {
class Server;
}

namespace taskrt::daemon {

class PollerKeepAwake {
 public:
  PollerKeepAwake(grpc::Server& server, absl::Duration period);
  ~PollerKeepAwake();
  PollerKeepAwake(const PollerKeepAwake&) = delete;
  PollerKeepAwake& operator=(const PollerKeepAwake&) = delete;

  // Calls made so far (for tests).
  int calls();

 private:
  void Loop(grpc::Server* server, absl::Duration period);

  internal::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_POLLER_KEEP_AWAKE_H_
