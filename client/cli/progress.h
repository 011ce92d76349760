// The progress bar of a batch wait (`submit --json-lines ... --wait`, `exec --jobs-file
// ... --wait`): on stderr, only when stderr is a terminal, e.g.
//   [##########..........]  4512/10000  45%  1523/s  ETA 4s
// redrawn at most every 100 ms and erased when the wait ends.
//
// How it counts: the ids are cut into about 200 chunks in submission order, and 4
// threads wait for them (interleaved chunks, one Wait call each); a chunk counts as
// done when all its tasks are final. The count is therefore a lower bound that a slow
// task can hold back by one chunk per thread, and never runs ahead of the truth. The
// caller's own wait (WaitAll of every id) still decides the result.
#ifndef TASKRT_CLIENT_CLI_PROGRESS_H_
#define TASKRT_CLIENT_CLI_PROGRESS_H_

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "taskrt/client.h"

namespace taskrt::cli {

class BatchProgress {
 public:
  // Starts counting and drawing when `enabled` (the caller checks for a terminal).
  BatchProgress(Client& client, const std::vector<std::string>& ids, bool enabled);
  // Stops the threads and erases the bar.
  ~BatchProgress();
  BatchProgress(const BatchProgress&) = delete;
  BatchProgress& operator=(const BatchProgress&) = delete;

  // The bar's text for `done` of `total` after `elapsed`, `width` columns wide.
  static std::string Render(size_t done, size_t total, absl::Duration elapsed, int width);

 private:
  void WaitChunks(size_t first);
  void Draw();

  Client& client_;
  std::vector<std::vector<std::string>> chunks_;
  const size_t total_;
  const absl::Time start_ = absl::Now();
  std::atomic<size_t> done_{0};
  std::mutex mu_;
  std::condition_variable changed_;
  bool stopping_ = false;  // guarded by mu_
  std::vector<std::thread> waiters_;
  std::thread drawer_;
};

// Whether stderr is a terminal (and TERM is not "dumb").
bool StderrIsTerminal();

}  // namespace taskrt::cli

#endif  // TASKRT_CLIENT_CLI_PROGRESS_H_
