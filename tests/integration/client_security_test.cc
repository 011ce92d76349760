// The SDK's credentials on the wire: the bearer token on every kind of call to a TCP
// target (unary, streaming, the completion-queue waits), never over a unix socket, never
// in clear text to a host that is not loopback; and the hint on UNAUTHENTICATED. Against
// a FakeTaskService that records the "authorization" metadata of each call.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "taskrt/client.h"
#include "taskrt/v1/service.grpc.pb.h"
#include "tests/integration/daemon_fixture.h"

namespace taskrt::testing {
namespace {

constexpr char kToken[] = "0123456789abcdef";

// Answers Get, Wait, Stream and GetStats; UNAUTHENTICATED for a call without the right
// token when `require_token`. Thread-safety: calls come on gRPC's threads; mu_ guards
// what they record.
class FakeTaskService final : public v1::TaskService::Service {
 public:
  explicit FakeTaskService(bool require_token) : require_token_(require_token) {}

  grpc::Status Get(grpc::ServerContext* ctx, const v1::GetRequest* request,
                   v1::GetResponse* response) override {
    if (grpc::Status s = Record("Get", ctx); !s.ok()) return s;
    for (const std::string& id : request->task_ids()) response->add_tasks()->set_id(id);
    return grpc::Status::OK;
  }
  grpc::Status Wait(grpc::ServerContext* ctx, const v1::WaitRequest* request,
                    v1::WaitResponse* response) override {
    if (grpc::Status s = Record("Wait", ctx); !s.ok()) return s;
    for (const std::string& id : request->task_ids()) {
      v1::Task* task = response->add_tasks();
      task->set_id(id);
      task->set_state(v1::TASK_STATE_SUCCEEDED);
    }
    return grpc::Status::OK;
  }
  grpc::Status Stream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::StreamResponse, v1::StreamRequest>* stream) override {
    if (grpc::Status s = Record("Stream", ctx); !s.ok()) return s;
    v1::StreamRequest request;
    while (stream->Read(&request)) {
      v1::StreamResponse response;
      v1::StreamResponse::Accepted* ack = response.add_accepted();
      ack->set_tag(request.tag());
      for (int i = 0; i < request.tasks_size(); ++i) {
        const std::string id = absl::StrCat("t", request.tag(), "-", i);
        ack->add_task_ids(id);
        v1::TaskResult* result = response.add_results();
        result->set_id(id);
        result->set_state(v1::TASK_STATE_SUCCEEDED);
      }
      if (!stream->Write(response)) break;
    }
    return grpc::Status::OK;
  }
  grpc::Status GetStats(grpc::ServerContext* ctx, const v1::GetStatsRequest*, v1::Stats*) override {
    return Record("GetStats", ctx);
  }

  // The "authorization" values each method got, "" for a call without one.
  std::multimap<std::string, std::string> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  grpc::Status Record(const std::string& method, grpc::ServerContext* ctx) {
    const auto& metadata = ctx->client_metadata();
    const auto found = metadata.find("authorization");
    const std::string value =
        found == metadata.end() ? "" : std::string(found->second.data(), found->second.size());
    {
      absl::MutexLock lock(&mu_);
      seen_.emplace(method, value);
    }
    if (require_token_ && value != absl::StrCat("Bearer ", kToken)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or wrong bearer token");
    }
    return grpc::Status::OK;
  }

