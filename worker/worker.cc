#include "worker/worker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "asio/io_context.hpp"
#include "asio/local/stream_protocol.hpp"
#include "asio/post.hpp"
#include "asio/steady_timer.hpp"
#include "asio/thread_pool.hpp"
#include "asio/write.hpp"
#include "common/frame.h"
#include "common/util.h"
#include "worker/registry.h"

namespace taskrt::worker {
namespace {

using v1::internal::WorkerFrame;

int64_t ThreadCpuMicros() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1'000'000LL + ts.tv_nsec / 1000;
}

int64_t PeakRssKb() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Context of a synchronous task. cancelled() is read by the handler's thread and set
// by the loop thread, hence atomic.
class SyncContext : public TaskContext {
 public:
  SyncContext(std::string id, int64_t deadline) : id_(std::move(id)), deadline_(deadline) {}
  const std::string& task_id() const override { return id_; }
  bool cancelled() const override {
    return cancelled_.load(std::memory_order_relaxed) ||
           (deadline_ > 0 && internal::NowUnixMicros() >= deadline_);
  }
  int64_t deadline_unix_us() const override { return deadline_; }
  void Log(std::string_view line) override {
    std::fprintf(stderr, "taskrt-worker[%d] task %s: %.*s\n", ::getpid(), id_.c_str(),
                 static_cast<int>(line.size()), line.data());
  }
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }

 private:
  const std::string id_;
  const int64_t deadline_;
  std::atomic<bool> cancelled_{false};
};

v1::FailureKind KindOf(const absl::Status& status) {
  if (absl::IsInvalidArgument(status)) return v1::FAILURE_KIND_INVALID_INPUT;
  if (absl::IsCancelled(status)) return v1::FAILURE_KIND_CANCELLED;
  if (absl::IsResourceExhausted(status)) return v1::FAILURE_KIND_MEMORY_LIMIT;
  return v1::FAILURE_KIND_HANDLER_ERROR;
}

// The worker's event loop and everything it owns. All members are touched on the loop
// thread only, except `pool_`, whose threads post results back to the loop.
class Worker {
 public:
  Worker(const WorkerOptions& options, Registry& registry)
      : options_(options),
        registry_(registry),
        is_cpu_(options.pool == "cpu"),
        max_output_bytes_(std::min(options.max_output_bytes, internal::kMaxOutputBytesLimit)),
        socket_(loop_),
        pool_(is_cpu_ ? 1 : std::max(1, options.threads)) {}

  int Run() {
    socket_.assign(asio::local::stream_protocol(), options_.fd);
    ReadMore();
    loop_.run();
    return 0;
  }

 private:
  struct Running {
    std::shared_ptr<SyncContext> sync;
    std::shared_ptr<AsyncCall> async;
    std::unique_ptr<asio::steady_timer> deadline;
  };

  void ReadMore() {
    socket_.async_read_some(asio::buffer(read_buf_), [this](const std::error_code& ec, size_t n) {
      if (ec) {
        // The daemon closed our socket (or died): nothing left to serve.
        std::fflush(stderr);
        std::_Exit(0);
      }
      decoder_.Append(std::string_view(read_buf_.data(), n));
      WorkerFrame frame;
      while (true) {
        auto next = decoder_.Next(&frame);
        if (!next.ok()) {
          std::fprintf(stderr, "taskrt-worker[%d]: %s\n", ::getpid(),
                       std::string(next.status().message()).c_str());
          std::_Exit(2);
        }
        if (!*next) break;
        Handle(frame);
      }
      ReadMore();
    });
  }

  void Handle(WorkerFrame& frame) {
    if (frame.has_run()) {
      Start(std::move(*frame.mutable_run()));
    } else if (frame.has_cancel()) {
      auto it = running_.find(frame.cancel().seq());
      if (it == running_.end()) return;
      if (it->second.sync) it->second.sync->Cancel();
      if (it->second.async) it->second.async->Cancel();
    }
  }

