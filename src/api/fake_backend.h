// An ApiBackend without DPDK for handlers_test.cc and fuzz/fuzz_api.cc: Control's edits
// with the real checks (src/service_edit.h) on an in-memory config, and canned worker
// answers. Never fails internally, so it never produces a 5xx.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "src/api/handlers.h"
#include "src/api/render.h"

namespace l4lb::api {

// Two ports, a small Maglev table (fast to validate), two Services.
inline config::Config fake_running_config() {
  static const char* const kYaml = R"(
dataplane:
  maglevTableSize: 101
  flowTable: {capacity: 1024}
  ports:
    - {name: wan, device: "net_null0", address: 10.0.0.1/24}
    - {name: lan, device: "net_null1", address: 10.4.0.1/16}
  routes:
    - {prefix: 10.8.0.0/16, via: 10.4.0.254}
services:
  - name: web
    vip: 10.0.0.100
    ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}, {name: dns, protocol: UDP, port: 53}]
    loadBalancerSourceRanges: [203.0.113.0/24]
    healthCheck: {type: http, path: /ready}
    backends: [{ip: 10.4.1.11}, {ip: 10.4.1.12, weight: 0}]
  - name: dns
    vip: 10.0.0.101
    ports: [{protocol: UDP, port: 53}]
    backends: [{ip: 10.8.1.1}]
)";
  config::LoadResult r = config::load_config_string(kYaml, "fake.yaml");
  if (!r.ok()) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::abort();
  }
  return std::move(*r.config);
}

class FakeBackend final : public ApiBackend {
 public:
  explicit FakeBackend(const config::Config& running)
      : file_(running), running_(running), sources_(running.services.size(), ServiceSource::kFile) {
    for (size_t i = 0; i < running.dataplane.ports.size(); ++i) {
      PortInfo p;
      p.name = running.dataplane.ports[i].name;
      p.device = running.dataplane.ports[i].device;
      p.port_id = static_cast<uint16_t>(i);
      ports_.push_back(std::move(p));
    }
  }

  ControlView view() const override {
    ControlView v;
    v.running = running_;
    v.sources = sources_;
    v.generation = generation_;
    v.api_changes = api_changes_;
    return v;
  }
  ChangeResult put_service(const std::string& name, std::string_view document) override {
    return apply(plan_put_service(running_, sources_, name, document));
  }
  ChangeResult delete_service(const std::string& name) override {
    return apply(plan_delete_service(running_, sources_, name));
  }
  ChangeResult reload_file() override {
    running_ = file_;
    sources_.assign(running_.services.size(), ServiceSource::kFile);
    return {ChangeStatus::kOk, {}, ++generation_};
  }
  const std::vector<PortInfo>& ports() const override { return ports_; }
  std::vector<unsigned> worker_lcores() const override { return {1, 2}; }
  Response backends(const ControlView& v) override {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& svc : v.running.services) {
      for (const auto& b : svc.backends) {
        list.push_back({{"service", svc.name}, {"ip", format_ipv4(b.ip)}, {"weight", b.weight}});
      }
    }
    return json_reply(200, {{"generation", v.generation}, {"backends", list}});
  }
  Response trace(const TraceRequest& r) override {
    last_trace = r;
    return json_reply(200, {{"verdict", "drop"}, {"inPort", r.in_port}});
  }
  Response flows(uint32_t limit) override {
    last_flow_limit = limit;
    return json_reply(200, {{"limit", limit}, {"flows", nlohmann::json::array()}});
  }

  const config::Config& running() const { return running_; }
  TraceRequest last_trace;
  uint32_t last_flow_limit = 0;

 private:
  ChangeResult apply(ServiceEdit edit) {
    if (edit.result.applied()) {
      running_ = std::move(edit.next);
      sources_ = std::move(edit.sources);
      ++generation_;
      ++api_changes_;
    }
    edit.result.generation = generation_;
    return std::move(edit.result);
  }

  config::Config file_;
  config::Config running_;
  std::vector<ServiceSource> sources_;
  std::vector<PortInfo> ports_;
  uint64_t generation_ = 1;
  uint64_t api_changes_ = 0;
};

}  // namespace l4lb::api
