#include "src/health/checker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace l4lb::health {
namespace {

using namespace std::chrono_literals;
using config::HealthCheckType;

constexpr uint32_t kLoopback = 0x7f000001;  // 127.0.0.1

// Polls `pred` until it holds or `limit` passes; conditions, not fixed sleeps.
template <class Pred>
bool wait_for(Pred pred, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

// A loopback server: kTcp accepts and closes, kHttp answers `status` after `delay_ms`,
// kHang accepts and never answers. Counts connections and the peak of concurrent ones.
class TestServer {
 public:
  enum class Mode { kTcp, kHttp, kHang };

  explicit TestServer(Mode mode, uint32_t ip = kLoopback) : mode_(mode), ip_(ip) {
    EXPECT_TRUE(listen(0));
  }
  ~TestServer() {
    close_listener();
    stop_all_ = true;
    std::vector<std::thread> handlers;
    {
      std::lock_guard lock(mu_);  // handlers take it too: join outside
      handlers.swap(handlers_);
    }
    for (auto& t : handlers) t.join();
  }

  // (Re)opens the listener; port 0 picks one, later calls reuse it.
  bool listen(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(ip_);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 128) != 0) {
      close(fd_);
      fd_ = -1;
      return false;
    }
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    stop_accept_ = false;
    accept_thread_ = std::thread([this] { accept_loop(); });
    return true;
  }
  bool reopen() { return listen(port_); }

  // Closes the listening socket: new connections are refused.
  void close_listener() {
    if (fd_ < 0) return;
    stop_accept_ = true;
    accept_thread_.join();
    close(fd_);
    fd_ = -1;
  }

  uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }
  int current() const { return current_; }
  int peak() const { return peak_; }
  uint32_t last_peer() const { return last_peer_; }
  std::vector<std::string> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  std::atomic<int> status{200};
  std::atomic<int> delay_ms{0};

 private:
  void accept_loop() {
    while (!stop_accept_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 5) <= 0) continue;
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      const int c = accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
      if (c < 0) continue;
      last_peer_ = ntohl(peer.sin_addr.s_addr);
      ++accepted_;
      if (mode_ == Mode::kTcp) {
        close(c);
        continue;
      }
      std::lock_guard lock(mu_);
      handlers_.emplace_back([this, c] { handle(c); });
    }
  }

  void handle(int c) {
    const int now = ++current_;
    int prev = peak_;
    while (now > prev && !peak_.compare_exchange_weak(prev, now)) {
    }
    std::string req;
    char buf[512];
    while (req.find("\r\n\r\n") == std::string::npos && !stop_all_) {
      pollfd p{c, POLLIN, 0};
      if (poll(&p, 1, 5) <= 0) continue;
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    {
      std::lock_guard lock(mu_);
      requests_.push_back(req);
    }
    if (mode_ == Mode::kHang) {
      // Hold the connection until the prober gives up (EOF/RST) or the test ends.
      while (!stop_all_) {
        pollfd p{c, POLLIN, 0};
        if (poll(&p, 1, 5) > 0 && recv(c, buf, sizeof buf, 0) <= 0) break;
      }
      --current_;
      close(c);
      return;
    }
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    // Leave before answering, so the prober's in-flight window always covers ours.
    --current_;
    const std::string resp = "HTTP/1.1 " + std::to_string(status.load()) +
                             " Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
    close(c);
  }

  const Mode mode_;
  const uint32_t ip_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::atomic<bool> stop_accept_{false};
  std::atomic<bool> stop_all_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> current_{0};
  std::atomic<int> peak_{0};
  std::atomic<uint32_t> last_peer_{0};
  mutable std::mutex mu_;
  std::vector<std::thread> handlers_;
  std::vector<std::string> requests_;
};

// A port on 127.0.0.1 with nothing listening (bound once, then released): connects are refused.
uint16_t closed_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(kLoopback);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// Records transitions as the callback sees them.
struct Recorder {
  std::mutex mu;
  std::vector<std::pair<TargetKey, bool>> events;

  std::function<void(const TargetKey&, bool)> callback() {
    return [this](const TargetKey& k, bool h) {
      std::lock_guard lock(mu);
      events.emplace_back(k, h);
    };
  }
  std::vector<std::pair<TargetKey, bool>> get() {
    std::lock_guard lock(mu);
    return events;
  }
  size_t size() {
    std::lock_guard lock(mu);
    return events.size();
  }
};

