// l4lbctl: the command-line client of l4lbd's REST API (src/api/server.h). Tables for
// people, `-o json` for scripts; a non-zero exit and the server's own error text on any
// failure. `apply -f` takes our YAML (a file with `services:`) or Kubernetes manifests.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "src/api/render.h"
#include "src/config/kubernetes.h"

namespace {

using nlohmann::json;

struct Options {
  std::string server = "http://127.0.0.1:9180";
  std::string token_file;
  std::string output = "table";
};

// Thrown for any failure; main prints it and exits 1.
struct Failure {
  std::string message;
};

class Api {
 public:
  explicit Api(const Options& o) : server_(o.server), client_(o.server) {
    if (!client_.is_valid()) throw Failure{"--server " + o.server + " is not a valid http URL"};
    client_.set_connection_timeout(3);
    client_.set_read_timeout(30);
    if (!o.token_file.empty()) {
      std::string error;
      auto token = l4lb::api::read_token_file(o.token_file, error);
      if (!token) throw Failure{"--token-file: " + error};
      client_.set_bearer_token_auth(*token);
    }
  }

  // The parsed JSON body of a 2xx answer; anything else throws with the server's error.
  json call(const std::string& method, const std::string& path, const std::string& body = "") {
    httplib::Result res = method == "GET"      ? client_.Get(path)
                          : method == "PUT"    ? client_.Put(path, body, "application/json")
                          : method == "DELETE" ? client_.Delete(path)
                                               : client_.Post(path, body, "application/json");
    json parsed = check(res, method, path);
    if (parsed.is_discarded()) throw Failure{method + " " + path + ": the answer is not JSON"};
    return parsed;
  }

  // A POST whose 2xx answer may be binary (a pcap); waits up to `seconds` for it.
  httplib::Result post_raw(const std::string& path, const std::string& body, int seconds) {
    client_.set_read_timeout(seconds);
    httplib::Result res = client_.Post(path, body, "application/json");
    check(res, "POST", path);
    return res;
  }

 private:
  // Throws unless the answer is a 2xx; returns its body parsed as JSON (or discarded).
  json check(const httplib::Result& res, const std::string& method, const std::string& path) {
    if (!res) {
      const std::string why = res.error() == httplib::Error::Connection
                                  ? "connection refused or unreachable"
                                  : httplib::to_string(res.error());
      throw Failure{"cannot reach l4lbd at " + server_ + ": " + why +
                    " (is l4lbd running with control.api.listen there?)"};
    }
    json parsed = json::parse(res->body, nullptr, false);
    if (res->status < 200 || res->status > 299) {
      std::string text = method + " " + path + ": " + std::to_string(res->status);
      if (parsed.is_object() && parsed.contains("error")) {
        text += ": " + parsed["error"].get<std::string>();
        if (parsed.contains("errors") && parsed["errors"].size() > 1) {
          for (size_t i = 1; i < parsed["errors"].size(); ++i) {
            text += "\n  " + parsed["errors"][i]["error"].get<std::string>();
          }
        }
      } else {
        text += ": " + res->body.substr(0, 200);
      }
      throw Failure{text};
    }
    return parsed;
  }

