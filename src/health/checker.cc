#include "src/health/checker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <queue>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include "src/log.h"

#undef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kHealth

namespace l4lb::health {

namespace {

using Clock = std::chrono::steady_clock;
using config::HealthCheckConfig;
using config::HealthCheckType;

// The longest status line read; a peer that sends more without CRLF is not an HTTP server.
constexpr size_t kMaxStatusLine = 4096;
constexpr int kMaxEvents = 64;

std::string ip_string(uint32_t ip) {
  char buf[INET_ADDRSTRLEN];
  const in_addr a{htonl(ip)};
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::string errno_text(const char* what, int err) {
  return std::string(what) + ": " + strerror(err);
}

// Header values end at CR/LF; the loader already rejects them, this keeps a bad Target from
// smuggling a second request line.
bool header_safe(const std::string& s) { return s.find_first_of("\r\n") == std::string::npos; }

bool status_expected(int code, const std::vector<int>& expect) {
  if (expect.empty()) return code >= 200 && code <= 299;
  return std::binary_search(expect.begin(), expect.end(), code);
}

// "HTTP/1.1 200 OK" -> 200; -1 when the line is not an HTTP/1.x status line (RFC 9112 §4).
int parse_status_line(std::string_view line) {
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[8] != ' ') return -1;
  int code = 0;
  for (int i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return -1;
    code = code * 10 + (line[i] - '0');
  }
  if (line.size() > 12 && line[12] != ' ') return -1;
  return code;
}

}  // namespace

TargetKey Target::key() const {
  TargetKey k;
  k.ip = ip;
  k.port = check.port != 0 ? check.port : port;
  k.type = check.type;
  if (check.type == HealthCheckType::kHttp) {
    k.path = check.path.empty() ? "/" : check.path;
    k.host = host_header;
    k.expect_codes = expect_codes;
    std::sort(k.expect_codes.begin(), k.expect_codes.end());
    k.expect_codes.erase(std::unique(k.expect_codes.begin(), k.expect_codes.end()),
                         k.expect_codes.end());
  }
  return k;
}

std::string TargetKey::to_string() const {
  const std::string addr = ip_string(ip) + ":" + std::to_string(port);
  switch (type) {
    case HealthCheckType::kHttp: {
      std::string s = "http://" + addr + path;
      if (!host.empty()) s += " (Host: " + host + ")";
      if (!expect_codes.empty()) {
        s += " expect";
        for (int c : expect_codes) s.append(" ").append(std::to_string(c));  // see eal.cc
      }
      return s;
    }
    case HealthCheckType::kTcp:
      return "tcp " + addr;
    case HealthCheckType::kNone:
      break;
  }
  return "none " + addr;
}

const char* to_string(State state) {
  switch (state) {
    case State::kHealthy:
      return "healthy";
    case State::kUnhealthy:
      return "unhealthy";
    case State::kUnknown:
      break;
  }
  return "unknown";
}

std::string ProbeResult::to_string() const {
  switch (outcome) {
    case Outcome::kNone:
      return "none";
    case Outcome::kOk:
      return http_status != 0 ? "http " + std::to_string(http_status) : "ok";
    case Outcome::kRefused:
      return "refused";
    case Outcome::kTimeout:
      return "timeout";
    case Outcome::kHttpStatus:
      return "http " + std::to_string(http_status);
    case Outcome::kError:
      break;
  }
  return "error: " + error;
}

namespace {

// One target's state. Guarded by Impl::mu; shared with its probe in flight, which may
// outlive the target's removal (then `removed` makes the result be dropped).
struct Entry {
  TargetKey key;
  HealthCheckConfig check;
  sockaddr_in addr{};
  std::string request;  // http: the whole request; empty with `bad_request` set
  bool bad_request = false;

  State state = State::kUnknown;
  bool healthy = true;
  std::chrono::system_clock::time_point since;
  ProbeResult last;
  std::chrono::microseconds latency{0};
  uint32_t successes = 0;
  uint32_t failures = 0;
  uint64_t transitions = 0;
  uint64_t probes = 0;