config::HealthCheckConfig check(HealthCheckType type, uint32_t interval_ms = 50,
                                uint32_t timeout_ms = 40) {
  config::HealthCheckConfig c;
  c.type = type;
  c.interval_ms = interval_ms;
  c.timeout_ms = timeout_ms;
  c.healthy_threshold = 2;
  c.unhealthy_threshold = 3;
  return c;
}

Target target(uint16_t port, config::HealthCheckConfig c, uint32_t ip = kLoopback) {
  Target t;
  t.ip = ip;
  t.port = port;
  t.check = std::move(c);
  return t;
}

std::unique_ptr<HealthChecker> make(Options o) {
  if (o.jitter_seed == 0) o.jitter_seed = 42;
  std::string error;
  auto c = HealthChecker::start(std::move(o), &error);
  EXPECT_NE(c, nullptr) << error;
  return c;
}

std::optional<TargetStatus> find(const HealthChecker& c, const TargetKey& key) {
  for (auto& s : c.status()) {
    if (s.key == key) return s;
  }
  return std::nullopt;
}

uint64_t probes(const HealthChecker& c, const TargetKey& key) {
  auto s = find(c, key);
  return s ? s->probes : 0;
}

TEST(TargetKey, NormalisesAndPrints) {
  Target t = target(8080, check(HealthCheckType::kTcp));
  t.check.path = "/ignored";
  t.host_header = "ignored";
  TargetKey k = t.key();
  EXPECT_EQ(k.port, 8080);
  EXPECT_EQ(k.path, "");
  EXPECT_EQ(k.host, "");
  EXPECT_EQ(k.to_string(), "tcp 127.0.0.1:8080");

  t.check.port = 9090;
  EXPECT_EQ(t.key().port, 9090);

  Target h = target(80, check(HealthCheckType::kHttp));
  h.check.path = "/healthz";
  h.expect_codes = {503, 200, 503};
  EXPECT_EQ(h.key().expect_codes, (std::vector<int>{200, 503}));
  EXPECT_EQ(h.key().to_string(), "http://127.0.0.1:80/healthz expect 200 503");
  Target h2 = h;
  h2.expect_codes = {200, 503};
  EXPECT_EQ(h.key(), h2.key());
  h2.host_header = "svc";
  EXPECT_NE(h.key(), h2.key());
}

TEST(ProbeResult, Strings) {
  EXPECT_EQ(ProbeResult{}.to_string(), "none");
  EXPECT_EQ((ProbeResult{Outcome::kOk, 0, {}}).to_string(), "ok");
  EXPECT_EQ((ProbeResult{Outcome::kOk, 204, {}}).to_string(), "http 204");
  EXPECT_EQ((ProbeResult{Outcome::kRefused, 0, {}}).to_string(), "refused");
  EXPECT_EQ((ProbeResult{Outcome::kTimeout, 0, {}}).to_string(), "timeout");
  EXPECT_EQ((ProbeResult{Outcome::kHttpStatus, 503, {}}).to_string(), "http 503");
  EXPECT_EQ((ProbeResult{Outcome::kError, 0, "bad status line"}).to_string(),
            "error: bad status line");
  EXPECT_STREQ(to_string(State::kUnknown), "unknown");
  EXPECT_STREQ(to_string(State::kHealthy), "healthy");
  EXPECT_STREQ(to_string(State::kUnhealthy), "unhealthy");
}

