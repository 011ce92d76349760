#include "worker/plugin_async.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "asio/post.hpp"
#include "asio/steady_timer.hpp"

namespace taskrt::worker {
namespace {

class PluginAsyncTask : public AsyncTask, public std::enable_shared_from_this<PluginAsyncTask> {
 public:
  PluginAsyncTask(asio::io_context& loop, std::shared_ptr<AsyncCall> call)
      : loop_(loop), call_(std::move(call)) {}

  const std::string& task_id() const override { return call_->task_id(); }
  const std::string& input() const override { return call_->input(); }
  int64_t deadline_unix_us() const override { return call_->deadline_unix_us(); }
  bool cancelled() const override { return call_->cancelled(); }

  void OnCancel(std::function<void()> fn) override {
    asio::post(loop_, [self = shared_from_this(), fn = std::move(fn)]() mutable {
      if (self->call_->finished()) return;
      if (self->call_->cancelled()) return self->Guarded(fn);
      self->call_->set_on_cancel([self, fn = std::move(fn)] { self->Guarded(fn); });
    });
  }

  void After(absl::Duration delay, std::function<void()> fn) override {
    const auto wait =
        std::chrono::microseconds(std::max<int64_t>(0, absl::ToInt64Microseconds(delay)));
    asio::post(loop_, [self = shared_from_this(), wait, fn = std::move(fn)]() mutable {
      if (self->call_->finished()) return;
      auto timer = std::make_shared<asio::steady_timer>(self->loop_, wait);
      self->timers_.push_back(timer);
      timer->async_wait([self, timer, fn = std::move(fn)](const std::error_code& ec) {
        std::erase(self->timers_, timer);
        if (ec || self->call_->finished()) return;
        self->Guarded(fn);
      });
    });
  }

  void Finish(absl::StatusOr<std::string> output) override {
    asio::post(loop_, [self = shared_from_this(), output = std::move(output)]() mutable {
      self->FinishOnLoop(std::move(output));
    });
  }

  void Log(std::string_view line) override {
    std::fprintf(stderr, "taskrt-worker[%d] task %s: %.*s\n", ::getpid(), task_id().c_str(),
                 static_cast<int>(line.size()), line.data());
  }

  // Loop thread only.
  void FinishOnLoop(absl::StatusOr<std::string> output) {
    if (call_->finished()) return;
    // Pending timers would keep this task alive until they expire: they will not run.
    for (auto& timer : std::exchange(timers_, {})) timer->cancel();
    call_->Finish({std::move(output)});
  }

  // Runs a plugin callback on the loop thread; an exception fails the task instead of
  // escaping into the worker's loop (which would end the worker and all its tasks).
  void Guarded(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      FinishOnLoop(absl::InternalError(absl::StrCat("handler threw: ", e.what())));
    } catch (...) {
      FinishOnLoop(absl::InternalError("handler threw a non-standard exception"));
    }
  }

 private:
  asio::io_context& loop_;
  const std::shared_ptr<AsyncCall> call_;
  std::vector<std::shared_ptr<asio::steady_timer>> timers_;  // loop thread only
};

}  // namespace

LoopHandlerFn AdaptPluginAsync(AsyncHandlerFn fn) {
  return [fn = std::move(fn)](asio::io_context& loop, std::shared_ptr<AsyncCall> call) {
    auto task = std::make_shared<PluginAsyncTask>(loop, call);
    task->Guarded([&fn, task] { fn(task); });
  };
}

}  // namespace taskrt::worker
