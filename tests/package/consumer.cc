// Built against an installed taskrt to prove the exported package works.
//   consumer              connects to no daemon: checks that the SDK links and reports
//                         a clear error, prints "cpu"
//   consumer SOCKET       runs example.reverse("hello") on the daemon at SOCKET and
//                         prints its output ("olleh")
#include <iostream>

#include "taskrt/client.h"

int main(int argc, char** argv) {
  taskrt::ClientOptions options;
  options.socket_path = argc > 1 ? argv[1] : "/nonexistent/taskrt.sock";
  options.connect_timeout = absl::Milliseconds(argc > 1 ? 5000 : 100);
  auto client = taskrt::Client::Connect(options);
  if (argc == 1) {
    if (client.ok() || client.status().code() != absl::StatusCode::kUnavailable) return 1;
    std::cout << taskrt::ClassName(taskrt::v1::TASK_CLASS_CPU) << "\n";
    return 0;
  }
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 1;
  }
  auto task = (*client)->Run(taskrt::MakeTask("example.reverse", "hello"), absl::Seconds(60));
  if (!task.ok() || task->state() != taskrt::v1::TASK_STATE_SUCCEEDED) {
    std::cerr << (task.ok() ? task->error().message() : task.status().ToString()) << "\n";
    return 1;
  }
  std::cout << task->output() << "\n";
  return 0;
}