TEST(HealthChecker, TcpUpDownUp) {
  TestServer server(TestServer::Mode::kTcp);
  Recorder rec;
  Options o;
  o.initial_healthy = false;  // Kubernetes readiness: a transition to healthy is reported
  o.on_transition = rec.callback();
  auto checker = make(o);
  const Target t = target(server.port(), check(HealthCheckType::kTcp));
  const TargetKey key = t.key();
  checker->set_targets({t});
  EXPECT_EQ(checker->healthy(key), false);
  EXPECT_EQ(find(*checker, key)->state, State::kUnknown);

  ASSERT_TRUE(wait_for([&] { return rec.size() >= 1; }));
  auto s = find(*checker, key);
  EXPECT_EQ(s->state, State::kHealthy);
  EXPECT_TRUE(s->healthy);
  EXPECT_EQ(s->last.outcome, Outcome::kOk);
  EXPECT_EQ(s->last.to_string(), "ok");
  EXPECT_GE(s->consecutive_successes, 2u);
  EXPECT_EQ(s->consecutive_failures, 0u);
  EXPECT_GE(s->probes, 2u);
  EXPECT_GT(s->last_latency.count(), 0);
  EXPECT_EQ(s->check.port, server.port());

  server.close_listener();
  const auto down = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_for([&] { return rec.size() >= 2; }));
  // Three failures need at least two jittered intervals (>= 2 x 45 ms) after the first.
  EXPECT_GE(std::chrono::steady_clock::now() - down, 80ms);
  s = find(*checker, key);
  EXPECT_EQ(s->state, State::kUnhealthy);
  EXPECT_FALSE(s->healthy);
  EXPECT_EQ(s->last.outcome, Outcome::kRefused);
  EXPECT_GE(s->consecutive_failures, 3u);
  EXPECT_EQ(s->consecutive_successes, 0u);
  EXPECT_EQ(checker->healthy(key), false);

  ASSERT_TRUE(server.reopen());
  ASSERT_TRUE(wait_for([&] { return rec.size() >= 3; }));
  EXPECT_EQ(find(*checker, key)->state, State::kHealthy);

  // Each change was reported once: a few more probes bring no further calls.
  const uint64_t n = probes(*checker, key);
  ASSERT_TRUE(wait_for([&] { return probes(*checker, key) >= n + 4; }));
  auto events = rec.get();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], std::make_pair(key, true));
  EXPECT_EQ(events[1], std::make_pair(key, false));
  EXPECT_EQ(events[2], std::make_pair(key, true));
  EXPECT_EQ(find(*checker, key)->transitions, 3u);
}

TEST(HealthChecker, NewTargetsStartHealthyByDefault) {
  Recorder rec;
  HealthChecker* self = nullptr;
  std::vector<std::optional<bool>> seen;  // what healthy() says inside the callback
  Options o;
  o.on_transition = [&](const TargetKey& k, bool h) {
    seen.push_back(self->healthy(k));  // the callback may call back into the checker
    rec.callback()(k, h);
  };
  auto checker = make(o);
  self = checker.get();
  const Target t = target(closed_port(), check(HealthCheckType::kTcp));
  const TargetKey key = t.key();
  const auto before = std::chrono::system_clock::now();
  checker->set_targets({t});
  EXPECT_EQ(checker->healthy(key), true);
  auto s = find(*checker, key);
  EXPECT_EQ(s->state, State::kUnknown);
  EXPECT_TRUE(s->healthy);
  EXPECT_EQ(s->last.outcome, Outcome::kNone);
  EXPECT_GE(s->since, before);

  ASSERT_TRUE(wait_for([&] { return rec.size() >= 1; }));
  const uint64_t n = probes(*checker, key);
  ASSERT_TRUE(wait_for([&] { return probes(*checker, key) >= n + 3; }));
  checker->stop();
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_EQ(rec.get()[0], std::make_pair(key, false));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], false);
  s = find(*checker, key);
  EXPECT_EQ(s->state, State::kUnhealthy);
  EXPECT_EQ(s->last.to_string(), "refused");
  EXPECT_EQ(s->transitions, 1u);
  EXPECT_GE(s->consecutive_failures, 6u);
}

TEST(HealthChecker, Http200ThenServer503) {
  TestServer server(TestServer::Mode::kHttp);
  Recorder rec;
  Options o;
  o.initial_healthy = false;
  o.on_transition = rec.callback();
  auto checker = make(o);
  Target t = target(server.port(), check(HealthCheckType::kHttp));
  t.check.path = "/healthz";
  t.host_header = "svc.example";
  const TargetKey key = t.key();
  checker->set_targets({t});

  ASSERT_TRUE(wait_for([&] { return rec.size() >= 1; }));
  EXPECT_EQ(rec.get()[0], std::make_pair(key, true));
  auto s = find(*checker, key);
  EXPECT_EQ(s->last.outcome, Outcome::kOk);
  EXPECT_EQ(s->last.http_status, 200);
  EXPECT_EQ(s->last.to_string(), "http 200");
  EXPECT_GT(s->last_latency.count(), 0);
  const auto reqs = server.requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_EQ(reqs[0],
            "GET /healthz HTTP/1.1\r\nHost: svc.example\r\nConnection: close\r\n"
            "User-Agent: l4lb-health\r\n\r\n");

  server.status = 503;
  ASSERT_TRUE(wait_for([&] { return rec.size() >= 2; }));
  EXPECT_EQ(rec.get()[1], std::make_pair(key, false));
  s = find(*checker, key);
  EXPECT_EQ(s->state, State::kUnhealthy);
  EXPECT_EQ(s->last.outcome, Outcome::kHttpStatus);
  EXPECT_EQ(s->last.http_status, 503);
  EXPECT_EQ(s->last.to_string(), "http 503");
  EXPECT_EQ(s->transitions, 2u);
}

