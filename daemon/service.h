// The gRPC face of the daemon: translates TaskService calls to TaskManager calls.
//
// Uses the callback API; no reaction blocks, every RPC is finished exactly once.
// Thread-safety: called on gRPC's threads; holds no state of its own besides the
// per-call reactors.
#ifndef TASKRT_DAEMON_SERVICE_H_
#define TASKRT_DAEMON_SERVICE_H_

#include "daemon/access.h"
#include "daemon/listener.h"
#include "daemon/task_manager.h"
#include "taskrt/v1/service.grpc.pb.h"

namespace taskrt::daemon {

// How the service tells who is calling (see access.h). Not owned; all outlive the
// service. Without a registry (tests that build the service alone) every call is the
// daemon's own.
struct CallerIdentity {
  ConnectionRegistry* registry = nullptr;
  const AccessPolicy* policy = nullptr;
  const TokenStore* tokens = nullptr;     // null: no TCP listener, so no token accepted
  size_t watch_backlog_bytes = 8u << 20;  // a Watch whose client lags more is ended
};

// service_logs.cc: the Logs call of `caller`.
grpc::ServerWriteReactor<v1::OutputChunk>* NewLogsReactor(TaskManager& manager,
                                                          const Caller& caller,
                                                          const v1::LogsRequest& request);
// The gRPC status of `s` (same code and message).
grpc::Status ToGrpc(const absl::Status& s);

// The caller of a call: its peer's uid on a unix socket, the owner of its bearer token
// on TCP, the daemon itself in-process. UNAUTHENTICATED (saying how to fix it)
// otherwise.
absl::StatusOr<Caller> IdentifyCaller(const CallerIdentity& identity,
                                      const grpc::CallbackServerContext& ctx);

class TaskServiceImpl final : public v1::TaskService::CallbackService {
 public:
  // `stream_result_backlog`: see DaemonOptions.
  // What GetStats reports about the daemon's other endpoints (Stats.http_url, token_file).
  struct Endpoints {
    std::string http_url, token_file;
  };
  TaskServiceImpl(TaskManager& manager, CallerIdentity identity, int stream_result_backlog = 10000,
                  Endpoints endpoints = {})
      : manager_(manager),
        identity_(identity),
        stream_result_backlog_(stream_result_backlog),
        endpoints_(std::move(endpoints)) {}

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitRequest* request,
                                   v1::SubmitResponse* response) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetRequest* request,
                                v1::GetResponse* response) override;
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext* ctx, const v1::WaitRequest* request,
                                 v1::WaitResponse* response) override;
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* ctx, const v1::RunRequest* request,
                                v1::Task* response) override;
  grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* Stream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx,
                                   const v1::CancelRequest* request,
                                   v1::CancelResponse* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx, const v1::ListRequest* request,
                                 v1::ListResponse* response) override;
  grpc::ServerWriteReactor<v1::TaskEvent>* Watch(grpc::CallbackServerContext* ctx,
                                                 const v1::WatchRequest* request) override;
  grpc::ServerWriteReactor<v1::OutputChunk>* Logs(grpc::CallbackServerContext* ctx,
                                                  const v1::LogsRequest* request) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* request,
                                     v1::Stats* response) override;
  grpc::ServerUnaryReactor* ListHandlers(grpc::CallbackServerContext* ctx,
                                         const v1::ListHandlersRequest* request,
                                         v1::ListHandlersResponse* response) override;

 private:
  TaskManager& manager_;
  const CallerIdentity identity_;
  const int stream_result_backlog_;
  const Endpoints endpoints_;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_SERVICE_H_
