#include "src/api/server.h"

#include <httplib.h>

#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>

#include "src/api/render.h"
#include "src/api/capture.h"
#include "src/log.h"
#include "src/trace.h"
#include "src/worker.h"

#undef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kApi

#ifndef L4LB_VERSION
#define L4LB_VERSION "unknown"
#endif

namespace l4lb::api {

namespace {

using nlohmann::json;


double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const char* source_name(ServiceSource s) { return s == ServiceSource::kApi ? "api" : "file"; }

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump() + "\n", "application/json");
}

int http_status(ChangeStatus s) {
  switch (s) {
    case ChangeStatus::kOk:
      return 200;
    case ChangeStatus::kCreated:
      return 201;
    case ChangeStatus::kInvalid:
      return 400;
    case ChangeStatus::kNotFound:
      return 404;
    case ChangeStatus::kConflict:
      return 409;
    case ChangeStatus::kFailed:
      break;
  }
  return 422;  // valid request, but the file (reload) or the snapshot build was refused
}

json service_entry(const config::ServiceConfig& svc, ServiceSource source) {
  json out = service_json(svc);
  out["source"] = source_name(source);
  return out;
}

}  // namespace

class ServerImpl {
 public:
  ServerImpl(const config::ControlConfig& cfg, Control& control,
             const std::vector<std::unique_ptr<Worker>>& workers,
             const std::vector<PortInfo>& ports, CaptureRunner* capture)
      : control_(control), workers_(workers), ports_(ports), capture_(capture) {
    if (!cfg.api_token_file.empty()) {
      std::string error;
      auto token = read_token_file(cfg.api_token_file, error);
      if (!token) throw std::runtime_error("control.api.tokenFile: " + error);
      token_ = *token;
    }
    server_.set_payload_max_length(kMaxBodyBytes);
    server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (token_.empty() || bearer_token_ok(req.get_header_value("Authorization"), token_)) {
        return httplib::Server::HandlerResponse::Unhandled;
      }
      res.set_header("WWW-Authenticate", "Bearer");
      reply(res, 401, error_json("missing or wrong bearer token (Authorization: Bearer <token>)"));
      return httplib::Server::HandlerResponse::Handled;
    });
    // Whatever httplib answers by itself (unknown path 404, body too large 413, 400 on a
    // malformed request) gets a JSON body too.
    server_.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                      httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string message = res.status == 404   ? "no such endpoint: " + req.method + " " + req.path
                            : res.status == 413 ? "request body larger than " +
                                                      std::to_string(kMaxBodyBytes) + " bytes"
                                                : "bad request";
      reply(res, res.status, error_json(message));
      return httplib::Server::HandlerResponse::Handled;
    }));
    routes();
    if (capture_ != nullptr) add_capture_routes(server_, *capture_, control_);
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
              token_.empty() ? "" : " (bearer token required)");
  }

  ~ServerImpl() {
    if (capture_ != nullptr) capture_->stop();  // a capture in flight answers now
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }

 private:
  void routes() {
    server_.Get("/v1/services", [this](const httplib::Request&, httplib::Response& res) {
      ControlView v = control_.view();
      json list = json::array();
      for (size_t i = 0; i < v.running.services.size(); ++i) {
        list.push_back(service_entry(v.running.services[i], v.sources[i]));
      }
      reply(res, 200, {{"generation", v.generation}, {"services", list}});
    });
    server_.Get(R"(/v1/services/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  const std::string name = req.matches[1];
                  ControlView v = control_.view();
                  for (size_t i = 0; i < v.running.services.size(); ++i) {
                    if (v.running.services[i].name == name) {
                      reply(res, 200, service_entry(v.running.services[i], v.sources[i]));
                      return;
                    }
                  }
                  reply(res, 404, error_json("no Service named \"" + name + "\""));
                });
    server_.Put(R"(/v1/services/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  const std::string name = req.matches[1];
                  ChangeResult r = control_.put_service(name, req.body);
                  if (!r.applied()) {
                    reply(res, http_status(r.status), error_json(r.errors));
                    return;
                  }
                  ControlView v = control_.view();
                  json body = {{"generation", r.generation}};
                  for (size_t i = 0; i < v.running.services.size(); ++i) {
                    if (v.running.services[i].name == name) {
                      body["service"] = service_entry(v.running.services[i], v.sources[i]);
                    }
                  }
                  reply(res, http_status(r.status), body);
                });
    server_.Delete(R"(/v1/services/([^/]+))",
                   [this](const httplib::Request& req, httplib::Response& res) {
                     const std::string name = req.matches[1];
                     ChangeResult r = control_.delete_service(name);
                     if (!r.applied()) {
                       reply(res, http_status(r.status), error_json(r.errors));
                       return;
                     }
                     reply(res, 200, {{"generation", r.generation}, {"deleted", name}});
                   });
    server_.Get("/v1/backends", [this](const httplib::Request&, httplib::Response& res) {
      ControlView v = control_.view();
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
      reply(res, 200, {{"generation", v.generation}, {"backends", list}});
    });
    server_.Get("/v1/trace", [this](const httplib::Request& req, httplib::Response& res) {
      TraceRequest tr;
      auto param = [&](const char* name) -> std::optional<std::string> {
        if (!req.has_param(name)) return std::nullopt;
        return req.get_param_value(name);
      };
      auto proto = param("proto").value_or("tcp");
      if (proto != "tcp" && proto != "udp") {
        reply(res, 400, error_json("proto must be tcp or udp", "proto"));
        return;
      }
      tr.proto = proto == "tcp" ? 6 : 17;
      for (const char* name : {"src", "dst"}) {
        auto text = param(name);
        auto addr = text ? parse_ipv4(*text) : std::nullopt;
        if (!addr) {
          reply(res, 400, error_json(std::string(name) + " must be an IPv4 address", name));
          return;
        }
        (std::string(name) == "src" ? tr.src_be : tr.dst_be) = hton32(*addr);
      }
      for (const char* name : {"sport", "dport"}) {
        auto text = param(name);
        int value = 0;
        if (!text || text->empty() || text->size() > 5 ||
            text->find_first_not_of("0123456789") != std::string::npos ||
            (value = std::stoi(*text)) < 1 || value > 65535) {
          reply(res, 400, error_json(std::string(name) + " must be a port 1-65535", name));
          return;
        }
        (std::string(name) == "sport" ? tr.sport_be : tr.dport_be) =
            hton16(static_cast<uint16_t>(value));
      }
      if (auto flags = param("flags")) {
        if (*flags == "ack") tr.tcp_flags = 0x10;
        else if (*flags != "syn") {
          reply(res, 400, error_json("flags must be syn or ack", "flags"));
          return;
        }
      }
      if (auto port = param("port")) {
        size_t i = 0;
        while (i < ports_.size() && ports_[i].name != *port) ++i;
        if (i == ports_.size()) {
          reply(res, 400, error_json("no such port " + *port, "port"));
          return;
        }
        tr.in_port = static_cast<uint16_t>(i);
      }
      // Worker 0 says which worker owns the flow; the owner then runs it against its table.
      size_t worker = 0;
      auto job = std::make_unique<TraceJob>();
      for (int round = 0; round < 2; ++round) {
        job = std::make_unique<TraceJob>();
        job->request = tr;
        if (!workers_[worker]->trace(*job)) {
          reply(res, 503, error_json("the worker did not take the trace; try again"));
          return;
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
      res.status = 200;
      res.set_content(text + "\n", "application/json");
    });
    server_.Post("/v1/reload", [this](const httplib::Request&, httplib::Response& res) {
      ChangeResult r = control_.reload_file();
      if (!r.applied()) {
        reply(res, http_status(r.status), error_json(r.errors));
        return;
      }
      reply(res, 200, {{"generation", r.generation}});
    });
    server_.Get("/v1/flows", [this](const httplib::Request& req, httplib::Response& res) {
      std::optional<std::string> text;
      if (req.has_param("limit")) text = req.get_param_value("limit");
      auto limit = parse_flow_limit(text);
      if (!limit) {
        reply(res, 400,
              error_json("limit must be an integer 1-" + std::to_string(kMaxFlowLimit), "limit"));
        return;
      }
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
        if (flows.size() >= *limit) continue;
        FlowListJob job;
        job.limit = static_cast<uint32_t>(*limit - flows.size());
        job.flows.reserve(job.limit);
        if (!w.list_flows(job)) {
          reply(res, 503, error_json("worker " + std::to_string(i) + " did not answer; try again"));
          return;
        }
        static const char* const kStates[] = {"syn_sent", "syn_ack_seen", "established",
                                              "closing", "udp"};
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
      reply(res, 200,
            {{"limit", *limit},
             {"entries", entries},
             {"capacity", capacity},
             {"workers", list},
             {"flows", flows}});
    });
    server_.Get("/v1/status", [this](const httplib::Request&, httplib::Response& res) {
      ControlView v = control_.view();
      json workers = json::array();
      for (size_t i = 0; i < workers_.size(); ++i) {
        workers.push_back({{"worker", i}, {"lcore", workers_[i]->lcore()}});
      }
      json ports = json::array();
      for (const auto& p : v.running.dataplane.ports) {
        json port = {{"name", p.name},
                     {"device", p.device},
                     {"address", format_prefix(p.address)},
                     {"mtu", p.mtu}};
        for (const PortInfo& info : ports_) {
          if (info.name == p.name) port["dpdkPortId"] = info.port_id;
        }
        ports.push_back(std::move(port));
      }
      size_t from_api = 0;
      for (auto s : v.sources) from_api += s == ServiceSource::kApi ? 1 : 0;
      reply(res, 200,
            {{"version", L4LB_VERSION},
             {"uptimeSeconds", wall_seconds() - v.started_at},
             {"generation", v.generation},
             {"configFile", v.running.file},
             {"services", v.running.services.size()},
             {"servicesFromApi", from_api},
             {"apiChanges", v.api_changes},
             {"reloads",
              {{"ok", v.reloads_ok},
               {"failed", v.reloads_failed},
               {"lastReloadTime", v.last_reload_time},
               {"lastErrors", v.last_reload_errors}}},
             {"workers", workers},
             {"ports", ports}});
    });
  }

  Control& control_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  const std::vector<PortInfo>& ports_;
  CaptureRunner* capture_;
  std::string token_;
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