TEST(HealthChecker, HttpExpectCodesAndDefaultHost) {
  TestServer server(TestServer::Mode::kHttp);
  server.status = 503;
  Recorder rec;
  Options o;
  o.initial_healthy = false;
  o.on_transition = rec.callback();
  auto checker = make(o);
  Target t = target(server.port(), check(HealthCheckType::kHttp));
  t.check.path = "/ready";
  t.expect_codes = {503};
  checker->set_targets({t});
  ASSERT_TRUE(wait_for([&] { return rec.size() >= 1; }));
  EXPECT_EQ(rec.get()[0], std::make_pair(t.key(), true));
  EXPECT_EQ(find(*checker, t.key())->last.outcome, Outcome::kOk);
  const std::string host = "Host: 127.0.0.1:" + std::to_string(server.port()) + "\r\n";
  EXPECT_NE(server.requests()[0].find(host), std::string::npos) << server.requests()[0];
  EXPECT_EQ(server.requests()[0].rfind("GET /ready HTTP/1.1\r\n", 0), 0u);
}

TEST(HealthChecker, TimeoutWhenServerNeverAnswers) {
  TestServer server(TestServer::Mode::kHang);
  Recorder rec;
  Options o;
  o.on_transition = rec.callback();
  auto checker = make(o);
  Target t = target(server.port(), check(HealthCheckType::kHttp, 60, 30));
  t.check.unhealthy_threshold = 2;
  checker->set_targets({t});
  ASSERT_TRUE(wait_for([&] { return rec.size() >= 1; }));
  EXPECT_EQ(rec.get()[0], std::make_pair(t.key(), false));
  auto s = find(*checker, t.key());
  EXPECT_EQ(s->last.outcome, Outcome::kTimeout);
  EXPECT_EQ(s->last.to_string(), "timeout");
  EXPECT_GE(s->last_latency, 30ms);
  EXPECT_LT(s->last_latency, 1000ms);
  // The abandoned connections are closed: the server does not pile them up.
  EXPECT_TRUE(wait_for([&] { return server.current() <= 1; }));
}

TEST(HealthChecker, SharedTargetsAreProbedOnce) {
  TestServer server(TestServer::Mode::kHttp);
  Options o;
  auto checker = make(o);
  Target a = target(server.port(), check(HealthCheckType::kHttp));
  Target b = a;  // another Service, same backend and check, other thresholds
  b.check.healthy_threshold = 5;
  b.check.unhealthy_threshold = 7;
  Target c = target(1234, check(HealthCheckType::kHttp));  // check.port names the same port
  c.check.port = server.port();
  ASSERT_EQ(a.key(), b.key());
  ASSERT_EQ(a.key(), c.key());
  checker->set_targets({a, b, c});

  auto st = checker->status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].check.healthy_threshold, 2u);  // the first occurrence configures it
  ASSERT_TRUE(wait_for([&] { return probes(*checker, a.key()) >= 8; }));
  checker->stop();
  const uint64_t n = probes(*checker, a.key());
  EXPECT_LE(server.accepted(), static_cast<int>(n));
  EXPECT_GE(server.accepted(), static_cast<int>(n) - 1);
}

