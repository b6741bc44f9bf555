#include "src/api/render.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

namespace l4lb::api {

namespace {

const char* protocol_name(config::Protocol p) {
  return p == config::Protocol::kUdp ? "UDP" : "TCP";
}

const char* health_type_name(config::HealthCheckType t) {
  switch (t) {
    case config::HealthCheckType::kHttp:
      return "http";
    case config::HealthCheckType::kNone:
      return "none";
    case config::HealthCheckType::kTcp:
      break;
  }
  return "tcp";
}

// The loader's reading of a plain integer: "0" or digits without a leading zero.
bool is_plain_integer(const std::string& s) {
  std::string_view d = s;
  if (!d.empty() && d[0] == '-') d.remove_prefix(1);
  if (d.empty() || d.size() > 18 || (d.size() > 1 && d[0] == '0')) return false;
  return std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

nlohmann::json service_json(const config::ServiceConfig& svc) {
  nlohmann::json ports = nlohmann::json::array();
  for (const auto& p : svc.ports) {
    nlohmann::json port = {
        {"protocol", protocol_name(p.protocol)}, {"port", p.port}, {"targetPort", p.target_port}};
    if (!p.name.empty()) port["name"] = p.name;
    if (p.node_port != 0) port["nodePort"] = p.node_port;
    ports.push_back(std::move(port));
  }
  nlohmann::json ranges = nlohmann::json::array();
  for (const auto& r : svc.source_ranges) ranges.push_back(format_prefix(r));
  nlohmann::json backends = nlohmann::json::array();
  for (const auto& b : svc.backends) {
    backends.push_back({{"ip", format_ipv4(b.ip)}, {"weight", b.weight}});
  }
  nlohmann::json out = {
      {"name", svc.name},
      {"vip", format_ipv4(svc.vip)},
      {"ports", std::move(ports)},
      {"loadBalancerSourceRanges", std::move(ranges)},
      {"sessionAffinity",
       svc.session_affinity == config::SessionAffinity::kClientIp ? "ClientIP" : "None"},
      {"backends", std::move(backends)},
  };
  if (svc.health_check) {
    const auto& hc = *svc.health_check;
    out["healthCheck"] = {{"type", health_type_name(hc.type)},
                          {"path", hc.path},
                          {"intervalMs", hc.interval_ms},
                          {"timeoutMs", hc.timeout_ms},
                          {"healthyThreshold", hc.healthy_threshold},
                          {"unhealthyThreshold", hc.unhealthy_threshold}};
    if (hc.port != 0) out["healthCheck"]["port"] = hc.port;
    if (!hc.expect_codes.empty()) out["healthCheck"]["expectCodes"] = hc.expect_codes;
    if (!hc.host.empty()) out["healthCheck"]["host"] = hc.host;
  }
  static const char* const kAllUnhealthy[] = {"spread", "drop", "reject"};
  out["allUnhealthy"] = kAllUnhealthy[static_cast<int>(svc.all_unhealthy)];
  out["unhealthyFlows"] = svc.unhealthy_flows_repick ? "repick" : "keep";
  out["externalTrafficPolicy"] = svc.external_traffic_local ? "Local" : "Cluster";
  if (svc.health_check_node_port != 0) out["healthCheckNodePort"] = svc.health_check_node_port;
  return out;
}

nlohmann::json error_json(const std::vector<config::FieldError>& errors) {
  if (errors.empty()) return error_json("unknown error");
  nlohmann::json all = nlohmann::json::array();
  for (const auto& e : errors) all.push_back({{"error", e.message}, {"field", e.field}});
  return {{"error", errors.front().message}, {"field", errors.front().field}, {"errors", all}};
}

nlohmann::json error_json(const std::string& message, const std::string& field) {
  return {{"error", message}, {"field", field}};
}

std::optional<uint32_t> parse_flow_limit(const std::optional<std::string>& text) {
  if (!text) return kDefaultFlowLimit;
  if (!is_plain_integer(*text) || (*text)[0] == '-') return std::nullopt;
  const long long v = std::stoll(*text);
  if (v < 1 || v > kMaxFlowLimit) return std::nullopt;
  return static_cast<uint32_t>(v);
}

bool bearer_token_ok(std::string_view authorization, std::string_view token) {
  constexpr std::string_view kScheme = "Bearer ";
  if (token.empty() || authorization.size() < kScheme.size()) return false;
  // The scheme is case-insensitive (RFC 9110, section 11.1).
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
        std::tolower(static_cast<unsigned char>(kScheme[i]))) {
      return false;
    }
  }
  std::string_view given = authorization.substr(kScheme.size());
  // Constant time in the token's content: a timing side channel must not reveal a prefix.
  unsigned char diff = given.size() == token.size() ? 0 : 1;
  for (size_t i = 0; i < token.size(); ++i) {
    diff |= static_cast<unsigned char>(token[i] ^ (i < given.size() ? given[i] : 0));
  }
  return diff == 0;
}

std::optional<std::string> read_token_file(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read token file " + path;
    return std::nullopt;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  text.erase(text.begin(), std::find_if_not(text.begin(), text.end(), space));
  text.erase(std::find_if_not(text.rbegin(), text.rend(), space).base(), text.end());
  if (text.empty()) {
    error = "token file " + path + " is empty";
    return std::nullopt;
  }
  return text;
}

nlohmann::json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (auto it = node.begin(); it != node.end(); ++it) {
        out[it->first.as<std::string>()] = yaml_to_json(it->second);
      }
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(yaml_to_json(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return s;  // quoted: a string, whatever it looks like
      if (is_plain_integer(s)) return std::stoll(s);
      if (s == "true") return true;
      if (s == "false") return false;
      if (s == "null" || s == "~") return nullptr;
      return s;
    }
    default:
      return nullptr;
  }
}

}  // namespace l4lb::api
