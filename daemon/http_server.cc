#include "daemon/http_server.h"

#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "daemon/dashboard.h"
#include "daemon/listener.h"

namespace taskrt::daemon {
namespace {

constexpr char kMetricsType[] = "text/plain; version=0.0.4; charset=utf-8";

absl::Status CheckReadable(const std::string& path, const char* option) {
  if (::access(path.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(option, " ", path, ": cannot read it (", std::strerror(errno), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckHttpAddress(const std::string& address, bool tls) {
  ASSIGN_OR_RETURN(const HostPort where, ParseHostPort(address, "--http"));
  if (!where.loopback && !tls) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http ", address,
        ": an address other than loopback needs TLS, or tokens and metrics would cross the "
        "network in clear text: pass --tls-cert and --tls-key"));
  }
  return absl::OkStatus();
}

HttpServer::HttpServer(const HttpOptions& options, Sources sources)
    : options_(options), sources_(sources) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpOptions& options,
                                                              Sources sources) {
  const bool tls = !options.tls_cert_file.empty();
  RETURN_IF_ERROR(CheckHttpAddress(options.address, tls));
  ASSIGN_OR_RETURN(const HostPort where, ParseHostPort(options.address, "--http"));
  std::unique_ptr<HttpServer> s(new HttpServer(options, sources));
  if (tls) {
    RETURN_IF_ERROR(CheckReadable(options.tls_cert_file, "--tls-cert"));
    RETURN_IF_ERROR(CheckReadable(options.tls_key_file, "--tls-key"));
    auto ssl = std::make_unique<httplib::SSLServer>(options.tls_cert_file.c_str(),
                                                    options.tls_key_file.c_str());
    if (!ssl->is_valid()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--http ", options.address, ": the TLS certificate ", options.tls_cert_file, " or key ",
          options.tls_key_file, " does not load (PEM files, the key matching the certificate)"));
    }
    s->server_ = std::move(ssl);
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  const int threads = std::max(2, options.threads);
  s->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s->server_->set_read_timeout(10, 0);
  s->server_->set_write_timeout(10, 0);
  s->server_->set_keep_alive_max_count(100);
  s->server_->set_payload_max_length(64 * 1024);  // every endpoint is a GET
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second process
  // of the same uid could bind the same port and take half of the connections.
  s->server_->set_socket_options([](int fd) {
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  });
  s->Route();
  if (where.port == 0) {
    s->port_ = s->server_->bind_to_any_port(where.host);
  } else if (s->server_->bind_to_port(where.host, where.port)) {
    s->port_ = where.port;
  } else {
    s->port_ = -1;
  }
  if (s->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("--http ", options.address,
                     ": cannot listen there (in use, or not an address of this "
                     "machine)"));
  }
  const std::string host =
      absl::StrContains(where.host, ':') ? absl::StrCat("[", where.host, "]") : where.host;
  s->url_ = absl::StrCat(tls ? "https://" : "http://", host, ":", s->port_);
  s->thread_ = std::thread([server = s->server_.get()] { server->listen_after_bind(); });
  return s;
}

void HttpServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::optional<Caller> HttpServer::Authenticate(const httplib::Request& request) const {
  const std::string header = request.get_header_value("Authorization");
  absl::string_view value = header;
  if (!absl::ConsumePrefix(&value, "Bearer ") && !absl::ConsumePrefix(&value, "bearer ")) {
    return std::nullopt;
  }
  const std::optional<std::string> owner =
      sources_.tokens->Lookup(absl::StripAsciiWhitespace(value));
  if (!owner.has_value()) return std::nullopt;
  return sources_.policy->ForTokenOwner(*owner);
}

void HttpServer::Unauthorized(httplib::Response& response) {
  response.status = 401;
  response.set_header("WWW-Authenticate", "Bearer realm=\"taskrt\"");
  response.set_content(
      "taskrtd: this endpoint needs the header 'Authorization: Bearer TOKEN' with a token of "
      "taskrtd's token file (--token-file; by default <state-dir>/token, e.g. "
      "~/.local/state/taskrt/token)\n",
      "text/plain; charset=utf-8");
}

void HttpServer::Route() {
  server_->Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (!Authenticate(req).has_value()) return Unauthorized(res);
    // The daemon's own view (every owner's tasks): metrics carry no owner or task id.
    const v1::Stats stats = sources_.manager->GetStats(Caller::Daemon());
    res.set_content(sources_.metrics->Render(stats), kMetricsType);
  });
  DashboardContext dashboard;
  dashboard.manager = sources_.manager;
  dashboard.authenticate = [this](const httplib::Request& r) { return Authenticate(r); };
  dashboard.stopping = &stopping_;
  dashboard.open_streams = &event_streams_;
  dashboard.max_streams = options_.max_event_streams;
  InstallDashboard(*server_, std::move(dashboard));
  server_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    res.set_content(absl::StrCat("taskrtd: ", res.status == 404 ? "no such page" : "error",
                                 " (try /metrics, or / for the dashboard)\n"),
                    "text/plain; charset=utf-8");
  });
}

}  // namespace taskrt::daemon
