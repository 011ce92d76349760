#include "daemon/process_worker_pool.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "asio/post.hpp"
#include "asio/steady_timer.hpp"
#include "asio/write.hpp"
#include "common/util.h"
#include "daemon/worker_process.h"

namespace taskrt::daemon {

ProcessWorkerPool::ProcessWorkerPool(ProcessWorkerPoolOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : SystemClock()) {
  for (int p = 0; p < kPoolKinds; ++p) {
    for (int slot = 0; slot < options_.workers[p]; ++slot) {
      auto proc = std::make_unique<Process>(io_);
      proc->view.pool = static_cast<PoolKind>(p);
      proc->view.slot = slot;
      procs_.push_back(std::move(proc));
    }
  }
}

ProcessWorkerPool::~ProcessWorkerPool() { Stop(); }

void ProcessWorkerPool::Start(WorkerPoolObserver* observer) {
  observer_ = observer;
  for (int id = 0; id < size(); ++id) asio::post(io_, [this, id] { SpawnOnLoop(id); });
  loop_thread_ = std::thread([this] { io_.run(); });
}

void ProcessWorkerPool::Stop() {
  if (observer_ == nullptr) return;  // never started, or stopped
  io_.stop();
  if (loop_thread_.joinable()) loop_thread_.join();
  observer_->InOperation([this] {
    stopping_ = true;
    for (auto& p : procs_) {
      if (p->view.pid > 0 && p->view.phase != WorkerPhase::kDead) {
        ::kill(p->view.pid, SIGKILL);
        ::waitpid(p->view.pid, nullptr, 0);
        p->view.phase = WorkerPhase::kDead;
      }
      std::error_code ignored;
      p->socket.close(ignored);
    }
  });
  observer_ = nullptr;
}

void ProcessWorkerPool::SpawnOnLoop(int id) {
  observer_->InOperation([this, id] { Spawn(id); });
}

void ProcessWorkerPool::Spawn(int id) {
  Process& p = *procs_[id];
  const PoolKind pool = p.view.pool;
  if (stopping_ || (IsPythonPool(pool) && python_off_)) return;
  WorkerLaunch launch;
  launch.pool = IsCpuPool(pool) ? "cpu" : "io";
  launch.threads = options_.threads[static_cast<int>(pool)];
  if (IsPythonPool(pool)) {
    launch.python = options_.python;
    launch.python_path = options_.python_path;
    launch.python_modules = options_.python_modules;
  } else {
    launch.worker_path = options_.worker_path;
    launch.plugins = options_.plugins;
  }
  if (IsCpuPool(pool)) launch.memory_limit_bytes = options_.cpu_memory_limit_bytes;
  launch.max_output_bytes = options_.max_output_bytes;
  auto spawned = SpawnWorker(launch);
  if (!spawned.ok()) return observer_->OnSpawnFailed(id, pool, spawned.status());
  WorkerSlot& v = p.view;
  v.pid = spawned->pid;
  v.phase = WorkerPhase::kStarting;
  v.killed = v.retiring = false;
  v.tasks_run = 0;
  v.started_us = clock_->NowUnixMicros();
  p.kill_exit = WorkerExit::kKilled;
  p.kill_reason.clear();
  p.decoder = internal::FrameDecoder(internal::FrameLimitFor(options_.max_output_bytes));
  p.outbox.clear();
  p.inflight.clear();
  p.writing = false;
  std::error_code ec;
  p.socket.assign(asio::local::stream_protocol(), spawned->fd, ec);
  if (ec) std::fprintf(stderr, "taskrtd: cannot watch worker socket: %s\n", ec.message().c_str());
  ReadOnLoop(id);
}

void ProcessWorkerPool::ReadOnLoop(int id) {
  Process& p = *procs_[id];
  const pid_t pid = p.view.pid;
  p.socket.async_read_some(
      asio::buffer(p.buf), [this, id, pid](const std::error_code& ec, size_t n) {
        observer_->InOperation([&] { ec ? OnGone(id, pid) : OnReadable(id, pid, n); });
      });
}

void ProcessWorkerPool::OnReadable(int id, pid_t pid, size_t n) {
  Process& p = *procs_[id];
  if (p.view.pid != pid) return;
  p.decoder.Append(std::string_view(p.buf.data(), n));
  v1::internal::WorkerFrame frame;
  while (true) {
    auto next = p.decoder.Next(&frame);
    if (!next.ok()) {
      std::fprintf(stderr, "taskrtd: worker pid %d sent a corrupt stream: %s\n", pid,
                   std::string(next.status().message()).c_str());
      Kill(id, WorkerExit::kCorrupt,
           absl::StrCat("sent a corrupt stream (", next.status().message(), ") and was killed"));
      break;
    }
    if (!*next) break;
    if (frame.has_hello() && observer_->OnHello(id, frame.hello())) {
      p.view.phase = WorkerPhase::kReady;
    }
    if (frame.has_output()) {
      auto it = p.view.runs.find(frame.output().seq());
      if (it != p.view.runs.end()) observer_->OnOutput(id, it->second, frame.output());
    }
    if (frame.has_done()) {
      const v1::internal::TaskDone& done = frame.done();
      auto it = p.view.runs.find(done.seq());
      if (it == p.view.runs.end()) continue;
      const RunSlot run = it->second;
      p.view.runs.erase(it);
      (run.async ? p.view.async_running : p.view.sync_running)--;
      if (!run.short_task) --p.view.long_running;
      ++p.view.tasks_run;
      ++counters_[static_cast<int>(p.view.pool)].completed;
      observer_->OnDone(id, run, done);
      MaybeRecycle(id, done);
    }
  }
  ReadOnLoop(id);
}

void ProcessWorkerPool::OnGone(int id, pid_t pid) {
  Process& p = *procs_[id];
  WorkerSlot& v = p.view;
  if (v.pid != pid || v.phase == WorkerPhase::kDead || stopping_) return;
  int status = 0;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) {  // closed its socket but lives on: it is of no use any more
    ::kill(pid, SIGKILL);
    r = ::waitpid(pid, &status, 0);
  }
  WorkerLoss loss;
  loss.signal = (r > 0 && WIFSIGNALED(status)) ? WTERMSIG(status) : 0;
  loss.exit_code = (r > 0 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  loss.before_hello = v.phase == WorkerPhase::kStarting;
  loss.exit = v.killed ? p.kill_exit : WorkerExit::kCrashed;
  loss.how = !p.kill_reason.empty() ? p.kill_reason
             : loss.signal != 0 ? absl::StrCat("was killed by ", internal::SignalName(loss.signal))
                                : absl::StrCat("exited with status ", loss.exit_code);
  // A worker that keeps dying right after it starts (bad plugin, broken binary, no
  // memory) is respawned with a growing delay instead of in a tight loop.
  const bool quick = clock_->NowUnixMicros() - v.started_us < 1'000'000;
  p.quick_deaths = (quick && !v.killed) || loss.before_hello ? p.quick_deaths + 1 : 0;
  const int64_t delay_ms =
      p.quick_deaths == 0 ? 0 : std::min<int64_t>(30'000, 250ll << std::min(p.quick_deaths, 7));
  if (!v.killed) {
    std::fprintf(stderr, "taskrtd: %s worker pid %d %s; respawning%s\n", PoolName(v.pool), pid,
                 loss.how.c_str(),
                 delay_ms == 0 ? ""
                               : absl::StrCat(" in ", delay_ms, " ms (", p.quick_deaths,
                                              " quick deaths in a row)")
                                     .c_str());
  }
  PoolCounters& c = counters_[static_cast<int>(v.pool)];
  ++(loss.exit == WorkerExit::kRecycled ? c.recycled : c.respawns);
  const WorkerSlot was = v;
  std::vector<RunSlot> runs;
  for (const auto& [run_id, run] : v.runs) runs.push_back(run);
  v.runs.clear();
  v.sync_running = v.async_running = v.long_running = 0;
  v.phase = WorkerPhase::kDead;
  v.pid = -1;
  std::error_code ignored;
  p.socket.close(ignored);
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(delay_ms));
  timer->async_wait([this, timer, id](const std::error_code&) { SpawnOnLoop(id); });
  observer_->OnLost(id, was, loss, runs);
}

void ProcessWorkerPool::AddRun(int id, const RunSlot& run) {
  WorkerSlot& v = procs_[id]->view;
  v.runs.emplace(run.run_id, run);
  (run.async ? v.async_running : v.sync_running)++;
  if (!run.short_task) ++v.long_running;
}

void ProcessWorkerPool::MarkCancelled(int id, uint64_t run_id, int64_t now_us) {
  auto& runs = procs_[id]->view.runs;
  if (auto it = runs.find(run_id); it != runs.end() && it->second.cancelled_us == 0) {
    it->second.cancelled_us = now_us;
  }
}

void ProcessWorkerPool::Send(int id, pid_t pid, std::string_view frames) {
  Process& p = *procs_[id];
  if (p.view.pid != pid) return;  // replaced meanwhile: its runs were reported lost
  p.outbox.append(frames);
  StartWrite(id);
}

void ProcessWorkerPool::StartWrite(int id) {
  Process& p = *procs_[id];
  if (p.writing || p.outbox.empty() || p.view.phase == WorkerPhase::kDead) return;
  const ssize_t n = ::send(p.socket.native_handle(), p.outbox.data(), p.outbox.size(),
                           MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n == static_cast<ssize_t>(p.outbox.size())) {
    p.outbox.clear();
    return;
  }
  if (n > 0) {
    p.outbox.erase(0, static_cast<size_t>(n));
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    return;  // a broken socket is handled by the reader, which sees EOF
  }
  p.writing = true;
  asio::post(io_, [this, id, pid = p.view.pid] {
    observer_->InOperation([&] {
      Process& q = *procs_[id];
      if (q.view.pid != pid) return;  // a replaced worker
      q.inflight.swap(q.outbox);
      asio::async_write(q.socket, asio::buffer(q.inflight),
                        [this, id, pid](const std::error_code& ec, size_t) {
                          observer_->InOperation([&] {
                            Process& r = *procs_[id];
                            if (r.view.pid != pid) return;
                            r.writing = false;
                            r.inflight.clear();
                            if (!ec) StartWrite(id);
                          });
                        });
    });
  });
}

void ProcessWorkerPool::Kill(int id, WorkerExit why, std::string reason) {
  Process& p = *procs_[id];
  if (p.view.pid <= 0 || p.view.killed) return;
  p.view.killed = true;
  p.kill_exit = why;
  p.kill_reason = std::move(reason);
  ::kill(p.view.pid, SIGKILL);
}

void ProcessWorkerPool::Terminate(int id, WorkerExit why) {
  Process& p = *procs_[id];
  if (p.view.pid <= 0 || p.view.killed) return;
  p.view.killed = true;
  p.kill_exit = why;
  const pid_t pid = p.view.pid;
  ::kill(pid, SIGTERM);
  auto timer =
      std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(options_.kill_grace_ms));
  timer->async_wait([this, id, pid, timer](const std::error_code& ec) {
    if (ec) return;
    observer_->InOperation([&] {
      if (procs_[id]->view.pid == pid) ::kill(pid, SIGKILL);  // still the same, unreaped worker
    });
  });
}

