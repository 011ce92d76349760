// The gRPC face of the daemon: translates TaskService calls to TaskManager calls.
//
// Uses the callback API; no reaction blocks, every RPC is finished exactly once.
// Thread-safety: called on gRPC's threads; holds no state of its own besides the
// per-call reactors.
#ifndef TASKRT_DAEMON_SERVICE_H_
#define TASKRT_DAEMON_SERVICE_H_

#include "daemon/task_manager.h"
#include "taskrt/v1/service.grpc.pb.h"

namespace taskrt::daemon {

class TaskServiceImpl final : public v1::TaskService::CallbackService {
 public:
  // `stream_result_backlog`: see DaemonOptions.
  explicit TaskServiceImpl(TaskManager& manager, int stream_result_backlog = 10000)
      : manager_(manager), stream_result_backlog_(stream_result_backlog) {}

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
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* request,
                                     v1::Stats* response) override;
  grpc::ServerUnaryReactor* ListHandlers(grpc::CallbackServerContext* ctx,
                                         const v1::ListHandlersRequest* request,
                                         v1::ListHandlersResponse* response) override;

 private:
  TaskManager& manager_;
  const int stream_result_backlog_;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_SERVICE_H_