  void Start(v1::internal::RunTask run) {
    const uint64_t seq = run.seq();
    const HandlerEntry* entry = registry_.Find(run.handler());
    const int64_t started = internal::NowUnixMicros();
    if (entry == nullptr) {
      v1::internal::TaskDone done;
      done.set_seq(seq);
      done.set_failure(v1::FAILURE_KIND_INVALID_INPUT);
      done.set_error(
          absl::StrCat("handler '", run.handler(), "' is not registered in this worker"));
      done.set_started_unix_us(started);
      done.set_finished_unix_us(started);
      return Send(std::move(done));
    }
    Running& slot = running_[seq];
    if (run.deadline_unix_us() > 0 && entry->async) {
      slot.deadline = std::make_unique<asio::steady_timer>(loop_);
      slot.deadline->expires_after(
          std::chrono::microseconds(std::max<int64_t>(0, run.deadline_unix_us() - started)));
      slot.deadline->async_wait([this, seq](const std::error_code& ec) {
        if (ec) return;
        auto it = running_.find(seq);
        if (it != running_.end() && it->second.async) it->second.async->Cancel();
      });
    }
    const v1::Executor executor =
        is_cpu_ ? v1::EXECUTOR_PROCESS : (entry->async ? v1::EXECUTOR_ASYNC : v1::EXECUTOR_THREAD);
    if (entry->async) {
      auto call = std::make_shared<AsyncCall>(
          run.task_id(), std::move(*run.mutable_input()), run.deadline_unix_us(),
          [this, seq, started, executor](AsyncResult result) {
            v1::internal::TaskDone done;
            done.set_seq(seq);
            done.set_executor(executor);
            done.set_started_unix_us(started);
            done.set_finished_unix_us(internal::NowUnixMicros());
            done.set_cpu_time_us(result.cpu_time_us);
            done.set_peak_rss_kb(result.peak_rss_kb > 0 ? result.peak_rss_kb : PeakRssKb());
            if (result.exit_code.has_value() && result.output.ok()) {
              done.set_exit_code(*result.exit_code);
              done.set_exit_signal(result.exit_signal);
            }
            Fill(std::move(result.output), &done);
            // Defer: Finish may run inside the handler's own call stack.
            asio::post(loop_, [this, done = std::move(done)]() mutable { Send(std::move(done)); });
          });
      call->set_on_output([this, seq](bool is_stderr, std::string_view data) {
        WorkerFrame frame;
        v1::internal::TaskOutput* out = frame.mutable_output();
        out->set_seq(seq);
        out->set_is_stderr(is_stderr);
        out->set_data(std::string(data));
        internal::AppendFrame(frame, &outbox_);
        Flush();
      });
      slot.async = call;
      try {
        entry->async(loop_, call);
      } catch (const std::exception& e) {
        call->Finish({absl::InternalError(absl::StrCat("handler threw: ", e.what()))});
      }
      return;
    }
    auto ctx = std::make_shared<SyncContext>(run.task_id(), run.deadline_unix_us());
    slot.sync = ctx;
    asio::post(pool_, [this, entry, ctx, seq, executor, input = std::move(*run.mutable_input())] {
      v1::internal::TaskDone done;
      done.set_seq(seq);
      done.set_executor(executor);
      const int64_t cpu0 = ThreadCpuMicros();
      done.set_started_unix_us(internal::NowUnixMicros());
      absl::StatusOr<std::string> output;
      try {
        // A cpu worker may hold a short task behind the one it runs: one cancelled
        // meanwhile is not started at all.
        output = ctx->cancelled() ? absl::CancelledError("cancelled before it started")
                                  : entry->sync(*ctx, input);
        // A result after cancellation or the deadline is dropped (taskrt/handler.h), so
        // that a late OK cannot make a timed-out task look succeeded.
        if (output.ok() && ctx->cancelled()) output = LateResultError();
      } catch (const std::bad_alloc&) {
        output = absl::ResourceExhaustedError(
            "the handler ran out of memory: it exceeded the worker's memory limit "
            "(taskrtd --cpu-memory-limit) or the machine's");
      } catch (const std::exception& e) {
        output = absl::InternalError(absl::StrCat("handler threw: ", e.what()));
      } catch (...) {
        output = absl::InternalError("handler threw a non-standard exception");
      }
      done.set_finished_unix_us(internal::NowUnixMicros());
      done.set_cpu_time_us(ThreadCpuMicros() - cpu0);
      done.set_peak_rss_kb(PeakRssKb());
      Fill(std::move(output), &done);
      asio::post(loop_, [this, done = std::move(done)]() mutable { Send(std::move(done)); });
    });
  }