void ProcessWorkerPool::MaybeRecycle(int id, const v1::internal::TaskDone& done) {
  WorkerSlot& v = procs_[id]->view;
  if (!v.retiring) {
    // sys.exec reports its child's peak RSS, not the worker's: judge sync runs only.
    const bool rss = options_.worker_max_rss_kb > 0 && done.executor() != v1::EXECUTOR_ASYNC &&
                     done.peak_rss_kb() > options_.worker_max_rss_kb;
    const bool tasks = options_.worker_max_tasks > 0 && v.tasks_run >= options_.worker_max_tasks;
    if (!rss && !tasks) return;
    v.retiring = true;
    std::fprintf(
        stderr, "taskrtd: recycling %s worker pid %d: %s\n", PoolName(v.pool), v.pid,
        rss ? absl::StrCat("peak RSS ", done.peak_rss_kb(), " KiB is above --worker-max-rss ",
                           options_.worker_max_rss_kb, " KiB")
                  .c_str()
            : absl::StrCat("it ran ", v.tasks_run, " tasks (--worker-max-tasks)").c_str());
  }
  if (v.runs.empty()) Terminate(id, WorkerExit::kRecycled);
}

void ProcessWorkerPool::CheckStuck(int64_t now_us, int64_t grace_us) {
  for (int id = 0; id < size(); ++id) {
    const WorkerSlot& v = procs_[id]->view;
    if (IsCpuPool(v.pool) || v.killed || v.phase != WorkerPhase::kReady) continue;
    for (const auto& [run_id, run] : v.runs) {
      if (run.cancelled_us == 0 || now_us - run.cancelled_us < grace_us) continue;
      // A thread that ignores cancellation holds its slot for good: replace the worker.
      std::string reason =
          absl::StrCat("was recycled because a task kept running ",
                       (now_us - run.cancelled_us) / 1000, " ms after it was cancelled");
      std::fprintf(stderr, "taskrtd: io worker pid %d %s\n", v.pid, reason.c_str());
      Kill(id, WorkerExit::kStuck, std::move(reason));
      break;
    }
  }
}

void ProcessWorkerPool::DisablePython() {
  python_off_ = true;
  for (int id = 0; id < size(); ++id) {
    const WorkerSlot& v = procs_[id]->view;
    if (IsPythonPool(v.pool) && v.pid > 0) Kill(id, WorkerExit::kKilled);
  }
}

}  // namespace taskrt::daemon
