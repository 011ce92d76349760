#include "daemon/poller_keep_awake.h"

#include <grpcpp/client_context.h>
#include <grpcpp/server.h>

#include "taskrt/v1/service.grpc.pb.h"

namespace taskrt::daemon {

PollerKeepAwake::PollerKeepAwake(grpc::Server& server, absl::Duration period)
    : thread_([this, server = &server, period] { Loop(server, period); }) {}

PollerKeepAwake::~PollerKeepAwake() {
  {
    internal::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

int PollerKeepAwake::calls() {
  internal::MutexLock lock(&mu_);
  return calls_;
}

void PollerKeepAwake::Loop(grpc::Server* server, absl::Duration period) {
  // In-process: no socket, no connection to set up, nothing a client could see.
  auto stub = v1::TaskService::NewStub(server->InProcessChannel(grpc::ChannelArguments()));
  while (true) {
    {
      internal::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), period)) return;
      ++calls_;
    }
    // A Get of no tasks: the cheapest call whose completion runs on those threads.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(period * 4));
    v1::GetRequest request;
    v1::GetResponse response;
    stub->Get(&context, request, &response).ok();  // a failure only means no wake-up this time
  }
}

}  // namespace taskrt::daemon
