#include "src/api/server.h"

#include <httplib.h>

#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>

#include "src/api/handlers.h"
#include "src/api/render.h"
#include "src/api/capture.h"
#include "src/log.h"
#include "src/trace.h"
#include "src/worker.h"

#undef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kApi

namespace l4lb::api {

namespace {

using nlohmann::json;

void reply(httplib::Response& res, const Response& r) {
  res.status = r.status;
  if (r.ask_for_token) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(r.body, "application/json");
}

Request request_of(const httplib::Request& req) {
  return {req.method, req.path, req.params, req.body, req.get_header_value("Authorization")};
}

// The parts of the API that read the running l4lbd: Control, the workers, the ports.
class Backend final : public ApiBackend {
 public:
  Backend(Control& control, const std::vector<std::unique_ptr<Worker>>& workers,
          const std::vector<PortInfo>& ports)
      : control_(control), workers_(workers), ports_(ports) {}

  ControlView view() const override { return control_.view(); }
  ChangeResult put_service(const std::string& name, std::string_view document) override {
    return control_.put_service(name, document);
  }
  ChangeResult delete_service(const std::string& name) override {
    return control_.delete_service(name);
  }
  ChangeResult reload_file() override { return control_.reload_file(); }
  const std::vector<PortInfo>& ports() const override { return ports_; }
  std::vector<unsigned> worker_lcores() const override {
    std::vector<unsigned> out;
    for (const auto& w : workers_) out.push_back(w->lcore());
    return out;
  }
  Response backends(const ControlView& v) override;
  Response trace(const TraceRequest& tr) override;
  Response flows(uint32_t limit) override;

 private:
  Control& control_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  const std::vector<PortInfo>& ports_;
};

Response Backend::backends(const ControlView& v) {
  std::map<health::TargetKey, health::TargetStatus> health;
  for (auto& st : control_.health_status()) health.emplace(st.key, std::move(st));
  json list = json::array();
  for (const auto& svc : v.running.services) {
    for (const auto& b : svc.backends) {
      json item = {{"service", svc.name}, {"ip", format_ipv4(b.ip)}, {"weight", b.weight}};
      auto target = Control::health_target(svc, b.ip);
      auto st = target ? health.find(target->key()) : health.end();
      if (!target) {
        item["health"] = "unchecked";
        item["state"] = b.weight > 0 ? "ready" : "draining";
      } else if (st == health.end()) {
        item["health"] = "pending";
        item["state"] = b.weight > 0 ? "ready" : "draining";
      } else {
        const health::TargetStatus& t = st->second;
        item["health"] = health::to_string(t.state);
        item["healthy"] = t.healthy;
        item["state"] = !t.healthy ? "unhealthy" : b.weight > 0 ? "ready" : "draining";
        item["check"] = t.key.to_string();
        item["since"] = std::chrono::duration<double>(t.since.time_since_epoch()).count();
        item["lastResult"] = t.last.to_string();
        item["lastLatencyMs"] = t.last_latency.count() / 1000.0;
        item["consecutiveSuccesses"] = t.consecutive_successes;
        item["consecutiveFailures"] = t.consecutive_failures;
        item["transitions"] = t.transitions;
      }
      list.push_back(std::move(item));
    }
  }
  return json_reply(200, {{"generation", v.generation}, {"backends", list}});
}

Response Backend::trace(const TraceRequest& tr) {
  // Worker 0 says which worker owns the flow; the owner then runs it against its table.
  size_t worker = 0;
  auto job = std::make_unique<TraceJob>();
  for (int round = 0; round < 2; ++round) {
    job = std::make_unique<TraceJob>();
    job->request = tr;
    if (!workers_[worker]->trace(*job)) {
      return json_reply(503, error_json("the worker did not take the trace; try again"));
    }
    size_t owner = worker;
    for (uint8_t i = 0; i < job->log.n; ++i) {
      if (job->log.steps[i].kind == TraceStep::kOwner) owner = job->log.steps[i].a;
    }
    if (owner == worker || owner >= workers_.size()) break;
    worker = owner;
  }
  std::string text = control_.with_snapshot([&](const Snapshot& snap) {
    return trace_json(tr, job->log, snap, ports_, workers_[worker]->lcore());
  });
  return {200, text + "\n", false};
}

Response Backend::flows(uint32_t limit) {
  // Each worker copies its own entries between bursts (FlowListJob); counters are read
  // as the metrics exporter reads them.
  json list = json::array();
  json flows = json::array();
  uint64_t entries = 0, capacity = 0;
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& w = *workers_[i];
    const WorkerCounters& c = w.counters();
    list.push_back({{"worker", i},
                    {"lcore", w.lcore()},
                    {"entries", w.flow_table_size()},
                    {"capacity", w.flow_table_capacity()},
                    {"created", c.flows_created},
                    {"expired", c.flows_expired},
                    {"repicked", c.flows_repicked},
                    {"insertFailed", c.flow_insert_failed}});
    entries += w.flow_table_size();
    capacity += w.flow_table_capacity();
    if (flows.size() >= limit) continue;
    FlowListJob job;
    job.limit = static_cast<uint32_t>(limit - flows.size());
    job.flows.reserve(job.limit);
    if (!w.list_flows(job)) {
      return json_reply(503,
                        error_json("worker " + std::to_string(i) + " did not answer; try again"));
    }
    static const char* const kStates[] = {"syn_sent", "syn_ack_seen", "established", "closing",
                                          "udp"};
    for (const FlowEntry& e : job.flows) {
      auto ep = [](uint32_t ip_be, uint16_t port_be) {
        return format_ipv4(ntoh32(ip_be)) + ":" + std::to_string(ntoh16(port_be));
      };
      const auto state = static_cast<unsigned>(e.state);
      flows.push_back({{"proto", e.fwd.proto == 6 ? "tcp" : "udp"},
                       {"client", ep(e.fwd.src_ip, e.fwd.src_port)},
                       {"vip", ep(e.nat.vip, e.nat.vip_port)},
                       {"backend", ep(e.nat.backend_ip, e.nat.backend_port)},
                       {"state", state < 5 ? kStates[state] : "unknown"},
                       {"ageSeconds", job.now_s - e.created_s},
                       {"idleSeconds", job.now_s - e.last_seen_s},
                       {"worker", i}});
    }
  }
  return json_reply(200, {{"limit", limit},
                          {"entries", entries},
                          {"capacity", capacity},
                          {"workers", list},
                          {"flows", flows}});
}

}  // namespace

