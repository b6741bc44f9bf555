// Backend health checking: owns one thread that runs TCP-connect and HTTP GET probes over
// non-blocking kernel sockets and epoll, keeps each target's state and reports transitions.
// set_targets(), status(), healthy() and stop(): any thread but the checker's own (in
// practice the control thread and the API threads). on_transition runs on the checker thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/config/config.h"

namespace l4lb::health {

// What is probed. Identical keys configured by several Services are probed once and their
// result shared (as Maglev shares backends). Thresholds, interval and timeout are not part
// of the key: for duplicates the first Target given to set_targets() decides them.
struct TargetKey {
  uint32_t ip = 0;    // host byte order
  uint16_t port = 0;  // the port probed: check.port, or the target's port when that is 0
  config::HealthCheckType type = config::HealthCheckType::kTcp;
  std::string path;               // http only ("" for tcp)
  std::string host;               // http only: Host header as configured; "" = "ip:port"
  std::vector<int> expect_codes;  // http only, sorted; empty = any 2xx. Part of the key
                                  // because the same answer gives a different verdict.

  auto operator<=>(const TargetKey&) const = default;
  std::string to_string() const;  // "tcp 10.4.1.12:8080", "http://10.4.1.12:8080/healthz"
};

struct Target {
  uint32_t ip = 0;    // host byte order
  uint16_t port = 0;  // the Service port's targetPort; check.port overrides it when non-zero
  config::HealthCheckConfig check;  // type kNone: the target is ignored (always ready)
  std::string host_header;          // http: empty = "ip:port" (as a Kubernetes probe does)
  std::vector<int> expect_codes;    // http: empty = 200-299

  TargetKey key() const;
};

enum class State : uint8_t {
  kUnknown,    // added, neither threshold reached yet: the verdict is Options::initial_healthy
  kHealthy,    // healthy_threshold consecutive successes
  kUnhealthy,  // unhealthy_threshold consecutive failures
};
const char* to_string(State state);  // "unknown", "healthy", "unhealthy"

enum class Outcome : uint8_t {
  kNone,        // no probe finished yet
  kOk,          // connected (tcp) or an expected status (http)
  kRefused,     // ECONNREFUSED (RST to the SYN)
  kTimeout,     // no verdict within timeout_ms (connect, send and status line together)
  kHttpStatus,  // http: a status line with an unexpected code
  kError,       // anything else; ProbeResult::error says what
};

struct ProbeResult {
  Outcome outcome = Outcome::kNone;
  int http_status = 0;  // http: the status code received (kOk or kHttpStatus), else 0
  std::string error;    // kError: "connect: No route to host", "closed before status line"
  // "none", "ok", "http 200", "refused", "timeout", "http 503", "error: <text>"
  std::string to_string() const;
};

// One target, as the API shows it (GET /v1/backends).
struct TargetStatus {
  TargetKey key;
  config::HealthCheckConfig check;  // the check in effect (port resolved)
  State state = State::kUnknown;
  bool healthy = true;                          // the verdict the data path follows
  std::chrono::system_clock::time_point since;  // when `state` last changed (or was added)
  ProbeResult last;
  std::chrono::microseconds last_latency{0};  // from connect() to the verdict
  uint32_t consecutive_successes = 0;
  uint32_t consecutive_failures = 0;
  uint64_t transitions = 0;  // changes of `healthy` (one on_transition call each)
  uint64_t probes = 0;       // probes started
};

struct Options {
  // Probes in flight at once; the rest wait in a FIFO queue (no probe storm).
  uint32_t max_in_flight = 256;
  // Verdict of a target in State::kUnknown. true (default): a new backend takes traffic at
  // once and leaves after unhealthy_threshold failures, so adding backends or restarting
  // l4lbd never blackholes a Service. false: Kubernetes readiness, ready only after
  // healthy_threshold successes.
  bool initial_healthy = true;
  // Seeds the jitter (first probe uniform in [0, interval), then interval ±10 %);
  // 0 = from std::random_device. Tests pass a fixed seed.
  uint64_t jitter_seed = 0;
  // Source address of the probes (host byte order); 0 = the kernel's choice.
  uint32_t bind_address = 0;
  // Called on the checker thread, without the checker's lock held (it may call status()
  // or healthy(), never stop()), once per change of a target's verdict, in order per
  // target. Not called for the initial verdict nor when a target is removed.
  std::function<void(const TargetKey& key, bool healthy)> on_transition;
};

class HealthChecker {
 public:
  // Starts the checker thread with no targets. nullptr, with *error set, when the epoll or
  // eventfd descriptors or the thread cannot be made.
  static std::unique_ptr<HealthChecker> start(Options options, std::string* error);
  ~HealthChecker();  // stop()

  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Replaces the set of targets. Targets whose key stays keep their state, counters and
  // schedule (a changed interval, timeout or threshold applies from the next probe); new
  // ones start in State::kUnknown with their first probe spread over one interval; removed
  // ones are forgotten (a probe in flight is abandoned). Targets of type kNone are skipped.
  void set_targets(std::vector<Target> targets);

  // A consistent copy of every target's state, sorted by key.
  std::vector<TargetStatus> status() const;

  // The verdict for one target; nullopt when it is not a current target.
  std::optional<bool> healthy(const TargetKey& key) const;

  // Joins the thread and closes every socket; idempotent. No callback runs after it returns.
  void stop();

  struct Impl;

 private:
  explicit HealthChecker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace l4lb::health
