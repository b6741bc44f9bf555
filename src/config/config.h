// The l4lbd configuration file: the typed model of the YAML schema (conf/schema.md) and the
// loader that parses and validates a whole file, reporting every mistake with its line.
// Control thread only (allocates; never called from a worker).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lb/cidr.h"
#include "nat/headers.h"
#include "src/log.h"

namespace l4lb::config {

// All addresses below are IPv4 in host byte order (10.0.0.1 == 0x0a000001).

struct FlowTableConfig {
  uint32_t capacity = 1048576;
  uint32_t tcp_timeout_s = 3600;
  uint32_t tcp_transitory_timeout_s = 30;
  uint32_t udp_timeout_s = 60;
};

// dataplane.fragments: each worker's table of IPv4 datagrams in flight (lb/frag_table).
struct FragmentConfig {
  uint32_t datagrams = 1024;     // datagrams tracked at once
  uint32_t held_fragments = 256; // later fragments held until their first arrives
  uint32_t timeout_s = 5;
};

struct PortConfig {
  std::string name;
  // DPDK devargs or PCI address, passed to EAL as written; or the MAC address of a PCI NIC
  // bound to a DPDK driver (l4lbd then probes every such NIC and picks it by its MAC).
  std::string device;
  Ipv4Prefix address;  // the port's own IP with its subnet length (host bits kept)
  uint32_t mtu = 1500;
  std::optional<MacAddr> mac;  // absent: keep the device's MAC
  // Receive every unicast frame (rte_eth_promiscuous_enable), e.g. behind a hypervisor
  // that forwards another MAC to us; false: the NIC filters on the port's own MAC.
  bool promiscuous = false;
  // Kernel twin (exception path): a TAP interface of this name carries the port's address
  // for the host's own traffic (ping, ssh, health probes). Empty: no twin.
  std::string tap;
  int line = 0;
};

struct RouteConfig {
  Ipv4Prefix prefix;  // host bits clear
  uint32_t via = 0;   // next hop; 0 = directly connected
  int line = 0;
};

struct NeighborConfig {
  uint32_t ip = 0;
  MacAddr mac{};
  int line = 0;
};

struct DataplaneConfig {
  std::vector<std::string> eal;      // extra EAL args
  std::vector<unsigned> workers{1};  // lcore ids
  FlowTableConfig flow_table;
  uint32_t maglev_table_size = 65537;  // YAML key: dataplane.maglevTableSize
  bool answer_vip_pings = true;        // dataplane.answerVipPings
  uint32_t icmp_errors_per_s = 100;    // dataplane.icmpErrorsPerSecond, per worker; 0 = none
  FragmentConfig fragments;            // dataplane.fragments, per worker
  std::vector<PortConfig> ports;
  std::vector<RouteConfig> routes;
  std::vector<NeighborConfig> neighbors;
};

struct ListenConfig {
  std::string host;  // dotted quad ("localhost" is stored as 127.0.0.1)
  uint16_t port = 0;
};

// control.log: levels per module (rte_log types l4lb.<module>) and the data path's budget.
struct LogConfig {
  LogLevel level = LogLevel::kInfo;
  std::vector<std::pair<LogModule, LogLevel>> modules;  // overrides of `level`
  uint32_t data_path_lines_per_second = 10;             // per worker
};

struct ControlConfig {
  LogConfig log;
  ListenConfig api{"127.0.0.1", 9180};
  std::string api_token_file;  // control.api.tokenFile; empty: the API takes no token
  ListenConfig metrics{"0.0.0.0", 9100};
};

enum class Protocol : uint8_t { kTcp = 6, kUdp = 17 };
enum class SessionAffinity : uint8_t { kNone, kClientIp };
enum class HealthCheckType : uint8_t { kNone, kTcp, kHttp };

struct HealthCheckConfig {
  HealthCheckType type = HealthCheckType::kTcp;
  uint16_t port = 0;  // 0 = the Service port's targetPort
  std::string path = "/healthz";
  uint32_t interval_ms = 2000;
  uint32_t timeout_ms = 1000;
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  std::vector<int> expect_codes;  // http: empty = any 2xx
  std::string host;               // http Host header; empty = "ip:port"
};

struct ServicePortConfig {
  std::string name;  // may be empty when the Service has a single port
  Protocol protocol = Protocol::kTcp;
  uint16_t port = 0;
  uint16_t target_port = 0;  // defaults to port, as in Kubernetes
  // Nodes as backends (GKE external passthrough NLB): DNAT to backend:nodePort instead.
  uint16_t node_port = 0;
  int line = 0;
};

struct BackendConfig {
  uint32_t ip = 0;
  uint32_t weight = 1;  // 0 = no new flows (drain)
  int line = 0;
};

// What new flows do when no backend passes its health check.
enum class AllUnhealthy : uint8_t { kSpread, kDrop, kReject };

struct ServiceConfig {
  std::string name;
  uint32_t vip = 0;
  std::vector<ServicePortConfig> ports;
  std::vector<Ipv4Prefix> source_ranges;  // empty = every source allowed
  SessionAffinity session_affinity = SessionAffinity::kNone;
  std::optional<HealthCheckConfig> health_check;  // absent: backends are always ready
  // spread: as cloud passthrough LBs, over every backend; drop; reject: TCP RST / ICMP
  // port unreachable, as kube-proxy does for a Service without endpoints.
  AllUnhealthy all_unhealthy = AllUnhealthy::kSpread;
  bool unhealthy_flows_repick = true;  // flows pinned to a backend that turned unhealthy
  bool external_traffic_local = false;  // Local: nodes answer healthCheckNodePort/healthz
  uint16_t health_check_node_port = 0;
  std::vector<BackendConfig> backends;
  int line = 0;
};

struct Config {
  DataplaneConfig dataplane;
  ControlConfig control;
  std::vector<ServiceConfig> services;
  std::string file;  // as given to the loader
};

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 when the error has no line (file unreadable)
  std::string message;
  std::string to_string() const;  // "file:line: message"
};