  const bool require_token_;
  absl::Mutex mu_;
  std::multimap<std::string, std::string> seen_ ABSL_GUARDED_BY(mu_);
};

class ClientSecurityTest : public ::testing::Test {
 protected:
  // Serves the fake on 127.0.0.1 (an ephemeral port) and on a unix socket in a
  // temporary directory.
  void Serve(bool require_token) {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    service_ = std::make_unique<FakeTaskService>(require_token);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.AddListeningPort("unix:" + dir_ + "/fake.sock", grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void SetUp() override { Serve(/*require_token=*/true); }
  void TearDown() override {
    if (server_) server_->Shutdown();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  ClientOptions Tcp() const {
    ClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", port_);
    options.connect_timeout = absl::Seconds(5);
    options.reconnect_timeout = absl::ZeroDuration();
    return options;
  }

  std::string WriteToken(mode_t mode) {
    const std::string path = dir_ + "/token";
    std::ofstream(path) << kToken << "\n";
    ::chmod(path.c_str(), mode);
    return path;
  }

  std::string dir_;
  int port_ = 0;
  std::unique_ptr<FakeTaskService> service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(ClientSecurityTest, SendsTheTokenOnUnaryStreamAndAsyncCalls) {
  ClientOptions options = Tcp();
  options.token_file = WriteToken(0600);
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();

  auto task = (*client)->Get("a");
  ASSERT_TRUE(task.ok()) << task.status();
  auto results = (*client)->RunMany({MakeTask("sys.noop", ""), MakeTask("sys.noop", "")});
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(results->size(), 2u);
  auto waited = (*client)->WaitFuture("b", absl::Seconds(10)).get();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->id(), "b");

  const std::string bearer = absl::StrCat("Bearer ", kToken);
  const auto seen = service_->seen();
  for (const char* method : {"Get", "Stream", "Wait"}) {
    ASSERT_EQ(seen.count(method), 1u) << method;
    EXPECT_EQ(seen.find(method)->second, bearer) << method;
  }
}

TEST_F(ClientSecurityTest, TakesTheTokenFromTheEnvironment) {
  ::setenv("TASKRT_TOKEN", kToken, 1);
  auto client = Client::Connect(Tcp());
  ::unsetenv("TASKRT_TOKEN");
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->GetStats().ok());
}

TEST_F(ClientSecurityTest, UnauthenticatedSaysHowToPassTheToken) {
  auto client = Client::Connect(Tcp());  // still connects: the daemon decides
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Status s = (*client)->GetStats().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_NE(s.message().find("missing or wrong bearer token"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("--token-file"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("TASKRT_TOKEN"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("<state-dir>/token"), absl::string_view::npos) << s;
  EXPECT_EQ(service_->seen().find("GetStats")->second, "");

  ClientOptions wrong = Tcp();
  wrong.token = "feedface";
  auto refused = Client::Connect(wrong);
  ASSERT_TRUE(refused.ok()) << refused.status();
  const absl::Status r = (*refused)->Get("a").status();
  EXPECT_EQ(r.code(), absl::StatusCode::kUnauthenticated) << r;
  EXPECT_NE(r.message().find("refused the token from ClientOptions::token"),
            absl::string_view::npos)
      << r;
  EXPECT_EQ(r.message().find("feedface"), absl::string_view::npos) << r;
}

TEST_F(ClientSecurityTest, NeverSendsTheTokenOverAUnixSocket) {
  ClientOptions options;
  options.socket_path = dir_ + "/fake.sock";
  options.token = kToken;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_FALSE((*client)->GetStats().ok());  // the fake wants a token; the SDK sent none
  EXPECT_EQ(service_->seen().find("GetStats")->second, "");
}

TEST_F(ClientSecurityTest, RefusesToSendTheTokenInClearTextToAnotherHost) {
  ClientOptions options;
  options.target = "192.0.2.7:7070";  // TEST-NET-1: nothing answers there
  options.token = kToken;
  auto client = Client::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(client.status().message().find(
                "refusing to send the token in clear text to 192.0.2.7: use TLS (--tls-ca"),
            absl::string_view::npos)
      << client.status();
}

TEST_F(ClientSecurityTest, RefusesASharedTokenFile) {
  ClientOptions options = Tcp();
  options.token_file = WriteToken(0644);
  auto client = Client::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.status().message().find("chmod 600"), absl::string_view::npos)
      << client.status();
}

TEST_F(ClientSecurityTest, RefusesASocketInADirectoryOthersCanWrite) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  ClientOptions options;
  options.target = absl::StrCat("unix:", dir_, "/fake.sock");
  auto client = Client::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kPermissionDenied) << client.status();
}

TEST_F(ClientSecurityTest, TlsClientCertificateNeedsItsKey) {
  ClientOptions options = Tcp();
  options.tls_cert_file = WriteToken(0600);  // any file: refused before it is read
  auto client = Client::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.status().message().find("--tls-key"), absl::string_view::npos)
      << client.status();
}

// A self-signed certificate for the name "taskrt-test", made with the openssl tool.
bool MakeCertificate(const std::string& cert, const std::string& key) {
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=taskrt-test "
      "-addext subjectAltName=DNS:taskrt-test -keyout ",
      key, " -out ", cert, " >/dev/null 2>&1");
  return std::system(command.c_str()) == 0;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_F(ClientSecurityTest, SendsTheTokenOverTls) {
  const std::string cert = dir_ + "/cert.pem";
  const std::string key = dir_ + "/key.pem";
  if (!MakeCertificate(cert, key)) GTEST_SKIP() << "no openssl tool to make a certificate";
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({ReadAll(key), ReadAll(cert)});
  FakeTaskService tls_service(/*require_token=*/true);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&tls_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", port);
  options.connect_timeout = absl::Seconds(2);
  options.token = kToken;
  options.tls_ca_file = cert;
  // The certificate names taskrt-test, not 127.0.0.1: refused without the override.
  auto mismatch = Client::Connect(options);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(mismatch.status().message().find("--tls-server-name"), absl::string_view::npos)
      << mismatch.status();

  options.tls_server_name = "taskrt-test";
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->Get("a").ok());
  EXPECT_EQ(tls_service.seen().find("Get")->second, absl::StrCat("Bearer ", kToken));
  client->reset();
  server->Shutdown();
}

}  // namespace
}  // namespace taskrt::testing