  Clock::time_point due;      // when the next probe is (or was) due
  uint64_t schedule_gen = 0;  // heap items with another generation are stale
  bool busy = false;          // queued or in flight: never two probes of one target at once
  bool removed = false;
};

struct Scheduled {
  Clock::time_point due;
  uint64_t gen;
  std::shared_ptr<Entry> entry;
  bool operator>(const Scheduled& o) const { return due > o.due; }
};

enum class Phase : uint8_t { kConnecting, kSending, kReceiving };

struct Probe {
  std::shared_ptr<Entry> entry;
  int fd = -1;
  Phase phase = Phase::kConnecting;
  size_t sent = 0;
  std::string response;
  Clock::time_point started;
  std::multimap<Clock::time_point, Probe*>::iterator deadline_it;
};

using Transition = std::pair<TargetKey, bool>;

}  // namespace

struct HealthChecker::Impl {
  Options options;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::thread thread;
  std::mutex stop_mu;    // serialises stop()
  bool stopped = false;  // guarded by stop_mu

  mutable std::mutex mu;  // guards everything below
  bool stopping = false;
  std::map<TargetKey, std::shared_ptr<Entry>> targets;
  std::priority_queue<Scheduled, std::vector<Scheduled>, std::greater<>> schedule;
  std::deque<std::shared_ptr<Entry>> ready;  // due, waiting for an in-flight slot
  std::unordered_map<Probe*, std::unique_ptr<Probe>> in_flight;
  std::multimap<Clock::time_point, Probe*> deadlines;
  std::mt19937_64 rng;

  ~Impl() {
    if (epoll_fd >= 0) close(epoll_fd);
    if (wake_fd >= 0) close(wake_fd);
  }

  void wake() const {
    const uint64_t one = 1;
    // Only EAGAIN (counter saturated, a wake-up is pending anyway) can fail here.
    [[maybe_unused]] ssize_t n = write(wake_fd, &one, sizeof one);
  }

  Clock::duration jittered(uint32_t interval_ms) {
    // ±10 % so that targets added together drift apart instead of probing in lockstep.
    std::uniform_real_distribution<double> d(0.9, 1.1);
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(interval_ms * d(rng)));
  }

  void schedule_at(const std::shared_ptr<Entry>& e, Clock::time_point due) {
    e->due = due;
    schedule.push({due, ++e->schedule_gen, e});
  }

  void configure(Entry& e, const Target& t) {
    e.check = t.check;
    e.check.port = e.key.port;
    e.check.healthy_threshold = std::max<uint32_t>(1, e.check.healthy_threshold);
    e.check.unhealthy_threshold = std::max<uint32_t>(1, e.check.unhealthy_threshold);
    e.check.interval_ms = std::max<uint32_t>(1, e.check.interval_ms);
    e.check.timeout_ms = std::max<uint32_t>(1, e.check.timeout_ms);
    e.addr = {};
    e.addr.sin_family = AF_INET;
    e.addr.sin_port = htons(e.key.port);
    e.addr.sin_addr.s_addr = htonl(e.key.ip);
    e.request.clear();
    e.bad_request = false;
    if (e.key.type == HealthCheckType::kHttp) {
      std::string host = e.key.host;
      if (host.empty()) {
        host = ip_string(e.key.ip);
        if (e.key.port != 80) host.append(":").append(std::to_string(e.key.port));
      }
      if (!header_safe(host) || !header_safe(e.key.path) ||
          e.key.path.find(' ') != std::string::npos) {
        e.bad_request = true;
      } else {
        e.request = "GET " + e.key.path + " HTTP/1.1\r\nHost: " + host +
                    "\r\nConnection: close\r\nUser-Agent: l4lb-health\r\n\r\n";
      }
    }
  }