TEST(HealthChecker, ConcurrencyBoundIsRespected) {
  TestServer server(TestServer::Mode::kHttp);
  server.delay_ms = 20;
  Options o;
  o.max_in_flight = 8;
  auto checker = make(o);
  std::vector<Target> targets;
  for (int i = 0; i < 50; ++i) {
    Target t = target(server.port(), check(HealthCheckType::kHttp, 50, 1000));
    t.check.path = "/t" + std::to_string(i);
    targets.push_back(t);
  }
  checker->set_targets(targets);
  ASSERT_EQ(checker->status().size(), 50u);
  ASSERT_TRUE(wait_for(
      [&] {
        for (const auto& s : checker->status()) {
          if (s.probes < 3 || s.last.outcome != Outcome::kOk) return false;
        }
        return true;
      },
      10000ms));
  EXPECT_LE(server.peak(), 8);
  EXPECT_GE(server.peak(), 4);  // the bound, not the server, was the limit
  for (const auto& s : checker->status()) {
    EXPECT_TRUE(s.healthy) << s.key.to_string();
    EXPECT_EQ(s.consecutive_failures, 0u) << s.key.to_string();
  }
}

TEST(HealthChecker, SetTargetsKeepsStateOfTargetsThatStay) {
  TestServer server(TestServer::Mode::kTcp);
  Recorder rec;
  Options o;
  o.initial_healthy = false;
  o.on_transition = rec.callback();
  auto checker = make(o);
  const Target a = target(server.port(), check(HealthCheckType::kTcp));
  const Target b = target(closed_port(), check(HealthCheckType::kTcp));
  Target none = target(9, check(HealthCheckType::kNone));
  checker->set_targets({a});
  ASSERT_TRUE(wait_for([&] { return rec.size() >= 1; }));

  Target a_slower = a;
  a_slower.check.interval_ms = 80;
  checker->set_targets({b, a_slower, none});
  auto st = checker->status();
  ASSERT_EQ(st.size(), 2u);  // type none is not probed
  auto sa = find(*checker, a.key());
  EXPECT_EQ(sa->state, State::kHealthy);
  EXPECT_EQ(sa->transitions, 1u);
  EXPECT_EQ(sa->check.interval_ms, 80u);
  EXPECT_EQ(find(*checker, b.key())->state, State::kUnknown);
  EXPECT_EQ(checker->healthy(b.key()), false);

  checker->set_targets({b});
  EXPECT_EQ(checker->healthy(a.key()), std::nullopt);
  ASSERT_TRUE(wait_for([&] { return find(*checker, b.key())->state == State::kUnhealthy; }));
  checker->stop();
  // a: one transition to healthy; b started unhealthy-unknown and stayed unhealthy: none.
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_EQ(rec.get()[0], std::make_pair(a.key(), true));
}

TEST(HealthChecker, StopAbandonsProbesInFlight) {
  TestServer server(TestServer::Mode::kHang);
  Options o;
  auto checker = make(o);
  std::vector<Target> targets;
  for (int i = 0; i < 5; ++i) {
    Target t = target(server.port(), check(HealthCheckType::kHttp, 100, 10000));
    t.check.path = "/h" + std::to_string(i);
    targets.push_back(t);
  }
  checker->set_targets(targets);
  ASSERT_TRUE(wait_for([&] { return server.current() == 5; }));
  const auto t0 = std::chrono::steady_clock::now();
  checker->stop();
  checker->stop();  // idempotent
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);
  EXPECT_TRUE(wait_for([&] { return server.current() == 0; }));  // sockets closed
}

TEST(HealthChecker, BadRequestAndBindAddress) {
  TestServer server(TestServer::Mode::kTcp, 0x7f000002);  // 127.0.0.2
  Recorder rec;
  Options o;
  o.bind_address = 0x7f000003;  // probes leave from 127.0.0.3
  o.on_transition = rec.callback();
  auto checker = make(o);
  Target bad = target(server.port(), check(HealthCheckType::kHttp));
  bad.check.path = "/x\r\nEvil: 1";
  const Target ok = target(server.port(), check(HealthCheckType::kTcp), 0x7f000002);
  checker->set_targets({bad, ok});
  ASSERT_TRUE(wait_for([&] { return rec.size() >= 1; }));
  auto s = find(*checker, bad.key());
  EXPECT_EQ(s->last.outcome, Outcome::kError);
  EXPECT_NE(s->last.error.find("CR"), std::string::npos);
  ASSERT_TRUE(wait_for([&] { return probes(*checker, ok.key()) >= 3; }));
  EXPECT_EQ(find(*checker, ok.key())->last.outcome, Outcome::kOk);
  EXPECT_TRUE(checker->healthy(ok.key()).value());
  EXPECT_EQ(server.last_peer(), 0x7f000003u);
}

}  // namespace
}  // namespace l4lb::health
