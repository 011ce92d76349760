// The dashboard's routes on the HTTP endpoint (daemon/http_server.h):
//   /, /dashboard.js, /dashboard.css, /vendor/...  the page (embedded at build time from
//                         daemon/dashboard/; no token: they hold no data)
//   /api/stats            the caller's GetStats as JSON
//   /api/tasks?limit=N    the caller's most recent tasks (List), without outputs
//   /api/task?id=ID       one task of the caller, its decision and error
//   /api/events           the caller's task events (Watch) as server-sent events:
//                         "event: task" with a TaskEvent as JSON; "event: dropped" with
//                         how many events were skipped because the page read too slowly
// Every /api/ route needs the caller's bearer token and shows only what that caller may
// see (an admin sees every owner's tasks).
//
// Threading: each request runs on an HTTP thread. An event stream holds its thread
// while open; its Watch sink (called under the task manager's lock) only copies the
// event into a bounded queue (events past `backlog` are counted, not queued), and the
// HTTP thread turns them into JSON and writes them.
#ifndef TASKRT_DAEMON_DASHBOARD_H_
#define TASKRT_DAEMON_DASHBOARD_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <optional>

#include "daemon/access.h"
#include "daemon/task_manager.h"

namespace httplib {
class Server;
struct Request;
}  // namespace httplib

namespace taskrt::daemon {

struct DashboardContext {
  TaskManager* manager = nullptr;
  // The caller a request's token names (nullopt: answer 401).
  std::function<std::optional<Caller>(const httplib::Request&)> authenticate;
  const std::atomic<bool>* stopping = nullptr;  // set when the server stops: streams end
  std::atomic<int>* open_streams = nullptr;
  int max_streams = 4;
  size_t backlog = 20000;  // events queued per stream before they are dropped
};

void InstallDashboard(httplib::Server& server, DashboardContext context);

// One embedded file of daemon/dashboard/ (generated: dashboard_assets.cc).
struct DashboardAsset {
  const char* path;          // "/dashboard.js"
  const char* content_type;  // "text/javascript; charset=utf-8"
  const unsigned char* data;
  size_t size;
};
extern const DashboardAsset kDashboardAssets[];
extern const size_t kDashboardAssetCount;

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_DASHBOARD_H_
