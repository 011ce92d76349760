// The daemon's HTTP endpoint (taskrtd --http HOST:PORT, off by default): /metrics in the
// Prometheus text format, and the dashboard (daemon/dashboard.h).
//
// Every data endpoint needs `Authorization: Bearer TOKEN`, a token of the daemon's
// token file, on loopback too, exactly like TCP gRPC: the caller is the token's owner
// and sees what that owner may see. An address other than loopback needs TLS (the
// daemon's --tls-cert/--tls-key). The dashboard's static files (its page, script and
// style, the same bytes as in the source tree) are served without a token: they hold
// no data, and a browser cannot send a header when it opens a page; the page then
// sends the token with every request (docs/SECURITY.md).
//
// Threading: cpp-httplib's own accept thread and a pool of `threads` threads serve the
// requests; each request handler reads the TaskManager through its public, locking
// methods. Stop (or the destructor) stops accepting, ends open event streams and joins.
#ifndef TASKRT_DAEMON_HTTP_SERVER_H_
#define TASKRT_DAEMON_HTTP_SERVER_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "daemon/access.h"
#include "daemon/metrics.h"
#include "daemon/task_manager.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace taskrt::daemon {

struct HttpOptions {
  std::string address;                      // HOST:PORT (port 0: any free one)
  std::string tls_cert_file, tls_key_file;  // both or neither
  int threads = 8;                          // requests served at once (event streams included)
  int max_event_streams = 4;                // open dashboard event streams at once
};

// OK when `address` (HOST:PORT) may be served: it parses, and it is loopback unless `tls`.
// INVALID_ARGUMENT, naming --http, otherwise.
absl::Status CheckHttpAddress(const std::string& address, bool tls);

class HttpServer {
 public:
  // What the endpoints read. Not owned; all must outlive the server.
  struct Sources {
    TaskManager* manager = nullptr;
    const TokenStore* tokens = nullptr;
    const AccessPolicy* policy = nullptr;
    const Metrics* metrics = nullptr;
  };
  // Binds and starts serving. INVALID_ARGUMENT for a bad address or a non-loopback one
  // without TLS; UNAVAILABLE when the address cannot be bound; FAILED_PRECONDITION when
  // the TLS files do not load.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpOptions& options,
                                                           Sources sources);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void Stop();
  int port() const { return port_; }
  // "http://127.0.0.1:PORT" (https with TLS).
  const std::string& url() const { return url_; }

  // The caller a request's bearer token names, or nullopt (no or unknown token).
  std::optional<Caller> Authenticate(const httplib::Request& request) const;
  // Sets a 401 that says how to authenticate.
  static void Unauthorized(httplib::Response& response);

 private:
  HttpServer(const HttpOptions& options, Sources sources);
  void Route();

  const HttpOptions options_;
  const Sources sources_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string url_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> event_streams_{0};
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_HTTP_SERVER_H_