  void set_targets(std::vector<Target> list) {
    {
      std::lock_guard lock(mu);
      const auto now = Clock::now();
      std::map<TargetKey, std::shared_ptr<Entry>> next;
      for (const Target& t : list) {
        if (t.check.type == HealthCheckType::kNone) continue;
        TargetKey key = t.key();
        if (next.count(key) != 0) continue;  // shared: the first occurrence configures it
        auto it = targets.find(key);
        if (it != targets.end()) {
          std::shared_ptr<Entry> e = it->second;
          const uint32_t old_interval = e->check.interval_ms;
          configure(*e, t);
          // A shorter interval takes effect now rather than after the old, longer wait.
          if (!e->busy && e->check.interval_ms < old_interval &&
              e->due > now + std::chrono::milliseconds(e->check.interval_ms)) {
            schedule_at(e, now + jittered(e->check.interval_ms));
          }
          next.emplace(std::move(key), std::move(e));
          continue;
        }
        auto e = std::make_shared<Entry>();
        e->key = key;
        configure(*e, t);
        e->healthy = options.initial_healthy;
        e->since = std::chrono::system_clock::now();
        // The first probe of a batch of new targets is spread over one interval.
        std::uniform_int_distribution<int64_t> first(0, int64_t{e->check.interval_ms} * 1000 - 1);
        schedule_at(e, now + std::chrono::microseconds(first(rng)));
        next.emplace(std::move(key), std::move(e));
      }
      for (auto& [key, e] : targets) {
        if (next.count(key) == 0) e->removed = true;
      }
      targets = std::move(next);
    }
    wake();
  }

  // Records a finished probe, closes its socket and schedules the next one.
  void finish(Probe* p, ProbeResult result, Clock::time_point now, std::vector<Transition>& notes) {
    if (p->fd >= 0) close(p->fd);  // also leaves the epoll set
    deadlines.erase(p->deadline_it);
    std::shared_ptr<Entry> e = std::move(p->entry);
    const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(now - p->started);
    in_flight.erase(p);
    e->busy = false;
    if (e->removed) return;

    e->last = std::move(result);
    e->latency = latency;
    State next = e->state;
    if (e->last.outcome == Outcome::kOk) {
      ++e->successes;
      e->failures = 0;
      if (e->successes >= e->check.healthy_threshold) next = State::kHealthy;
    } else {
      ++e->failures;
      e->successes = 0;
      if (e->failures >= e->check.unhealthy_threshold) next = State::kUnhealthy;
    }
    if (next != e->state) {
      e->state = next;
      e->since = std::chrono::system_clock::now();
      const bool healthy = next == State::kHealthy;
      if (healthy != e->healthy) {
        e->healthy = healthy;
        ++e->transitions;
        notes.emplace_back(e->key, healthy);
      }
    }
    // The cadence follows the due times, so queueing or a slow answer does not stretch it;
    // a probe that overran its interval is followed by the next one at once.
    schedule_at(e, std::max(e->due + jittered(e->check.interval_ms), now));
  }

  void fail_errno(Probe* p, const char* what, int err, Clock::time_point now,
                  std::vector<Transition>& notes) {
    ProbeResult r;
    if (err == ECONNREFUSED) {
      r.outcome = Outcome::kRefused;
    } else {
      r.outcome = Outcome::kError;
      r.error = errno_text(what, err);
    }
    finish(p, std::move(r), now, notes);
  }

