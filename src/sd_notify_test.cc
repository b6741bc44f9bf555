#include "src/sd_notify.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace l4lb {
namespace {

// A datagram socket bound where systemd would listen; receives what sd_notify sends.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& name) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.data(), name.size());
    if (name[0] == '@') addr.sun_path[0] = '\0';
    else unlink(name.c_str());
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr),
                  static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())) == 0;
    timeval tv{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setenv("NOTIFY_SOCKET", name.c_str(), 1);
  }
  ~NotifySocket() {
    close(fd_);
    unsetenv("NOTIFY_SOCKET");
  }
  bool bound() const { return bound_; }
  std::string receive() {
    char buf[256];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
};

TEST(SdNotify, NoSocketIsANoOp) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(sd_notify("READY=1"));
}

TEST(SdNotify, SendsToAPathSocket) {
  std::string path = "/tmp/l4lb-sd-notify-test-" + std::to_string(getpid());
  NotifySocket s(path);
  ASSERT_TRUE(s.bound());
  EXPECT_TRUE(sd_notify("READY=1"));
  EXPECT_EQ(s.receive(), "READY=1");
  EXPECT_TRUE(sd_notify("WATCHDOG=1"));
  EXPECT_EQ(s.receive(), "WATCHDOG=1");
  unlink(path.c_str());
}

TEST(SdNotify, SendsToAnAbstractSocket) {
  NotifySocket s("@l4lb-sd-notify-test-" + std::to_string(getpid()));
  ASSERT_TRUE(s.bound());
  EXPECT_TRUE(sd_notify("STATUS=forwarding"));
  EXPECT_EQ(s.receive(), "STATUS=forwarding");
}

TEST(SdNotify, RejectsARelativeName) {
  setenv("NOTIFY_SOCKET", "relative", 1);
  EXPECT_FALSE(sd_notify("READY=1"));
  unsetenv("NOTIFY_SOCKET");
}

TEST(SdNotify, WatchdogIntervalIsHalfOfWatchdogUsec) {
  unsetenv("WATCHDOG_PID");
  unsetenv("WATCHDOG_USEC");
  EXPECT_EQ(sd_watchdog_interval().count(), 0);
  setenv("WATCHDOG_USEC", "10000000", 1);
  EXPECT_EQ(sd_watchdog_interval().count(), 5000000);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_EQ(sd_watchdog_interval().count(), 5000000);
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  EXPECT_EQ(sd_watchdog_interval().count(), 0) << "the watchdog is meant for another process";
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  setenv("WATCHDOG_USEC", "soon", 1);
  EXPECT_EQ(sd_watchdog_interval().count(), 0);
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
}

}  // namespace
}  // namespace l4lb
