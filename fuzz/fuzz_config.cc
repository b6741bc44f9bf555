// libFuzzer target: arbitrary bytes as the YAML config file. The loader must never throw or
// crash; a failure lists errors with a line >= 0 and a message; a success obeys the schema
// (conf/schema.md) in the ranges the data path relies on, and, when its Maglev tables are
// small enough to build per input, gives a ServiceTable (whose constructor trusts its input).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "lb/flow_table.h"
#include "lb/prime.h"
#include "lb/service_table.h"
#include "src/config/config.h"

using namespace l4lb;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_config invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond)           \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (0)

bool unicast(uint32_t ip) {
  const uint32_t first = ip >> 24;
  return first != 0 && first != 127 && first < 224;
}

void check_valid(const config::Config& c) {
  const auto& dp = c.dataplane;
  CHECK(c.file == "fuzz.yaml");
  CHECK(!dp.workers.empty());
  CHECK(std::set<unsigned>(dp.workers.begin(), dp.workers.end()).size() == dp.workers.size());
  for (unsigned w : dp.workers) CHECK(w <= 1023);
  CHECK(dp.flow_table.capacity >= 1024 && dp.flow_table.capacity <= kMaxFlowCapacity);
  for (uint32_t t : {dp.flow_table.tcp_timeout_s, dp.flow_table.tcp_transitory_timeout_s,
                     dp.flow_table.udp_timeout_s}) {
    CHECK(t >= 1 && t <= 604800);
  }
  CHECK(is_prime(dp.maglev_table_size));
  CHECK(dp.maglev_table_size >= 101 && dp.maglev_table_size <= 16777216);
  CHECK(!dp.ports.empty());
  for (const auto& p : dp.ports) {
    CHECK(!p.name.empty() && !p.device.empty());
    CHECK(p.mtu >= 68 && p.mtu <= 9216);
    CHECK(unicast(p.address.addr) && p.address.len >= 1 && p.address.len <= 32);
    if (p.mac) CHECK(!p.mac->is_multicast());
  }
  for (const auto& n : dp.neighbors) CHECK(unicast(n.ip) && !n.mac.is_multicast());
  std::set<std::tuple<uint32_t, uint8_t, uint16_t>> frontends;
  std::set<std::string> names;
  for (const auto& s : c.services) {
    CHECK(!s.name.empty() && names.insert(s.name).second);
    CHECK(unicast(s.vip));
    CHECK(!s.ports.empty());
    for (const auto& p : s.ports) {
      CHECK(p.protocol == config::Protocol::kTcp || p.protocol == config::Protocol::kUdp);
      CHECK(p.port >= 1 && p.target_port >= 1);
      CHECK(frontends.insert({s.vip, static_cast<uint8_t>(p.protocol), p.port}).second);
    }
    std::set<uint32_t> ips;
    for (const auto& b : s.backends) {
      CHECK(unicast(b.ip) && b.ip != s.vip && ips.insert(b.ip).second);
      CHECK(b.weight <= 1000);
    }
    CHECK(dp.maglev_table_size >= 10 * s.backends.size());
    for (const auto& r : s.source_ranges) CHECK(r.len <= 32 && r.addr == r.network());
  }
  for (const auto& r : dp.routes) CHECK(r.prefix.len <= 32 && r.prefix.addr == r.prefix.network());

  // The data path's view of the Services, as the control thread builds it. Per input only
  // while cheap: a 65537-slot table per Service would make each run take milliseconds.
  if (dp.maglev_table_size > 1009 || c.services.size() > 8) return;
  std::vector<ServiceSpec> specs;
  for (const auto& s : c.services) {
    ServiceSpec spec;
    spec.name = s.name;
    spec.vip = s.vip;
    for (const auto& p : s.ports) {
      ServicePortSpec ps;
      ps.name = p.name;
      ps.proto = static_cast<uint8_t>(p.protocol);
      ps.port = p.port;
      ps.target_port = p.target_port;
      spec.ports.push_back(ps);
    }
    spec.source_ranges = s.source_ranges;
    spec.client_ip_affinity = s.session_affinity == config::SessionAffinity::kClientIp;
    for (const auto& b : s.backends) {
      BackendSpec bs;
      bs.ip = b.ip;
      bs.weight = b.weight;
      spec.backends.push_back(bs);
    }
    specs.push_back(std::move(spec));
  }
  ServiceTable table(specs, dp.maglev_table_size);
  size_t n_ports = 0;
  for (const auto& s : c.services) {
    for (const auto& p : s.ports) {
      ++n_ports;
      const ServicePort* sp =
          table.find(hton32(s.vip), static_cast<uint8_t>(p.protocol), hton16(p.port));
      CHECK(sp != nullptr && sp->target_port_be == hton16(p.target_port));
      CHECK(table.is_vip(hton32(s.vip)));
    }
  }
  CHECK(table.size() == n_ports);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  config::LoadResult r;
  try {
    r = config::load_config_string(text, "fuzz.yaml");
  } catch (...) {
    fail("load_config_string threw");
  }
  if (r.ok()) {
    CHECK(r.errors.empty());
    check_valid(*r.config);
    return 0;
  }
  CHECK(!r.errors.empty());
  int last_line = 0;
  for (const auto& e : r.errors) {
    CHECK(e.line >= 0);
    CHECK(!e.message.empty());
    CHECK(e.file == "fuzz.yaml");
    CHECK(e.line >= last_line);  // sorted by line (schema.md: "sorted by line")
    last_line = e.line;
    CHECK(!e.to_string().empty());
  }
  return 0;
}