  void start_probe(std::shared_ptr<Entry> e, Clock::time_point now,
                   std::vector<Transition>& notes) {
    auto owned = std::make_unique<Probe>();
    Probe* p = owned.get();
    p->entry = std::move(e);
    p->started = now;
    Entry& entry = *p->entry;
    ++entry.probes;
    p->deadline_it = deadlines.emplace(now + std::chrono::milliseconds(entry.check.timeout_ms), p);
    in_flight.emplace(p, std::move(owned));

    if (entry.bad_request) {
      finish(p, {Outcome::kError, 0, "path or Host header holds CR, LF or space"}, now, notes);
      return;
    }
    p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) return fail_errno(p, "socket", errno, now, notes);
    // Close with RST: the prober would otherwise hold a TIME_WAIT socket per probe, which at
    // 10,000 backends every few seconds exhausts memory and ephemeral ports.
    const linger lg{1, 0};
    setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (options.bind_address != 0) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl(options.bind_address);
      if (bind(p->fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
        return fail_errno(p, "bind", errno, now, notes);
      }
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.ptr = p;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, p->fd, &ev) != 0) {
      return fail_errno(p, "epoll_ctl", errno, now, notes);
    }
    if (connect(p->fd, reinterpret_cast<const sockaddr*>(&entry.addr), sizeof entry.addr) != 0 &&
        errno != EINPROGRESS) {
      return fail_errno(p, "connect", errno, now, notes);
    }
    // Connected or in progress: EPOLLOUT reports either way.
  }

  void on_connected(Probe* p, Clock::time_point now, std::vector<Transition>& notes) {
    if (p->entry->key.type == HealthCheckType::kTcp) {
      finish(p, {Outcome::kOk, 0, {}}, now, notes);
      return;
    }
    p->phase = Phase::kSending;
    on_writable(p, now, notes);
  }

  void on_writable(Probe* p, Clock::time_point now, std::vector<Transition>& notes) {
    const std::string& req = p->entry->request;
    while (p->sent < req.size()) {
      const ssize_t n = send(p->fd, req.data() + p->sent, req.size() - p->sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // EPOLLOUT again
        if (errno == EINTR) continue;
        return fail_errno(p, "send", errno, now, notes);
      }
      p->sent += static_cast<size_t>(n);
    }
    p->phase = Phase::kReceiving;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = p;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, p->fd, &ev) != 0) {
      fail_errno(p, "epoll_ctl", errno, now, notes);
    }
  }

  void on_readable(Probe* p, Clock::time_point now, std::vector<Transition>& notes) {
    char buf[1024];
    for (;;) {
      const ssize_t n = recv(p->fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        return fail_errno(p, "recv", errno, now, notes);
      }
      if (n == 0) {
        finish(p, {Outcome::kError, 0, "closed before status line"}, now, notes);
        return;
      }
      p->response.append(buf, static_cast<size_t>(n));
      const size_t eol = p->response.find("\r\n");
      if (eol == std::string::npos) {
        if (p->response.size() > kMaxStatusLine) {
          finish(p, {Outcome::kError, 0, "status line too long"}, now, notes);
          return;
        }
        continue;
      }
      const int code = parse_status_line(std::string_view(p->response).substr(0, eol));
      if (code < 0) {
        finish(p, {Outcome::kError, 0, "bad status line"}, now, notes);
      } else if (status_expected(code, p->entry->key.expect_codes)) {
        finish(p, {Outcome::kOk, code, {}}, now, notes);
      } else {
        finish(p, {Outcome::kHttpStatus, code, {}}, now, notes);
      }
      return;
    }
  }

  void on_event(Probe* p, uint32_t events, Clock::time_point now, std::vector<Transition>& notes) {
    switch (p->phase) {
      case Phase::kConnecting: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err != 0) return fail_errno(p, "connect", err, now, notes);
        if ((events & EPOLLOUT) == 0) {
          if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
            finish(p, {Outcome::kError, 0, "connect: hung up"}, now, notes);
          }
          return;
        }
        return on_connected(p, now, notes);
      }
      case Phase::kSending:
        return on_writable(p, now, notes);
      case Phase::kReceiving:
        return on_readable(p, now, notes);
    }
  }

  // Expires probes, moves due targets to the ready queue and starts what the bound allows.
  // Returns the epoll timeout in ms (-1: nothing pending).
  int advance(Clock::time_point now, std::vector<Transition>& notes) {
    while (!deadlines.empty() && deadlines.begin()->first <= now) {
      finish(deadlines.begin()->second, {Outcome::kTimeout, 0, {}}, now, notes);
    }
    while (!schedule.empty() && schedule.top().due <= now) {
      Scheduled s = schedule.top();
      schedule.pop();
      if (s.gen != s.entry->schedule_gen || s.entry->removed || s.entry->busy) continue;
      s.entry->busy = true;
      ready.push_back(std::move(s.entry));
    }
    while (!ready.empty() && in_flight.size() < std::max<uint32_t>(1, options.max_in_flight)) {
      std::shared_ptr<Entry> e = std::move(ready.front());
      ready.pop_front();
      if (e->removed) {
        e->busy = false;
        continue;
      }
      start_probe(std::move(e), now, notes);
    }
    std::optional<Clock::time_point> next;
    if (!deadlines.empty()) next = deadlines.begin()->first;
    // With every slot taken, the next due target waits for a slot, not for its time.
    if (!schedule.empty() && ready.empty()) {
      next = next ? std::min(*next, schedule.top().due) : schedule.top().due;
    }
    if (!next) return -1;
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
    return static_cast<int>(std::clamp<int64_t>(wait, 0, 60'000));
  }

  void deliver(std::vector<Transition>& notes) {
    for (const auto& [key, healthy] : notes) {
      if (!options.on_transition) break;
      try {
        options.on_transition(key, healthy);
      } catch (const std::exception& ex) {
        L4LB_ERROR("health: transition callback for %s threw: %s", key.to_string().c_str(),
                   ex.what());
      } catch (...) {
        L4LB_ERROR("health: transition callback for %s threw", key.to_string().c_str());
      }
    }
    notes.clear();
  }

  void loop() {
    std::vector<Transition> notes;
    epoll_event events[kMaxEvents];
    for (;;) {
      int timeout;
      {
        std::lock_guard lock(mu);
        if (stopping) break;
        timeout = advance(Clock::now(), notes);
      }
      deliver(notes);
      const int n = epoll_wait(epoll_fd, events, kMaxEvents, timeout);
      if (n < 0 && errno != EINTR) {
        L4LB_ERROR("health: epoll_wait: %s; checker stops", strerror(errno));
        break;
      }
      {
        std::lock_guard lock(mu);
        const auto now = Clock::now();
        for (int i = 0; i < n; ++i) {
          if (events[i].data.ptr == nullptr) {
            uint64_t count;
            [[maybe_unused]] ssize_t r = read(wake_fd, &count, sizeof count);
            continue;
          }
          on_event(static_cast<Probe*>(events[i].data.ptr), events[i].events, now, notes);
        }
      }
      deliver(notes);
    }
  }

  void run() {
    try {
      loop();
    } catch (const std::exception& ex) {
      L4LB_ERROR("health: checker thread failed: %s", ex.what());
    } catch (...) {
      L4LB_ERROR("health: checker thread failed");
    }
    std::lock_guard lock(mu);
    for (auto& [p, probe] : in_flight) {
      if (probe->fd >= 0) close(probe->fd);
      probe->entry->busy = false;
    }
    in_flight.clear();
    deadlines.clear();
    ready.clear();
    schedule = {};
  }
};

std::unique_ptr<HealthChecker> HealthChecker::start(Options options, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  uint64_t seed = impl->options.jitter_seed;
  if (seed == 0) seed = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  impl->rng.seed(seed);
  impl->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (impl->epoll_fd < 0) {
    if (error) *error = errno_text("health: epoll_create1", errno);
    return nullptr;
  }
  impl->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl->wake_fd < 0) {
    if (error) *error = errno_text("health: eventfd", errno);
    return nullptr;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  if (epoll_ctl(impl->epoll_fd, EPOLL_CTL_ADD, impl->wake_fd, &ev) != 0) {
    if (error) *error = errno_text("health: epoll_ctl", errno);
    return nullptr;
  }
  try {
    Impl* raw = impl.get();
    impl->thread = std::thread([raw] { raw->run(); });
  } catch (const std::system_error& ex) {
    if (error) *error = std::string("health: thread: ") + ex.what();
    return nullptr;
  }
  return std::unique_ptr<HealthChecker>(new HealthChecker(std::move(impl)));
}

HealthChecker::HealthChecker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::stop() {
  std::lock_guard stop_lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->wake();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void HealthChecker::set_targets(std::vector<Target> targets) {
  impl_->set_targets(std::move(targets));
}

std::vector<TargetStatus> HealthChecker::status() const {
  std::lock_guard lock(impl_->mu);
  std::vector<TargetStatus> out;
  out.reserve(impl_->targets.size());
  for (const auto& [key, e] : impl_->targets) {
    TargetStatus s;
    s.key = key;
    s.check = e->check;
    s.state = e->state;
    s.healthy = e->healthy;
    s.since = e->since;
    s.last = e->last;
    s.last_latency = e->latency;
    s.consecutive_successes = e->successes;
    s.consecutive_failures = e->failures;
    s.transitions = e->transitions;
    s.probes = e->probes;
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<bool> HealthChecker::healthy(const TargetKey& key) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->targets.find(key);
  if (it == impl_->targets.end()) return std::nullopt;
  return it->second->healthy;
}

}  // namespace l4lb::health
