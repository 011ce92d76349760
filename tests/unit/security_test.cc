// The client's trust rules (common/security.h): who may own a daemon's socket and its
// directory, token files, and which targets are loopback. The tests run as root, which
// can create files and sockets owned by anyone.
#include "common/security.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace taskrt::internal {
namespace {

constexpr uid_t kOtherUid = 65534;  // nobody

// A socket file at `path` (bound, then the descriptor closed: the file stays).
bool MakeSocketFile(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return bound;
}

class ClientSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to own files as another uid";
    char tmpl[] = "/tmp/taskrt-sec-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;  // mode 0700, owned by root
    socket_ = dir_ + "/taskrt.sock";
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // Rules as a user who is not root sees them.
  static SocketTrustRule AsUser(uid_t uid) {
    SocketTrustRule rule;
    rule.caller_uid = uid;
    return rule;
  }

  void WriteFile(const std::string& path, const std::string& text, mode_t mode) {
    std::ofstream(path) << text;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
  }

  std::string dir_;
  std::string socket_;
};

TEST_F(ClientSecurityTest, AcceptsOwnSocket) {
  ASSERT_TRUE(MakeSocketFile(socket_));
  EXPECT_TRUE(CheckSocketOwner(socket_).ok()) << CheckSocketOwner(socket_);
  // As a user: socket and directory are theirs.
  ASSERT_EQ(::chown(dir_.c_str(), 1000, 1000), 0);
  ASSERT_EQ(::lchown(socket_.c_str(), 1000, 1000), 0);
  EXPECT_TRUE(CheckSocketOwner(socket_, AsUser(1000)).ok());
}

TEST_F(ClientSecurityTest, AcceptsAMissingSocket) {
  EXPECT_TRUE(CheckSocketOwner(socket_).ok());
  EXPECT_TRUE(CheckSocketOwner("/nonexistent-taskrt-dir/taskrt.sock").ok());
}