// Either a valid config (and no errors) or every error found, sorted by line.
struct LoadResult {
  std::optional<Config> config;
  std::vector<ConfigError> errors;
  bool ok() const { return config.has_value(); }
};

// Never throw. A file that cannot be read gives one error at line 0.
LoadResult load_config_file(const std::string& path);
LoadResult load_config_string(std::string_view yaml, const std::string& file_name);

// One mistake in a single Service document (the REST API's PUT body): `field` is the path
// inside the Service ("vip", "ports[0].port"; empty for the document itself), `message` the
// loader's text including that path, exactly as in a file ("vip: ... is not ...").
struct FieldError {
  std::string field;
  std::string message;
  int line = 0;
};

struct ServiceLoadResult {
  std::optional<ServiceConfig> service;
  std::vector<FieldError> errors;  // sorted by line
  bool ok() const { return service.has_value(); }
};

// Parses and validates one Service (YAML, or JSON, which is YAML) with the same checks and
// messages as a `services[]` entry of a file, against the running data plane (port
// addresses, routes, Maglev size). Never throws.
ServiceLoadResult load_service_string(std::string_view yaml, const DataplaneConfig& dataplane);

// The first Service port of `candidate` whose (protocol, VIP, port) a Service in `others`
// (other than one named like the candidate) already exposes; field is "ports[j]", message
// as the file loader words it.
std::optional<FieldError> find_exposure_conflict(const std::vector<ServiceConfig>& others,
                                                 const ServiceConfig& candidate);

// Cross-Service rules of a Config assembled in memory (not read from a file): unique and
// valid names, no (protocol, VIP, port) exposed twice, Maglev size for each backend list.
// Fields are "services[i]...". Empty: valid.
std::vector<FieldError> validate_services(const Config& config);

}  // namespace l4lb::config
