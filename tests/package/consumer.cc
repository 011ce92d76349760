// Built against an installed taskrt to prove the exported package works; connects to
// no daemon, only checks that the SDK links and reports a clear error.
#include <iostream>

#include "taskrt/client.h"

int main() {
  taskrt::ClientOptions options;
  options.socket_path = "/nonexistent/taskrt.sock";
  options.connect_timeout = absl::Milliseconds(100);
  auto client = taskrt::Client::Connect(options);
  if (client.ok() || client.status().code() != absl::StatusCode::kUnavailable) return 1;
  std::cout << taskrt::ClassName(taskrt::v1::TASK_CLASS_CPU) << "\n";
  return 0;
}
