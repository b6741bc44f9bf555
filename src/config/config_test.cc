#include "src/config/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace l4lb::config {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> yaml_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<std::string> error_lines(const LoadResult& r) {
  std::vector<std::string> lines;
  for (const ConfigError& e : r.errors) lines.push_back(e.to_string());
  return lines;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += "\n  " + l;
  return s;
}

// The "# expect: " lines at the top of an invalid example.
std::vector<std::string> expectations(const std::string& text) {
  std::vector<std::string> expected;
  std::istringstream in(text);
  std::string line;
  const std::string prefix = "# expect: ";
  while (std::getline(in, line) && line.rfind(prefix, 0) == 0) {
    expected.push_back(line.substr(prefix.size()));
  }
  return expected;
}

// Only the errors of a string that should fail.
std::vector<std::string> errors_of(std::string_view yaml) {
  LoadResult r = load_config_string(yaml, "t.yaml");
  EXPECT_FALSE(r.ok());
  return error_lines(r);
}

constexpr char kMinimal[] = R"(dataplane:
  ports:
    - {name: eth0, device: net_null0, address: 10.0.0.1/24}
)";

TEST(ConfigExamples, EveryExampleLoads) {
  auto files = yaml_files(fs::path(L4LB_CONF_DIR) / "examples");
  ASSERT_FALSE(files.empty()) << "no examples in " << L4LB_CONF_DIR << "/examples";
  for (const fs::path& f : files) {
    LoadResult r = load_config_file(f.string());
    EXPECT_TRUE(r.ok()) << f << joined(error_lines(r));
    EXPECT_TRUE(r.errors.empty()) << f;
    if (r.ok()) {
      EXPECT_EQ(r.config->file, f.string());
    }
  }
}

TEST(ConfigExamples, EveryInvalidExampleFailsWithItsExpectedErrors) {
  auto files = yaml_files(fs::path(L4LB_CONF_DIR) / "invalid");
  ASSERT_GE(files.size(), 15u);
  bool several = false;
  for (const fs::path& f : files) {
    std::string text = read_text(f);
    std::vector<std::string> expected = expectations(text);
    ASSERT_FALSE(expected.empty()) << f << " has no '# expect: ' first line";
    several = several || expected.size() >= 3;
    LoadResult r = load_config_string(text, f.filename().string());
    EXPECT_FALSE(r.ok()) << f;
    EXPECT_EQ(error_lines(r), expected)
        << f << "\ngot:" << joined(error_lines(r)) << "\nexpected:" << joined(expected);
  }
  EXPECT_TRUE(several) << "no invalid example shows several errors at once";
}

