#include "src/api/handlers.h"

#include <chrono>
#include <utility>

#include "src/api/render.h"

#ifndef L4LB_VERSION
#define L4LB_VERSION "unknown"
#endif

namespace l4lb::api {

namespace {

using nlohmann::json;

constexpr std::string_view kServicesPrefix = "/v1/services/";

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const char* source_name(ServiceSource s) { return s == ServiceSource::kApi ? "api" : "file"; }

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

Response error_reply(int status, const std::string& message, const std::string& field = "") {
  return json_reply(status, error_json(message, field));
}

std::optional<std::string> param(const Request& req, const char* name) {
  auto it = req.params.find(name);  // the first of repeated names, as httplib's get_param_value
  if (it == req.params.end()) return std::nullopt;
  return it->second;
}

// "65535" -> 65535; anything but 1-65535 in plain digits -> nothing.
std::optional<uint16_t> parse_port_number(const std::optional<std::string>& text) {
  if (!text || text->empty() || text->size() > 5 ||
      text->find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  const int value = std::stoi(*text);
  if (value < 1 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

}  // namespace

Response json_reply(int status, const json& body) {
  return {status, body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", false};
}

Response http_error_reply(int status, const std::string& method, const std::string& path) {
  std::string message = status == 404   ? "no such endpoint: " + method + " " + path
                        : status == 413 ? "request body larger than " +
                                              std::to_string(kMaxBodyBytes) + " bytes"
                                        : "bad request";
  return error_reply(status, message);
}

Handlers::Handlers(ApiBackend& backend, std::string token)
    : backend_(backend), token_(std::move(token)) {}

Response Handlers::handle(const Request& req) {
  if (auto refused = check_token(req.authorization)) return *refused;
  return route(req);
}

std::optional<Response> Handlers::check_token(std::string_view authorization) const {
  if (token_.empty() || bearer_token_ok(authorization, token_)) return std::nullopt;
  Response res = error_reply(401, "missing or wrong bearer token (Authorization: Bearer <token>)");
  res.ask_for_token = true;
  return res;
}

Response Handlers::route(const Request& req) {
  const std::string& m = req.method;
  const std::string& path = req.path;
  const bool get = m == "GET" || m == "HEAD";
  if (path.size() > kServicesPrefix.size() && path.starts_with(kServicesPrefix) &&
      path.find('/', kServicesPrefix.size()) == std::string::npos) {
    const std::string name = path.substr(kServicesPrefix.size());
    if (get) return get_service(name);
    if (m == "PUT") return put_service(name, req.body);
    if (m == "DELETE") return delete_service(name);
  } else if (get) {
    if (path == "/v1/services") return list_services();
    if (path == "/v1/backends") return backend_.backends(backend_.view());
    if (path == "/v1/trace") return trace(req);
    if (path == "/v1/flows") return flows(req);
    if (path == "/v1/status") return status();
  } else if (m == "POST" && path == "/v1/reload") {
    return reload();
  }
  return http_error_reply(404, m, path);
}

Response Handlers::list_services() {
  ControlView v = backend_.view();
  json list = json::array();
  for (size_t i = 0; i < v.running.services.size(); ++i) {
    list.push_back(service_entry(v.running.services[i], v.sources[i]));
  }
  return json_reply(200, {{"generation", v.generation}, {"services", list}});
}

Response Handlers::get_service(const std::string& name) {
  ControlView v = backend_.view();
  for (size_t i = 0; i < v.running.services.size(); ++i) {
    if (v.running.services[i].name == name) {
      return json_reply(200, service_entry(v.running.services[i], v.sources[i]));
    }
  }
  return error_reply(404, "no Service named \"" + name + "\"");
}

Response Handlers::put_service(const std::string& name, const std::string& body) {
  ChangeResult r = backend_.put_service(name, body);
  if (!r.applied()) return json_reply(http_status(r.status), error_json(r.errors));
  ControlView v = backend_.view();
  json out = {{"generation", r.generation}};
  for (size_t i = 0; i < v.running.services.size(); ++i) {
    if (v.running.services[i].name == name) {
      out["service"] = service_entry(v.running.services[i], v.sources[i]);
    }
  }
  return json_reply(http_status(r.status), out);
}

Response Handlers::delete_service(const std::string& name) {
  ChangeResult r = backend_.delete_service(name);
  if (!r.applied()) return json_reply(http_status(r.status), error_json(r.errors));
  return json_reply(200, {{"generation", r.generation}, {"deleted", name}});
}

Response Handlers::trace(const Request& req) {
  TraceRequest tr;
  auto proto = param(req, "proto").value_or("tcp");
  if (proto != "tcp" && proto != "udp") return error_reply(400, "proto must be tcp or udp", "proto");
  tr.proto = proto == "tcp" ? 6 : 17;
  for (const char* name : {"src", "dst"}) {
    auto text = param(req, name);
    auto addr = text ? parse_ipv4(*text) : std::nullopt;
    if (!addr) return error_reply(400, std::string(name) + " must be an IPv4 address", name);
    (std::string(name) == "src" ? tr.src_be : tr.dst_be) = hton32(*addr);
  }
  for (const char* name : {"sport", "dport"}) {
    auto port = parse_port_number(param(req, name));
    if (!port) return error_reply(400, std::string(name) + " must be a port 1-65535", name);
    (std::string(name) == "sport" ? tr.sport_be : tr.dport_be) = hton16(*port);
  }
  if (auto flags = param(req, "flags")) {
    if (*flags == "ack") tr.tcp_flags = 0x10;
    else if (*flags != "syn") return error_reply(400, "flags must be syn or ack", "flags");
  }
  if (auto port = param(req, "port")) {
    const auto& ports = backend_.ports();
    size_t i = 0;
    while (i < ports.size() && ports[i].name != *port) ++i;
    if (i == ports.size()) return error_reply(400, "no such port " + *port, "port");
    tr.in_port = static_cast<uint16_t>(i);
  }
  return backend_.trace(tr);
}

Response Handlers::flows(const Request& req) {
  auto limit = parse_flow_limit(param(req, "limit"));
  if (!limit) {
    return error_reply(400, "limit must be an integer 1-" + std::to_string(kMaxFlowLimit),
                       "limit");
  }
  return backend_.flows(*limit);
}

Response Handlers::reload() {
  ChangeResult r = backend_.reload_file();
  if (!r.applied()) return json_reply(http_status(r.status), error_json(r.errors));
  return json_reply(200, {{"generation", r.generation}});
}

Response Handlers::status() {
  ControlView v = backend_.view();
  json workers = json::array();
  const std::vector<unsigned> lcores = backend_.worker_lcores();
  for (size_t i = 0; i < lcores.size(); ++i) workers.push_back({{"worker", i}, {"lcore", lcores[i]}});
  json ports = json::array();
  for (const auto& p : v.running.dataplane.ports) {
    json port = {{"name", p.name},
                 {"device", p.device},
                 {"address", format_prefix(p.address)},
                 {"mtu", p.mtu}};
    for (const PortInfo& info : backend_.ports()) {
      if (info.name == p.name) port["dpdkPortId"] = info.port_id;
    }
    ports.push_back(std::move(port));
  }
  size_t from_api = 0;
  for (auto s : v.sources) from_api += s == ServiceSource::kApi ? 1 : 0;
  return json_reply(200, {{"version", L4LB_VERSION},
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
}

}  // namespace l4lb::api
