// taskrt-worker: started by taskrtd, never by hand (see worker/worker.h).
#include <cstdio>

#include "CLI/CLI.hpp"
#include "common/frame.h"
#include "worker/worker.h"

int main(int argc, char** argv) {
  taskrt::worker::WorkerOptions options;
  CLI::App app{
      "taskrt-worker: runs tasks for taskrtd. It is started by the daemon with a "
      "connected socket on --fd; running it by hand is only useful for debugging."};
  app.add_option("--pool", options.pool, "Pool served: cpu (one task at a time) or io")
      ->check(CLI::IsMember({"cpu", "io"}));
  app.add_option("--threads", options.threads, "Thread-pool size for the io pool")
      ->check(CLI::Range(1, 4096));
  app.add_option("--fd", options.fd, "File descriptor of the daemon's socket");
  app.add_option("--plugin", options.plugins, "Plugin shared object to load (repeatable)");
  app.add_option("--memory-limit", options.memory_limit_bytes,
                 "Address-space limit of this worker in bytes (0 = none)");
  app.add_option("--max-output-bytes", options.max_output_bytes,
                 "Largest task result sent to the daemon; sys.exec keeps at most this much "
                 "of each of stdout and stderr")
      ->default_val(taskrt::internal::kDefaultMaxOutputBytes)
      ->check(CLI::Range(size_t{1}, taskrt::internal::kMaxOutputBytesLimit));
  CLI11_PARSE(app, argc, argv);
  return taskrt::worker::RunWorker(options);
}