class ServerImpl {
 public:
  ServerImpl(const config::ControlConfig& cfg, Control& control,
             const std::vector<std::unique_ptr<Worker>>& workers,
             const std::vector<PortInfo>& ports, CaptureRunner* capture)
      : control_(control), capture_(capture), backend_(control, workers, ports),
        handlers_(backend_, token_of(cfg)) {
    server_.set_payload_max_length(kMaxBodyBytes);
    server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      auto refused = handlers_.check_token(req.get_header_value("Authorization"));
      if (!refused) return httplib::Server::HandlerResponse::Unhandled;
      reply(res, *refused);
      return httplib::Server::HandlerResponse::Handled;
    });
    // Whatever httplib answers by itself (413, 400 on a malformed request, 404 for a
    // method it has no route for) gets a JSON body too.
    server_.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                      httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      reply(res, http_error_reply(res.status, req.method, req.path));
      return httplib::Server::HandlerResponse::Handled;
    }));
    // Capture routes first: the catch-all below would take their paths.
    if (capture_ != nullptr) add_capture_routes(server_, *capture_, control_);
    // Every path goes to the handlers (handlers.cc routes it; the token was checked above).
    // An endpoint outside them must be registered before these.
    const char* const kAnyPath = R"([\s\S]*)";
    auto route = [this](const httplib::Request& req, httplib::Response& res) {
      reply(res, handlers_.route(request_of(req)));
    };
    server_.Get(kAnyPath, route);
    server_.Put(kAnyPath, route);
    server_.Delete(kAnyPath, route);
    server_.Post(kAnyPath, route);
    const int port = cfg.api.port == 0
                         ? server_.bind_to_any_port(cfg.api.host)
                         : (server_.bind_to_port(cfg.api.host, cfg.api.port) ? cfg.api.port : -1);
    if (port < 0) {
      throw std::runtime_error("cannot listen on " + cfg.api.host + ":" +
                               std::to_string(cfg.api.port) + " for the API");
    }
    port_ = port;
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    L4LB_INFO("api: http://%s:%d/v1/%s", cfg.api.host.c_str(), port_,
              handlers_.has_token() ? " (bearer token required)" : "");
  }

  ~ServerImpl() {
    if (capture_ != nullptr) capture_->stop();  // a capture in flight answers now
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }

 private:
  static std::string token_of(const config::ControlConfig& cfg) {
    if (cfg.api_token_file.empty()) return "";
    std::string error;
    auto token = read_token_file(cfg.api_token_file, error);
    if (!token) throw std::runtime_error("control.api.tokenFile: " + error);
    return *token;
  }

  Control& control_;
  CaptureRunner* capture_;
  Backend backend_;
  Handlers handlers_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

ApiServer::ApiServer(const config::ControlConfig& cfg, Control& control,
                     const std::vector<std::unique_ptr<Worker>>& workers,
                     const std::vector<PortInfo>& ports, CaptureRunner* capture)
    : impl_(std::make_unique<ServerImpl>(cfg, control, workers, ports, capture)) {}

ApiServer::~ApiServer() = default;

int ApiServer::bound_port() const { return impl_->port(); }

}  // namespace l4lb::api
