// The plaintext health listener (taskrtd --health-listen HOST:PORT): a gRPC server that
// serves only the standard health service, grpc.health.v1.Health, with no TLS and no
// token, for Kubernetes' gRPC probes (kubelet sends neither). It tells nothing but
// SERVING or NOT_SERVING, for the whole server ("") and for taskrt.v1.TaskService.
// Thread-safety: SetServing and Stop may be called from any thread.
#ifndef TASKRT_DAEMON_HEALTH_SERVER_H_
#define TASKRT_DAEMON_HEALTH_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class Server;
}

namespace taskrt::daemon {

class HealthServer {
 public:
  // Binds `address` (HOST:PORT; port 0 picks one) and serves SERVING.
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& address);
  ~HealthServer();
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // NOT_SERVING while the daemon drains: a readiness probe then fails.
  void SetServing(bool serving);
  void Stop();
  int port() const { return port_; }

 private:
  HealthServer(std::unique_ptr<grpc::Server> server, int port);
  std::unique_ptr<grpc::Server> server_;
  const int port_;
};

// Sets the health of the server as a whole ("") and of taskrt.v1.TaskService.
void SetHealth(grpc::Server& server, bool serving);

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_HEALTH_SERVER_H_
