#include "daemon/health_server.h"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace taskrt::daemon {

void SetHealth(grpc::Server& server, bool serving) {
  if (grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService()) {
    health->SetServingStatus(serving);  // "" and every service set so far
    health->SetServingStatus("taskrt.v1.TaskService", serving);
  }
}

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& address) {
  grpc::EnableDefaultHealthCheckService(true);  // the builder adds the service
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(4096);  // a health check is a few bytes
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on --health-listen ", address,
                                               " (is it HOST:PORT, and is the port free?)"));
  }
  SetHealth(*server, true);
  return std::unique_ptr<HealthServer>(new HealthServer(std::move(server), port));
}

HealthServer::HealthServer(std::unique_ptr<grpc::Server> server, int port)
    : server_(std::move(server)), port_(port) {}

HealthServer::~HealthServer() { Stop(); }

void HealthServer::SetServing(bool serving) { SetHealth(*server_, serving); }

void HealthServer::Stop() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  server_->Wait();
}

}  // namespace taskrt::daemon