TEST_F(ClientSecurityTest, RefusesSocketOwnedByAnotherUser) {
  ASSERT_TRUE(MakeSocketFile(socket_));
  ASSERT_EQ(::lchown(socket_.c_str(), kOtherUid, kOtherUid), 0);
  const absl::Status s = CheckSocketOwner(socket_);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_NE(s.message().find("refusing " + socket_), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("owned by uid 65534"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("not by you (uid 0) or root"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("impersonating taskrtd"), absl::string_view::npos) << s;
}

TEST_F(ClientSecurityTest, RefusesDirectoryOwnedByAnotherUser) {
  // /tmp/taskrt-1000 made by someone else before user 1000's daemon ran.
  ASSERT_TRUE(MakeSocketFile(socket_));
  ASSERT_EQ(::chown(dir_.c_str(), kOtherUid, kOtherUid), 0);
  ASSERT_EQ(::lchown(socket_.c_str(), 1000, 1000), 0);
  const absl::Status s = CheckSocketOwner(socket_, AsUser(1000));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_NE(s.message().find("its directory " + dir_ + " is owned by uid 65534"),
            absl::string_view::npos)
      << s;
  EXPECT_NE(s.message().find("Remove the directory " + dir_), absl::string_view::npos) << s;
}

TEST_F(ClientSecurityTest, RefusesWorldWritableDirectoryWithoutStickyBit) {
  ASSERT_TRUE(MakeSocketFile(socket_));
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  const absl::Status s = CheckSocketOwner(socket_);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_NE(s.message().find("writable by group or others (mode 0777)"), absl::string_view::npos)
      << s;
  EXPECT_NE(s.message().find("chmod go-w " + dir_), absl::string_view::npos) << s;
  // With the sticky bit (as /tmp) others cannot replace the socket.
  ASSERT_EQ(::chmod(dir_.c_str(), 01777), 0);
  EXPECT_TRUE(CheckSocketOwner(socket_).ok());
}

TEST_F(ClientSecurityTest, ChecksTheTargetOfASymbolicLink) {
  const std::string other = dir_ + "/other";
  ASSERT_EQ(::mkdir(other.c_str(), 0700), 0);
  ASSERT_TRUE(MakeSocketFile(other + "/real.sock"));
  ASSERT_EQ(::symlink((other + "/real.sock").c_str(), socket_.c_str()), 0);
  EXPECT_TRUE(CheckSocketOwner(socket_).ok());
  ASSERT_EQ(::lchown((other + "/real.sock").c_str(), kOtherUid, kOtherUid), 0);
  const absl::Status s = CheckSocketOwner(socket_);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_NE(s.message().find("real.sock"), absl::string_view::npos) << s;
}

TEST_F(ClientSecurityTest, SystemServiceSocketMayBelongToTheServiceUser) {
  // A stand-in for /run (root's, 0755) / taskrt (the service's dynamic user) / taskrt.sock.
  const std::string run = dir_ + "/run";
  const std::string service_dir = run + "/taskrt";
  const std::string sock = service_dir + "/taskrt.sock";
  ASSERT_EQ(::mkdir(run.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(service_dir.c_str(), 0750), 0);
  ASSERT_TRUE(MakeSocketFile(sock));
  ASSERT_EQ(::chown(service_dir.c_str(), 61184, 61184), 0);
  ASSERT_EQ(::lchown(sock.c_str(), 61184, 61184), 0);
  SocketTrustRule rule = AsUser(1000);
  EXPECT_EQ(CheckSocketOwner(sock, rule).code(), absl::StatusCode::kPermissionDenied);
  rule.system_socket_path = sock;
  EXPECT_TRUE(CheckSocketOwner(sock, rule).ok()) << CheckSocketOwner(sock, rule);
  // Not when others could have made the service's directory.
  ASSERT_EQ(::chmod(run.c_str(), 0777), 0);
  EXPECT_EQ(CheckSocketOwner(sock, rule).code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ClientSecurityTest, ReadsATokenFileTrimmed) {
  const std::string path = dir_ + "/token";
  WriteFile(path, "  0123abcd\n", 0600);
  absl::StatusOr<std::string> token = ReadTokenFile(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "0123abcd");
}

TEST_F(ClientSecurityTest, RefusesATokenFileOthersCanRead) {
  const std::string path = dir_ + "/token";
  WriteFile(path, "0123abcd\n", 0644);
  absl::StatusOr<std::string> token = ReadTokenFile(path);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(token.status().message().find("chmod 600 " + path), absl::string_view::npos)
      << token.status();
  EXPECT_EQ(token.status().message().find("0123abcd"), absl::string_view::npos);
}

TEST_F(ClientSecurityTest, RefusesMissingEmptyAndMalformedTokens) {
  EXPECT_FALSE(ReadTokenFile(dir_ + "/missing").ok());
  WriteFile(dir_ + "/empty", "\n", 0600);
  EXPECT_FALSE(ReadTokenFile(dir_ + "/empty").ok());
  WriteFile(dir_ + "/two", "abc def\n", 0600);
  EXPECT_FALSE(ReadTokenFile(dir_ + "/two").ok());
  EXPECT_FALSE(ValidateToken("a\nb", "$TASKRT_TOKEN").ok());
  EXPECT_TRUE(ValidateToken("0123abcdef", "$TASKRT_TOKEN").ok());
}

TEST(ClientSecurityTargetTest, FindsTheHostsOfATarget) {
  using V = std::vector<std::string>;
  EXPECT_EQ(TargetHosts("127.0.0.1:7070"), V({"127.0.0.1"}));
  EXPECT_EQ(TargetHosts("[::1]:7070"), V({"::1"}));
  EXPECT_EQ(TargetHosts("localhost:7070"), V({"localhost"}));
  EXPECT_EQ(TargetHosts("ipv4:127.0.0.1:1,10.0.0.2:2"), V({"127.0.0.1", "10.0.0.2"}));
  EXPECT_EQ(TargetHosts("ipv6:[::1]:1"), V({"::1"}));
  EXPECT_EQ(TargetHosts("dns:///example.com:443"), V({"example.com"}));
  EXPECT_EQ(TargetHosts("dns://8.8.8.8/example.com:443"), V({"example.com"}));
  EXPECT_EQ(TargetHosts("unix:/tmp/x.sock"), V());
  EXPECT_EQ(TargetHosts("xds:///svc"), V());
}

TEST(ClientSecurityTargetTest, NamesTheFirstHostThatIsNotLoopback) {
  EXPECT_EQ(FirstNonLoopbackHost("127.0.0.1:7070"), "");
  EXPECT_EQ(FirstNonLoopbackHost("127.8.9.10:7070"), "");
  EXPECT_EQ(FirstNonLoopbackHost("[::1]:7070"), "");
  EXPECT_EQ(FirstNonLoopbackHost("localhost:7070"), "");
  EXPECT_EQ(FirstNonLoopbackHost("ipv4:127.0.0.1:1,192.0.2.7:2"), "192.0.2.7");
  EXPECT_EQ(FirstNonLoopbackHost("example.com:443"), "example.com");
  EXPECT_EQ(FirstNonLoopbackHost("128.0.0.1:7070"), "128.0.0.1");
  EXPECT_EQ(FirstNonLoopbackHost("xds:///svc"), "xds:///svc");
}

}  // namespace
}  // namespace taskrt::internal
