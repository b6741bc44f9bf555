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

namespace l4lb::config {

// All addresses below are IPv4 in host byte order (10.0.0.1 == 0x0a000001).

struct FlowTableConfig {
  uint32_t capacity = 1048576;
  uint32_t tcp_timeout_s = 3600;
  uint32_t tcp_transitory_timeout_s = 30;
  uint32_t udp_timeout_s = 60;
};

struct PortConfig {
  std::string name;
  std::string device;  // DPDK devargs or PCI address, passed to EAL as written
  Ipv4Prefix address;  // the port's own IP with its subnet length (host bits kept)
  uint32_t mtu = 1500;
  std::optional<MacAddr> mac;  // absent: keep the device's MAC
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
  std::vector<PortConfig> ports;
  std::vector<RouteConfig> routes;
  std::vector<NeighborConfig> neighbors;
};

struct ListenConfig {
  std::string host;  // dotted quad ("localhost" is stored as 127.0.0.1)
  uint16_t port = 0;
};

struct ControlConfig {
  ListenConfig api{"127.0.0.1", 9180};
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
};

struct ServicePortConfig {
  std::string name;  // may be empty when the Service has a single port
  Protocol protocol = Protocol::kTcp;
  uint16_t port = 0;
  uint16_t target_port = 0;  // defaults to port, as in Kubernetes
  int line = 0;
};

struct BackendConfig {
  uint32_t ip = 0;
  uint32_t weight = 1;  // 0 = no new flows (drain)
  int line = 0;
};

struct ServiceConfig {
  std::string name;
  uint32_t vip = 0;
  std::vector<ServicePortConfig> ports;
  std::vector<Ipv4Prefix> source_ranges;  // empty = every source allowed
  SessionAffinity session_affinity = SessionAffinity::kNone;
  std::optional<HealthCheckConfig> health_check;  // absent: backends are always ready
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

}  // namespace l4lb::config