  std::string server_;
  httplib::Client client_;
};

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 3, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

std::string str(const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

void get_services(Api& api, const Options& o) {
  json r = api.call("GET", "/v1/services");
  if (o.output == "json") {
    std::printf("%s\n", r.dump(2).c_str());
    return;
  }
  std::vector<std::vector<std::string>> rows{{"NAME", "VIP", "PORTS", "BACKENDS", "SOURCE"}};
  for (const auto& s : r["services"]) {
    std::string ports;
    for (const auto& p : s["ports"]) {
      if (!ports.empty()) ports += ",";
      ports += str(p["port"]) + "/" + str(p["protocol"]) + "->" + str(p["targetPort"]);
    }
    size_t ready = 0;
    for (const auto& b : s["backends"]) ready += b["weight"].get<int>() > 0 ? 1 : 0;
    rows.push_back({str(s["name"]), str(s["vip"]), ports,
                    std::to_string(ready) + "/" + std::to_string(s["backends"].size()) + " ready",
                    str(s["source"])});
  }
  print_table(rows);
}

void get_backends(Api& api, const Options& o) {
  json r = api.call("GET", "/v1/backends");
  if (o.output == "json") {
    std::printf("%s\n", r.dump(2).c_str());
    return;
  }
  std::vector<std::vector<std::string>> rows{{"SERVICE", "BACKEND", "WEIGHT", "STATE", "HEALTH"}};
  for (const auto& b : r["backends"]) {
    rows.push_back(
        {str(b["service"]), str(b["ip"]), str(b["weight"]), str(b["state"]), str(b["health"])});
  }
  print_table(rows);
}

void get_flows(Api& api, const Options& o, unsigned limit) {
  json r = api.call("GET", "/v1/flows?limit=" + std::to_string(limit));
  if (o.output == "json") {
    std::printf("%s\n", r.dump(2).c_str());
    return;
  }
  std::vector<std::vector<std::string>> rows{
      {"WORKER", "LCORE", "ENTRIES", "CAPACITY", "CREATED", "EXPIRED", "REPICKED"}};
  for (const auto& w : r["workers"]) {
    rows.push_back({str(w["worker"]), str(w["lcore"]), str(w["entries"]), str(w["capacity"]),
                    str(w["created"]), str(w["expired"]), str(w["repicked"])});
  }
  print_table(rows);
  std::printf("total: %s of %s entries\n\n", str(r["entries"]).c_str(),
              str(r["capacity"]).c_str());
  std::vector<std::vector<std::string>> flows{
      {"PROTO", "CLIENT", "VIP", "BACKEND", "STATE", "AGE", "IDLE", "WORKER"}};
  for (const auto& f : r["flows"]) {
    flows.push_back({str(f["proto"]), str(f["client"]), str(f["vip"]), str(f["backend"]),
                     str(f["state"]), str(f["ageSeconds"]) + "s", str(f["idleSeconds"]) + "s",
                     str(f["worker"])});
  }
  print_table(flows);
}

void status(Api& api, const Options& o) {
  json r = api.call("GET", "/v1/status");
  if (o.output == "json") {
    std::printf("%s\n", r.dump(2).c_str());
    return;
  }
  std::printf("version:     %s\n", str(r["version"]).c_str());
  std::printf("uptime:      %.0f s\n", r["uptimeSeconds"].get<double>());
  std::printf("generation:  %s\n", str(r["generation"]).c_str());
  std::printf("config file: %s\n", str(r["configFile"]).c_str());
  std::printf("services:    %s (%s from the API)\n", str(r["services"]).c_str(),
              str(r["servicesFromApi"]).c_str());
  std::printf("reloads:     %s ok, %s failed\n", str(r["reloads"]["ok"]).c_str(),
              str(r["reloads"]["failed"]).c_str());
  for (const auto& e : r["reloads"]["lastErrors"]) {
    std::printf("  last reload error: %s\n", str(e).c_str());
  }
  std::printf("workers:     %zu\n", r["workers"].size());
  for (const auto& p : r["ports"]) {
    std::printf("port %s:    %s %s mtu %s\n", str(p["name"]).c_str(), str(p["device"]).c_str(),
                str(p["address"]).c_str(), str(p["mtu"]).c_str());
  }
}

std::string read_input(const std::string& file) {
  std::stringstream buf;
  if (file == "-") {
    buf << std::cin.rdbuf();
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Failure{"cannot read " + file};
    buf << in.rdbuf();
  }
  return buf.str();
}

// (name, JSON body) of every Service in the file.
std::vector<std::pair<std::string, json>> services_in(const std::string& file,
                                                      const std::string& text) {
  std::vector<std::pair<std::string, json>> out;
  if (l4lb::config::looks_like_kubernetes(text)) {
    auto r = l4lb::config::load_kubernetes_string(text, file);
    for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    if (!r.ok()) {
      std::string text_errors;
      for (const auto& e : r.errors)
        text_errors += (text_errors.empty() ? "" : "\n") + e.to_string();
      throw Failure{text_errors + "\nnothing applied"};
    }
    for (const auto& s : r.services) out.emplace_back(s.name, l4lb::api::service_json(s));
    return out;
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Failure{file + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg};
  }
  if (!root.IsMap() || !root["services"]) {
    throw Failure{file +
                  ": neither an l4lb file with services: nor Kubernetes manifests "
                  "(kind/apiVersion)"};
  }
  if (root["dataplane"] || root["control"]) {
    std::fprintf(stderr,
                 "warning: %s: only services are applied; dataplane and control need "
                 "the file itself (SIGHUP or a restart)\n",
                 file.c_str());
  }
  const YAML::Node services = root["services"];
  if (!services.IsSequence()) throw Failure{file + ": services must be a list"};
  for (size_t i = 0; i < services.size(); ++i) {
    const YAML::Node s = services[i];
    if (!s.IsMap() || !s["name"] || !s["name"].IsScalar()) {
      throw Failure{file + ":" + std::to_string(s.Mark().line + 1) + ": services[" +
                    std::to_string(i) + "]: a Service needs a name"};
    }
    out.emplace_back(s["name"].Scalar(), l4lb::api::yaml_to_json(s));
  }
  return out;
}

int apply(Api& api, const Options& o, const std::string& file) {
  auto services = services_in(file, read_input(file));
  int failed = 0;
  json results = json::array();
  for (const auto& [name, body] : services) {
    try {
      json r = api.call("PUT", "/v1/services/" + name, body.dump());
      results.push_back({{"service", name}, {"generation", r["generation"]}});
      if (o.output != "json") {
        std::printf("service/%s applied (generation %s)\n", name.c_str(),
                    str(r["generation"]).c_str());
      }
    } catch (const Failure& f) {
      ++failed;
      results.push_back({{"service", name}, {"error", f.message}});
      std::fprintf(stderr, "l4lbctl: %s\n", f.message.c_str());
    }
  }
  if (o.output == "json") std::printf("%s\n", results.dump(2).c_str());
  if (services.empty()) std::fprintf(stderr, "l4lbctl: %s holds no Service\n", file.c_str());
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"l4lbctl: control a running l4lbd through its REST API"};
  app.require_subcommand(1);
  app.fallthrough();
  Options o;
  app.add_option("--server", o.server, "l4lbd API URL")->capture_default_str();
  app.add_option("--token-file", o.token_file, "file holding the API bearer token");
  app.add_option("-o,--output", o.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.set_version_flag("--version", "l4lbctl " L4LB_VERSION);

  auto* get = app.add_subcommand("get", "show services, backends or flows");
  std::string what;
  unsigned limit = l4lb::api::kDefaultFlowLimit;
  get->add_option("what", what, "services | backends | flows")
      ->required()
      ->check(CLI::IsMember({"services", "service", "svc", "backends", "flows"}));
  get->add_option("--limit", limit, "flows: at most this many entries")
      ->check(CLI::Range(1u, l4lb::api::kMaxFlowLimit));
  auto* apply_cmd = app.add_subcommand("apply", "create or replace the Services in a file");
  std::string file;
  apply_cmd->add_option("-f,--filename", file, "our YAML or Kubernetes manifests; - for stdin")
      ->required();
  auto* del = app.add_subcommand("delete", "delete a Service");
  std::string kind, name;
  del->add_option("kind", kind, "service")->required()->check(CLI::IsMember({"service", "svc"}));
  del->add_option("name", name, "Service name")->required();
  auto* reload = app.add_subcommand("reload", "re-read l4lbd's config file (drops API edits)");
  auto* status_cmd = app.add_subcommand("status", "version, uptime, generation, workers, ports");
  auto* trace_cmd = app.add_subcommand("trace", "what the data path does with a packet, step by step");
  std::string t_proto = "tcp", t_src, t_dst, t_port, t_flags = "syn";
  unsigned t_sport = 0, t_dport = 0;
  trace_cmd->add_option("--proto", t_proto, "tcp or udp")->check(CLI::IsMember({"tcp", "udp"}));
  trace_cmd->add_option("--src", t_src, "source address")->required();
  trace_cmd->add_option("--sport", t_sport, "source port")->required()->check(CLI::Range(1u, 65535u));
  trace_cmd->add_option("--dst", t_dst, "destination address")->required();
  trace_cmd->add_option("--dport", t_dport, "destination port")->required()->check(CLI::Range(1u, 65535u));
  trace_cmd->add_option("--port", t_port, "ingress port name (default: the first)");
  trace_cmd->add_option("--flags", t_flags, "TCP flags: syn (a new connection) or ack")
      ->check(CLI::IsMember({"syn", "ack"}));
  auto* capture_cmd = app.add_subcommand(
      "capture", "record the packets of a Service, or those dropped for a reason, as a pcap");
  std::string c_service, c_port, c_reason, c_direction, c_proto, c_write, c_server_file;
  unsigned c_count = 1000, c_seconds = 10, c_snaplen = 2048;
  capture_cmd->add_option("--service", c_service, "Service name");
  capture_cmd->add_option("--service-port", c_port, "one port of the Service, by name");
  capture_cmd->add_option("--reason", c_reason, "drop reason label (l4lb_drops_total), or any");
  capture_cmd->add_option("--direction", c_direction, "to_backend, from_backend or both");
  capture_cmd->add_option("--proto", c_proto, "tcp or udp");
  capture_cmd->add_option("--count", c_count, "stop after this many packets")->capture_default_str();
  capture_cmd->add_option("--seconds", c_seconds, "stop after this long")->capture_default_str();
  capture_cmd->add_option("--snaplen", c_snaplen, "bytes kept of each packet")->capture_default_str();
  auto* c_write_opt = capture_cmd->add_option("-w,--write", c_write, "pcap file to write; - for stdout");
  auto* c_server_opt =
      capture_cmd->add_option("--server-file", c_server_file, "have l4lbd write the pcap there instead");
  c_write_opt->excludes(c_server_opt);
  CLI11_PARSE(app, argc, argv);

  try {
    Api api(o);
    if (get->parsed()) {
      if (what == "backends") {
        get_backends(api, o);
      } else if (what == "flows") {
        get_flows(api, o, limit);
      } else {
        get_services(api, o);
      }
    } else if (apply_cmd->parsed()) {
      return apply(api, o, file);
    } else if (del->parsed()) {
      json r = api.call("DELETE", "/v1/services/" + name);
      if (o.output == "json") {
        std::printf("%s\n", r.dump(2).c_str());
      } else {
        std::printf("service/%s deleted (generation %s)\n", name.c_str(),
                    str(r["generation"]).c_str());
      }
    } else if (reload->parsed()) {
      json r = api.call("POST", "/v1/reload");
      if (o.output == "json") {
        std::printf("%s\n", r.dump(2).c_str());
      } else {
        std::printf("reloaded: generation %s\n", str(r["generation"]).c_str());
      }
    } else if (status_cmd->parsed()) {
      status(api, o);
    } else if (capture_cmd->parsed()) {
      if (c_write.empty() && c_server_file.empty()) {
        throw Failure{"capture: give -w FILE (or - for stdout) or --server-file PATH"};
      }
      json body = {{"count", c_count}, {"seconds", c_seconds}, {"snaplen", c_snaplen}};
      if (!c_service.empty()) body["service"] = c_service;
      if (!c_port.empty()) body["servicePort"] = c_port;
      if (!c_reason.empty()) body["reason"] = c_reason;
      if (!c_direction.empty()) body["direction"] = c_direction;
      if (!c_proto.empty()) body["proto"] = c_proto;
      if (!c_server_file.empty()) body["file"] = c_server_file;
      httplib::Result res = api.post_raw("/v1/capture", body.dump(), static_cast<int>(c_seconds) + 30);
      if (!c_server_file.empty()) {
        json r = json::parse(res->body, nullptr, false);
        if (o.output == "json" || r.is_discarded()) {
          std::printf("%s\n", res->body.c_str());
        } else {
          std::fprintf(stderr, "%s packets captured, %s missed: %s (on the server)\n",
                       str(r["packets"]).c_str(), str(r["missed"]).c_str(), c_server_file.c_str());
        }
        return 0;
      }
      if (c_write == "-") {
        std::fwrite(res->body.data(), 1, res->body.size(), stdout);
      } else {
        std::ofstream out(c_write, std::ios::binary);
        out.write(res->body.data(), static_cast<std::streamsize>(res->body.size()));
        if (!out.flush()) throw Failure{"capture: cannot write " + c_write};
      }
      std::fprintf(stderr, "%s packets captured, %s missed: %s\n",
                   res->get_header_value("X-Capture-Packets").c_str(),
                   res->get_header_value("X-Capture-Missed").c_str(), c_write.c_str());
    } else if (trace_cmd->parsed()) {
      std::string q = "/v1/trace?proto=" + t_proto + "&src=" + t_src + "&sport=" +
                      std::to_string(t_sport) + "&dst=" + t_dst + "&dport=" +
                      std::to_string(t_dport) + "&flags=" + t_flags;
      if (!t_port.empty()) q += "&port=" + t_port;
      json r = api.call("GET", q);
      if (o.output == "json") {
        std::printf("%s\n", r.dump(2).c_str());
      } else {
        for (const auto& step : r["steps"]) {
          std::string line;
          for (const auto& [k, v] : step.items()) {
            if (k == "step") continue;
            line += " " + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
          }
          std::printf("%-13s%s\n", step["step"].get<std::string>().c_str(), line.c_str());
        }
        std::printf("verdict      %s%s\n", r["verdict"].get<std::string>().c_str(),
                    r.contains("dropReason")
                        ? (" (" + r["dropReason"].get<std::string>() + ")").c_str()
                        : "");
      }
    }
  } catch (const Failure& f) {
    std::fprintf(stderr, "l4lbctl: %s\n", f.message.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "l4lbctl: unexpected answer: %s\n", e.what());
    return 1;
  }
  return 0;
}
