#include "daemon/dashboard.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace taskrt::daemon {
namespace {

constexpr char kJson[] = "application/json; charset=utf-8";
constexpr uint32_t kMaxListLimit = 5000;
// How often an open stream checks for a stopping server and writes a keep-alive.
constexpr auto kStreamPoll = std::chrono::milliseconds(200);
constexpr auto kKeepAlive = std::chrono::seconds(15);

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

void SetSecurityHeaders(httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  // Only the page's own files; no inline script; no framing.
  res.set_header("Content-Security-Policy",
                 "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'");
}

// {"error": message}, escaped as JSON (messages may quote caller input).
void Error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  google::protobuf::Struct body;
  (*body.mutable_fields())["error"].set_string_value(message);
  res.set_content(ToJson(body) + "\n", kJson);
}

// A task as the page shows it: everything but its input and output bytes.
v1::Task Light(v1::Task task) {
  task.clear_output();
  task.mutable_spec()->clear_input();
  return task;
}

// The queue between a Watch sink (task manager's lock) and the HTTP thread writing it.
struct EventQueue {
  std::mutex mu;
  std::condition_variable ready;
  std::deque<v1::TaskEvent> events;
  uint64_t dropped = 0;
  size_t limit = 0;
};

class Routes {
 public:
  explicit Routes(DashboardContext context) : ctx_(std::move(context)) {}

  void Install(httplib::Server& server) {
    for (size_t i = 0; i < kDashboardAssetCount; ++i) {
      const DashboardAsset& a = kDashboardAssets[i];
      server.Get(a.path, [&a](const httplib::Request&, httplib::Response& res) {
        SetSecurityHeaders(res);
        res.set_content(reinterpret_cast<const char*>(a.data), a.size, a.content_type);
      });
    }
    auto self = std::make_shared<Routes>(*this);
    server.Get("/api/stats", [self](const httplib::Request& q, httplib::Response& r) {
      self->Authed(q, r, [&](const Caller& c) { self->Stats(c, r); });
    });
    server.Get("/api/tasks", [self](const httplib::Request& q, httplib::Response& r) {
      self->Authed(q, r, [&](const Caller& c) { self->Tasks(c, q, r); });
    });
    server.Get("/api/task", [self](const httplib::Request& q, httplib::Response& r) {
      self->Authed(q, r, [&](const Caller& c) { self->Task(c, q, r); });
    });
    server.Get("/api/events", [self](const httplib::Request& q, httplib::Response& r) {
      self->Authed(q, r, [&](const Caller& c) { self->Events(c, r); });
    });
  }

 private:
  template <typename Fn>
  void Authed(const httplib::Request& req, httplib::Response& res, Fn fn) {
    SetSecurityHeaders(res);
    std::optional<Caller> caller = ctx_.authenticate(req);
    if (!caller.has_value()) {
      res.status = 401;
      res.set_header("WWW-Authenticate", "Bearer realm=\"taskrt\"");
      return Error(res, 401,
                   "this needs 'Authorization: Bearer TOKEN' with a token of taskrtd's token "
                   "file (open the dashboard with the URL `taskrt dashboard` prints)");
    }
    fn(*caller);
  }

  void Stats(const Caller& caller, httplib::Response& res) {
    res.set_content(ToJson(ctx_.manager->GetStats(caller)), kJson);
  }

  void Tasks(const Caller& caller, const httplib::Request& req, httplib::Response& res) {
    v1::ListRequest list;
    uint32_t limit = 500;
    if (req.has_param("limit") && (!absl::SimpleAtoi(req.get_param_value("limit"), &limit) ||
                                   limit == 0 || limit > kMaxListLimit)) {
      return Error(res, 400, absl::StrCat("limit: expected 1 to ", kMaxListLimit));
    }
    list.set_limit(limit);
    v1::ListResponse out;
    for (v1::Task& t : ctx_.manager->List(caller, list)) *out.add_tasks() = Light(std::move(t));
    res.set_content(ToJson(out), kJson);
  }

  void Task(const Caller& caller, const httplib::Request& req, httplib::Response& res) {
    google::protobuf::RepeatedPtrField<std::string> ids;
    *ids.Add() = req.get_param_value("id");
    if (ids[0].empty() || ids[0].size() > 200) return Error(res, 400, "id: expected a task id");
    auto tasks = ctx_.manager->Get(caller, ids);
    if (!tasks.ok() || tasks->empty()) return Error(res, 404, "no such task");
    res.set_content(ToJson(Light(std::move(tasks->front()))), kJson);
  }

  void Events(const Caller& caller, httplib::Response& res) {
    if (ctx_.open_streams->fetch_add(1) >= ctx_.max_streams) {
      ctx_.open_streams->fetch_sub(1);
      return Error(res, 503,
                   absl::StrCat(ctx_.max_streams,
                                " event streams are open, the limit: close a "
                                "dashboard and reload"));
    }
    auto queue = std::make_shared<EventQueue>();
    queue->limit = ctx_.backlog;
    auto handle = ctx_.manager->Watch(caller, {}, [queue](const v1::TaskEvent& e) {
      if (e.state() == v1::TASK_STATE_QUEUED) return;  // the page draws runs only
      std::lock_guard<std::mutex> lock(queue->mu);
      if (queue->events.size() >= queue->limit) {
        ++queue->dropped;
        return;
      }
      queue->events.push_back(e);
      queue->ready.notify_one();
    });
    if (!handle.ok()) {
      ctx_.open_streams->fetch_sub(1);
      return Error(res, 429, std::string(handle.status().message()));
    }
    res.set_header("X-Accel-Buffering", "no");
    const uint64_t watch = *handle;
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, queue](size_t, httplib::DataSink& sink) { return Pump(*queue, sink); },
        [ctx = ctx_, watch](bool) {
          ctx.manager->Unwatch(watch);
          ctx.open_streams->fetch_sub(1);
        });
  }

  // Writes what is queued (or a keep-alive); false ends the stream.
  bool Pump(EventQueue& queue, httplib::DataSink& sink) {
    auto last_write = std::chrono::steady_clock::now();
    std::string chunk = ": taskrt events\n\n";
    while (!ctx_.stopping->load()) {
      if (!chunk.empty()) {
        if (!sink.is_writable() || !sink.write(chunk.data(), chunk.size())) return false;
        last_write = std::chrono::steady_clock::now();
        chunk.clear();
      }
      std::deque<v1::TaskEvent> events;
      uint64_t dropped = 0;
      {
        std::unique_lock<std::mutex> lock(queue.mu);
        queue.ready.wait_for(lock, kStreamPoll,
                             [&queue] { return !queue.events.empty() || queue.dropped > 0; });
        events.swap(queue.events);
        dropped = std::exchange(queue.dropped, 0);
      }
      for (const v1::TaskEvent& e : events)
        absl::StrAppend(&chunk, "event: task\ndata: ", ToJson(e), "\n\n");
      if (dropped > 0) absl::StrAppend(&chunk, "event: dropped\ndata: ", dropped, "\n\n");
      if (chunk.empty() && std::chrono::steady_clock::now() - last_write > kKeepAlive) {
        chunk = ": keep-alive\n\n";
      }
    }
    sink.done();
    return true;
  }

  DashboardContext ctx_;
};

}  // namespace

void InstallDashboard(httplib::Server& server, DashboardContext context) {
  Routes(std::move(context)).Install(server);
}

}  // namespace taskrt::daemon