  static void Fill(absl::StatusOr<std::string> output, v1::internal::TaskDone* done) {
    if (output.ok()) {
      done->set_ok(true);
      done->set_output(std::move(*output));
    } else {
      done->set_failure(KindOf(output.status()));
      // Capped and made valid UTF-8: an error can never make the frame too large or
      // unparsable (which would cost the daemon this worker and all its tasks).
      const absl::string_view message = output.status().message();
      done->set_error(internal::BoundedUtf8(std::string_view(message.data(), message.size()),
                                            internal::kMaxErrorBytes));
      done->set_retryable(absl::IsUnavailable(output.status()));
    }
  }

  // A result the daemon would refuse (output over --max-output-bytes, or a frame over
  // the daemon's limit) becomes a failure of its task alone, so that the daemon never
  // sees an over-size frame, and the worker and its other tasks go on.
  void EnforceOutputLimit(WorkerFrame* frame) const {
    v1::internal::TaskDone* done = frame->mutable_done();
    const size_t output = done->output().size();
    const size_t bytes = internal::FrameBytes(*frame);
    if (output <= max_output_bytes_ && bytes <= internal::FrameLimitFor(max_output_bytes_)) return;
    done->clear_output();
    done->set_ok(false);
    done->set_retryable(false);
    done->set_failure(v1::FAILURE_KIND_OUTPUT_TOO_LARGE);
    done->set_error(absl::StrCat("the output of ", output > max_output_bytes_ ? output : bytes,
                                 " bytes exceeds the limit of ", max_output_bytes_,
                                 " bytes (taskrtd --max-output-bytes)"));
  }

  // Loop thread only. Coalesces frames written while a write is in flight.
  void Send(v1::internal::TaskDone done) {
    running_.erase(done.seq());
    WorkerFrame frame;
    *frame.mutable_done() = std::move(done);
    EnforceOutputLimit(&frame);
    internal::AppendFrame(frame, &outbox_);
    Flush();
  }

  void Flush() {
    if (writing_ || outbox_.empty()) return;
    writing_ = true;
    inflight_.swap(outbox_);
    asio::async_write(socket_, asio::buffer(inflight_), [this](const std::error_code& ec, size_t) {
      writing_ = false;
      inflight_.clear();
      if (ec) std::_Exit(0);  // daemon gone
      Flush();
    });
  }

  const WorkerOptions options_;
  Registry& registry_;
  const bool is_cpu_;
  const size_t max_output_bytes_;
  asio::io_context loop_;
  asio::local::stream_protocol::socket socket_;
  asio::thread_pool pool_;
  std::array<char, 65536> read_buf_{};
  internal::FrameDecoder decoder_;
  std::unordered_map<uint64_t, Running> running_;
  std::string outbox_, inflight_;
  bool writing_ = false;
};

}  // namespace

int RunWorker(const WorkerOptions& options) {
  // Die with the daemon even if it is killed before it can close our socket.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) return 0;
  ::signal(SIGPIPE, SIG_IGN);
  if (options.memory_limit_bytes > 0) {
    const rlimit limit{options.memory_limit_bytes, options.memory_limit_bytes};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) {
      std::fprintf(stderr, "taskrt-worker: cannot set the memory limit: %s\n",
                   std::strerror(errno));
    }
  }
  ::fcntl(options.fd, F_SETFD, FD_CLOEXEC);  // children of sys.exec must not inherit it

  Registry registry;
  RegisterBuiltins(
      registry, BuiltinOptions{std::min(options.max_output_bytes, internal::kMaxOutputBytesLimit)});
  v1::internal::WorkerFrame hello_frame;
  auto* hello = hello_frame.mutable_hello();
  hello->set_pid(::getpid());
  for (const auto& path : options.plugins) {
    absl::Status status = registry.LoadPlugin(path);
    if (!status.ok()) {
      hello->set_error(std::string(status.message()));
      break;
    }
  }
  for (auto& info : registry.List()) *hello->add_handlers() = std::move(info);
  if (absl::Status s = internal::WriteFrame(options.fd, hello_frame); !s.ok()) {
    std::fprintf(stderr, "taskrt-worker: cannot greet the daemon: %s\n",
                 std::string(s.message()).c_str());
    return 1;
  }
  if (!hello->error().empty()) return 1;
  Worker worker(options, registry);
  return worker.Run();
}

}  // namespace taskrt::worker