TEST(ConfigLoad, AppliesDefaults) {
  LoadResult r = load_config_string(kMinimal, "min.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  const Config& c = *r.config;
  EXPECT_EQ(c.file, "min.yaml");
  EXPECT_TRUE(c.dataplane.eal.empty());
  EXPECT_EQ(c.dataplane.workers, std::vector<unsigned>{1});
  EXPECT_EQ(c.dataplane.flow_table.capacity, 1048576u);
  EXPECT_EQ(c.dataplane.flow_table.tcp_timeout_s, 3600u);
  EXPECT_EQ(c.dataplane.flow_table.tcp_transitory_timeout_s, 30u);
  EXPECT_EQ(c.dataplane.flow_table.udp_timeout_s, 60u);
  EXPECT_EQ(c.dataplane.maglev_table_size, 65537u);
  ASSERT_EQ(c.dataplane.ports.size(), 1u);
  EXPECT_EQ(c.dataplane.ports[0].mtu, 1500u);
  EXPECT_FALSE(c.dataplane.ports[0].mac.has_value());
  EXPECT_TRUE(c.dataplane.routes.empty());
  EXPECT_TRUE(c.dataplane.neighbors.empty());
  EXPECT_EQ(c.control.api.host, "127.0.0.1");
  EXPECT_EQ(c.control.api.port, 9180);
  EXPECT_EQ(c.control.metrics.host, "0.0.0.0");
  EXPECT_EQ(c.control.metrics.port, 9100);
  EXPECT_TRUE(c.services.empty());
}

TEST(ConfigLoad, AppliesServiceDefaults) {
  std::string yaml = std::string(kMinimal) + R"(services:
  - name: web
    vip: 172.16.0.1
    ports: [{port: 80}]
    healthCheck: {}
    backends: [{ip: 10.0.0.2}]
  - name: nocheck
    vip: 172.16.0.2
    ports: [{port: 53, protocol: UDP}]
)";
  LoadResult r = load_config_string(yaml, "t.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  ASSERT_EQ(r.config->services.size(), 2u);
  const ServiceConfig& web = r.config->services[0];
  ASSERT_EQ(web.ports.size(), 1u);
  EXPECT_EQ(web.ports[0].name, "");
  EXPECT_EQ(web.ports[0].protocol, Protocol::kTcp);
  EXPECT_EQ(web.ports[0].port, 80);
  EXPECT_EQ(web.ports[0].target_port, 80);  // defaults to port, as in Kubernetes
  EXPECT_TRUE(web.source_ranges.empty());
  EXPECT_EQ(web.session_affinity, SessionAffinity::kNone);
  ASSERT_TRUE(web.health_check.has_value());
  EXPECT_EQ(web.health_check->type, HealthCheckType::kTcp);
  EXPECT_EQ(web.health_check->port, 0);
  EXPECT_EQ(web.health_check->path, "/healthz");
  EXPECT_EQ(web.health_check->interval_ms, 2000u);
  EXPECT_EQ(web.health_check->timeout_ms, 1000u);
  EXPECT_EQ(web.health_check->healthy_threshold, 2u);
  EXPECT_EQ(web.health_check->unhealthy_threshold, 3u);
  ASSERT_EQ(web.backends.size(), 1u);
  EXPECT_EQ(web.backends[0].weight, 1u);
  const ServiceConfig& nocheck = r.config->services[1];
  EXPECT_FALSE(nocheck.health_check.has_value());
  EXPECT_TRUE(nocheck.backends.empty());
  EXPECT_EQ(nocheck.ports[0].protocol, Protocol::kUdp);
}

TEST(ConfigLoad, EmptyOptionalSectionsMeanDefaults) {
  std::string yaml = std::string(kMinimal) + "  routes:\n  neighbors:\ncontrol:\nservices:\n";
  LoadResult r = load_config_string(yaml, "t.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  EXPECT_TRUE(r.config->services.empty());
  EXPECT_EQ(r.config->control.api.port, 9180);
}

TEST(ConfigLoad, HostileInputKeys) {
  LoadResult d = load_config_string(kMinimal, "t.yaml");
  ASSERT_TRUE(d.ok()) << joined(error_lines(d));
  EXPECT_TRUE(d.config->dataplane.answer_vip_pings);
  EXPECT_EQ(d.config->dataplane.icmp_errors_per_s, 100u);
  LoadResult r = load_config_string(std::string(kMinimal) +
                                        "  answerVipPings: false\n  icmpErrorsPerSecond: 0\n",
                                    "t.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  EXPECT_FALSE(r.config->dataplane.answer_vip_pings);
  EXPECT_EQ(r.config->dataplane.icmp_errors_per_s, 0u);
  EXPECT_EQ(errors_of(std::string(kMinimal) + "  answerVipPings: \"true\"\n"),
            (std::vector<std::string>{
                "t.yaml:4: dataplane.answerVipPings: expected true or false, got \"true\""}));
}

TEST(ConfigLoad, FragmentTableKeys) {
  LoadResult d = load_config_string(kMinimal, "t.yaml");
  ASSERT_TRUE(d.ok()) << joined(error_lines(d));
  EXPECT_EQ(d.config->dataplane.fragments.datagrams, 1024u);
  EXPECT_EQ(d.config->dataplane.fragments.held_fragments, 256u);
  EXPECT_EQ(d.config->dataplane.fragments.timeout_s, 5u);
  LoadResult r = load_config_string(
      std::string(kMinimal) +
          "  fragments: {datagrams: 64, heldFragments: 0, timeoutSeconds: 2}\n",
      "t.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  EXPECT_EQ(r.config->dataplane.fragments.datagrams, 64u);
  EXPECT_EQ(r.config->dataplane.fragments.held_fragments, 0u);
  EXPECT_EQ(r.config->dataplane.fragments.timeout_s, 2u);
  auto errors = errors_of(std::string(kMinimal) +
                          "  fragments: {datagrams: 8, timeoutSeconds: 61, bogus: 1}\n");
  ASSERT_EQ(errors.size(), 3u) << joined(errors);
}

TEST(ConfigLoad, ParsesTheDesignExample) {
  LoadResult r = load_config_file(std::string(L4LB_CONF_DIR) + "/examples/two-arm.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  const Config& c = *r.config;
  const DataplaneConfig& dp = c.dataplane;
  EXPECT_EQ(dp.eal,
            (std::vector<std::string>{"--no-huge", "-m", "512", "--no-pci", "--no-shconf"}));
  ASSERT_EQ(dp.ports.size(), 2u);
  EXPECT_EQ(dp.ports[0].name, "wan");
  EXPECT_EQ(dp.ports[0].device, "net_af_packet0,iface=veth-wan");
  EXPECT_EQ(dp.ports[0].address, (Ipv4Prefix{0x0a000001, 24}));  // host bits kept
  EXPECT_EQ(dp.ports[0].mtu, 1460u);
  EXPECT_EQ(dp.ports[0].line, 8);
  ASSERT_TRUE(dp.ports[1].mac.has_value());
  EXPECT_EQ(*dp.ports[1].mac, (MacAddr{{0x02, 0, 0, 0, 0x01, 0x01}}));
  ASSERT_EQ(dp.routes.size(), 3u);
  EXPECT_EQ(dp.routes[0].prefix, (Ipv4Prefix{0, 0}));
  EXPECT_EQ(dp.routes[0].via, 0x0a0000feu);
  EXPECT_EQ(dp.routes[1].prefix, (Ipv4Prefix{0x0a040100, 24}));
  EXPECT_EQ(dp.routes[1].via, 0x0a800015u);
  EXPECT_EQ(dp.routes[1].line, 18);
  ASSERT_EQ(dp.neighbors.size(), 3u);
  EXPECT_EQ(dp.neighbors[0].ip, 0x0a0000feu);
  EXPECT_EQ(dp.neighbors[0].mac, (MacAddr{{0x02, 0, 0, 0, 0, 0xfe}}));
  EXPECT_EQ(c.control.metrics.host, "0.0.0.0");
  EXPECT_EQ(c.control.metrics.port, 9100);

  ASSERT_EQ(c.services.size(), 2u);
  const ServiceConfig& fe = c.services[0];
  EXPECT_EQ(fe.name, "frontend");
  EXPECT_EQ(fe.vip, 0xac100c64u);  // 172.16.12.100
  EXPECT_EQ(fe.line, 28);
  ASSERT_EQ(fe.ports.size(), 2u);
  EXPECT_EQ(fe.ports[0].name, "http");
  EXPECT_EQ(fe.ports[0].port, 80);
  EXPECT_EQ(fe.ports[0].target_port, 8080);
  EXPECT_EQ(fe.ports[0].line, 31);
  ASSERT_EQ(fe.source_ranges.size(), 2u);
  EXPECT_EQ(fe.source_ranges[0], (Ipv4Prefix{0xcb007100, 24}));
  ASSERT_TRUE(fe.health_check.has_value());
  EXPECT_EQ(fe.health_check->type, HealthCheckType::kHttp);
  EXPECT_EQ(fe.health_check->port, 8080);
  ASSERT_EQ(fe.backends.size(), 3u);
  EXPECT_EQ(fe.backends[2].ip, 0x0a04020cu);
  EXPECT_EQ(fe.backends[2].weight, 2u);
  EXPECT_EQ(fe.backends[2].line, 39);

  const ServiceConfig& dns = c.services[1];
  EXPECT_EQ(dns.session_affinity, SessionAffinity::kClientIp);
  EXPECT_EQ(dns.ports[0].protocol, Protocol::kUdp);
  EXPECT_EQ(dns.ports[0].target_port, 5353);
  EXPECT_EQ(dns.health_check->type, HealthCheckType::kTcp);
}

TEST(ConfigLoad, ListenAcceptsLocalhostAndPortZero) {
  std::string yaml = std::string(kMinimal) +
                     "control:\n  api: {listen: localhost:0}\n  metrics: {listen: 10.0.0.1:9000}\n";
  LoadResult r = load_config_string(yaml, "t.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  EXPECT_EQ(r.config->control.api.host, "127.0.0.1");
  EXPECT_EQ(r.config->control.api.port, 0);
  EXPECT_EQ(r.config->control.metrics.host, "10.0.0.1");
  EXPECT_EQ(r.config->control.metrics.port, 9000);
}

TEST(ConfigLoad, UnreadableFileIsAnErrorAtLineZero) {
  LoadResult r = load_config_file("/nonexistent/l4lb.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(error_lines(r),
            std::vector<std::string>{"/nonexistent/l4lb.yaml:0: cannot read file: No such file or "
                                     "directory"});
  LoadResult dir = load_config_file(L4LB_CONF_DIR);
  EXPECT_EQ(error_lines(dir), std::vector<std::string>{std::string(L4LB_CONF_DIR) +
                                                       ":0: cannot read file: Is a directory"});
}

TEST(ConfigLoad, EmptyFileNeedsADataplane) {
  EXPECT_EQ(errors_of(""), std::vector<std::string>{"t.yaml:1: dataplane: missing required key"});
  EXPECT_EQ(errors_of("# only a comment\n"),
            std::vector<std::string>{"t.yaml:1: dataplane: missing required key"});
}

TEST(ConfigLoad, TopLevelMustBeAMapping) {
  EXPECT_EQ(errors_of("- a\n- b\n"),
            std::vector<std::string>{"t.yaml:1: top level: expected a mapping, got a list"});
}

TEST(ConfigLoad, ErrorsAreSortedByLineEvenWhenFoundOutOfOrder) {
  // services is read after dataplane, but control (read in between) comes last in the file.
  std::string yaml = R"(services:
  - {name: Bad, vip: 172.16.0.1, ports: [{port: 80}]}
dataplane:
  maglevTableSize: 100
  ports:
    - {name: eth0, device: net_null0, address: 10.0.0.1/24}
control:
  api: {listen: nowhere}
)";
  EXPECT_EQ(errors_of(yaml),
            (std::vector<std::string>{
                "t.yaml:2: services[0].name: \"Bad\" is not a valid Service name (lowercase "
                "letters, digits and '-', starting with a letter, ending with a letter or digit, "
                "at most 63 characters)",
                "t.yaml:4: dataplane.maglevTableSize: 100 is too small (minimum 101)",
                "t.yaml:8: control.api.listen: \"nowhere\" is not host:port (like "
                "127.0.0.1:9180)"}));
}

TEST(ConfigLoad, NumbersAreStrict) {
  auto port_error = [](const std::string& value) {
    std::string yaml = std::string(kMinimal) +
                       "services:\n  - {name: a, vip: 172.16.0.1, ports: [{port: " + value +
                       "}]}\n";
    auto errors = errors_of(yaml);
    return errors.size() == 1 ? errors[0] : joined(errors);
  };
  const std::string at = "t.yaml:5: services[0].ports[0].port: ";
  EXPECT_EQ(port_error("0x50"), at + "\"0x50\" is not an integer");
  EXPECT_EQ(port_error("080"), at + "\"080\" is not an integer");
  EXPECT_EQ(port_error("8.0"), at + "\"8.0\" is not an integer");
  EXPECT_EQ(port_error("\"80\""), at + "\"80\" is a string, not an integer (remove the quotes)");
  EXPECT_EQ(port_error("-1"), at + "-1 is out of range 1-65535");
  EXPECT_EQ(port_error("99999999999999999999999"),
            at + "99999999999999999999999 is out of range 1-65535");
  EXPECT_EQ(port_error("[80]"), at + "expected an integer, got a list");
  EXPECT_EQ(port_error("~"), at + "expected an integer, got nothing");
}

TEST(ConfigLoad, PortAddressMustBeAHostOnItsSubnet) {
  auto address_error = [](const std::string& address) {
    std::string yaml =
        "dataplane:\n  ports:\n    - {name: p, device: d, address: " + address + "}\n";
    auto errors = errors_of(yaml);
    return errors.size() == 1 ? errors[0] : joined(errors);
  };
  const std::string at = "t.yaml:3: dataplane.ports[0].address: ";
  EXPECT_EQ(address_error("10.0.0.1"),
            at + "\"10.0.0.1\" is not an IPv4 CIDR (a port address needs a prefix length, like "
                 "10.0.0.1/24)");
  EXPECT_EQ(address_error("10.0.0.0/24"),
            at + "\"10.0.0.0/24\" is the subnet's network address, not a host");
  EXPECT_EQ(address_error("10.0.0.255/24"),
            at + "\"10.0.0.255/24\" is the subnet's broadcast address, not a host");
  EXPECT_EQ(address_error("10.0.0.1/0"), at + "\"10.0.0.1/0\" needs a prefix length of 1-32");
  EXPECT_EQ(address_error("127.0.0.1/8"), at + "127.0.0.1 is not a unicast address");
  for (const char* ok : {"10.0.0.0/31", "10.0.0.1/32", "192.168.1.254/24"}) {
    std::string yaml =
        std::string("dataplane:\n  ports:\n    - {name: p, device: d, address: ") + ok + "}\n";
    EXPECT_TRUE(load_config_string(yaml, "t.yaml").ok()) << ok;
  }
}

TEST(ConfigLoad, PortPromiscuousIsABooleanOffByDefault) {
  auto port = [](const std::string& extra) {
    return "dataplane:\n  ports:\n    - {name: p, device: \"0000:00:04.0\", address: "
           "10.0.0.1/24" + extra + "}\n";
  };
  LoadResult off = load_config_string(port(""), "t.yaml");
  ASSERT_TRUE(off.ok()) << joined(error_lines(off));
  EXPECT_FALSE(off.config->dataplane.ports[0].promiscuous);
  LoadResult on = load_config_string(port(", promiscuous: true"), "t.yaml");
  ASSERT_TRUE(on.ok()) << joined(error_lines(on));
  EXPECT_TRUE(on.config->dataplane.ports[0].promiscuous);
  LoadResult no = load_config_string(port(", promiscuous: false"), "t.yaml");
  ASSERT_TRUE(no.ok()) << joined(error_lines(no));
  EXPECT_FALSE(no.config->dataplane.ports[0].promiscuous);
  const std::string at = "t.yaml:3: dataplane.ports[0].promiscuous: ";
  EXPECT_EQ(errors_of(port(", promiscuous: yes")),
            std::vector<std::string>{at + "expected true or false, got \"yes\""});
  EXPECT_EQ(errors_of(port(", promiscuous: \"true\"")),
            std::vector<std::string>{at + "expected true or false, got \"true\""});
  EXPECT_EQ(errors_of(port(", promiscuous: [true]")),
            std::vector<std::string>{at + "expected true or false, got a list"});
}

TEST(ConfigLoad, APortDeviceMayBeAMacAddress) {
  LoadResult r = load_config_string(
      "dataplane:\n  ports:\n    - {name: p, device: \"42:01:0a:80:00:02\", address: "
      "10.0.0.1/24}\n",
      "t.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  EXPECT_EQ(r.config->dataplane.ports[0].device, "42:01:0a:80:00:02");
}

TEST(ConfigLoad, ControlListenConflicts) {
  std::string yaml = std::string(kMinimal) + "control:\n  metrics: {listen: 127.0.0.1:9180}\n";
  EXPECT_EQ(errors_of(yaml),
            std::vector<std::string>{
                "t.yaml:5: control.metrics.listen: 127.0.0.1:9180 is already used by control.api"});
}

TEST(ConfigLoad, APortWithAMistakeIsNotAlsoReportedAsExposedTwice) {
  std::string yaml = std::string(kMinimal) + R"(services:
  - name: a
    vip: 172.16.0.1
    ports:
      - 80
      - {name: a, protocol: TCP, port: 80}
      - {name: b, protocol: SCTP, port: 80}
      - {name: c, protocol: TCP, port: 80}
)";
  EXPECT_EQ(errors_of(yaml),
            (std::vector<std::string>{
                "t.yaml:8: services[0].ports[0]: expected a mapping, got \"80\"",
                "t.yaml:10: services[0].ports[2].protocol: \"SCTP\" is not supported (TCP or UDP)",
                "t.yaml:11: services[0].ports[3]: TCP 172.16.0.1:80 is already exposed by Service "
                "\"a\" port \"a\""}));
}

TEST(ConfigLoad, OneDocumentOnly) {
  std::string yaml = std::string(kMinimal) + "---\n" + kMinimal;
  EXPECT_EQ(
      errors_of(yaml),
      std::vector<std::string>{"t.yaml:5: only one YAML document is allowed (found a second one)"});
  // A leading "---" and an empty trailing document are still one document.
  EXPECT_TRUE(load_config_string(std::string("---\n") + kMinimal + "---\n", "t.yaml").ok());
}

// yaml-cpp 0.7 loops forever, allocating, when a document starts with ',' (yaml-cpp#1040).
TEST(ConfigLoad, StrayCommaIsASyntaxErrorNotAHang) {
  EXPECT_EQ(errors_of(", x\ndataplane: {}\n"),
            std::vector<std::string>{"t.yaml:1: YAML syntax error: unexpected \",\""});
  EXPECT_EQ(errors_of("- a\n, b\n"),
            std::vector<std::string>{"t.yaml:2: YAML syntax error: unexpected \",\""});
  EXPECT_EQ(errors_of(std::string(kMinimal) + "...\n  ,\n"),
            std::vector<std::string>{"t.yaml:5: YAML syntax error: unexpected \",\""});
}

TEST(ConfigLoad, NeverThrowsOnGarbage) {
  for (const char* garbage : {"\t\t:::\n", "{", "[", "\"", "a: b: c", "&a [*a]", "!!binary x",
                              "\xff\xfe\x00", "dataplane: [1, {2: 3}]"}) {
    LoadResult r = load_config_string(garbage, "g.yaml");
    EXPECT_FALSE(r.ok()) << garbage;
    EXPECT_FALSE(r.errors.empty()) << garbage;
  }
}

}  // namespace
}  // namespace l4lb::config

namespace l4lb::config {
namespace {

TEST(ConfigLoad, HealthCheckCodesHostAndPolicies) {
  LoadResult r = load_config_file(std::string(L4LB_CONF_DIR) + "/examples/two-arm.yaml");
  ASSERT_TRUE(r.ok());
  const ServiceConfig& web = r.config->services[0];
  ASSERT_TRUE(web.health_check.has_value());
  EXPECT_EQ(web.health_check->expect_codes, (std::vector<int>{200, 204}));
  EXPECT_EQ(web.health_check->host, "frontend.example");
  EXPECT_EQ(web.all_unhealthy, AllUnhealthy::kSpread);
  EXPECT_TRUE(web.unhealthy_flows_repick);

  LoadResult nodes = load_config_file(std::string(L4LB_CONF_DIR) + "/examples/nodes-local.yaml");
  ASSERT_TRUE(nodes.ok());
  const ServiceConfig& shop = nodes.config->services[0];
  EXPECT_TRUE(shop.external_traffic_local);
  EXPECT_EQ(shop.health_check_node_port, 32100);
  EXPECT_EQ(shop.ports[0].node_port, 31443);
  EXPECT_EQ(shop.all_unhealthy, AllUnhealthy::kReject);
  EXPECT_EQ(nodes.config->dataplane.ports[1].tap, "lan-k");
}

// Found by fuzz_api: an interval shorter than the default timeout loaded with the timeout
// left at 1000 ms, so the Service as GET shows it (timeoutMs spelled out) failed to load.
TEST(ConfigLoad, DefaultTimeoutNeverOutlastsTheInterval) {
  std::string yaml = std::string(kMinimal) + R"(services:
  - name: web
    vip: 172.16.0.1
    ports: [{port: 80}]
    healthCheck: {intervalMs: 500}
  - name: explicit
    vip: 172.16.0.2
    ports: [{port: 80}]
    healthCheck: {intervalMs: 500, timeoutMs: 1000}
)";
  LoadResult r = load_config_string(yaml, "t.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(error_lines(r), std::vector<std::string>{"t.yaml:12: services[1].healthCheck.timeoutMs:"
                                                     " 1000 is longer than intervalMs 500"});
  yaml.resize(yaml.find("  - name: explicit"));
  r = load_config_string(yaml, "t.yaml");
  ASSERT_TRUE(r.ok()) << joined(error_lines(r));
  EXPECT_EQ(r.config->services[0].health_check->interval_ms, 500u);
  EXPECT_EQ(r.config->services[0].health_check->timeout_ms, 500u);
}

}  // namespace
}  // namespace l4lb::config
