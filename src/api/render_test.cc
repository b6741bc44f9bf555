#include "src/api/render.h"

#include <gtest/gtest.h>

namespace l4lb::api {
namespace {

config::DataplaneConfig dataplane() {
  config::DataplaneConfig dp;
  config::PortConfig wan;
  wan.name = "wan";
  wan.address = *parse_ipv4_prefix("10.0.0.1/24");
  config::PortConfig lan;
  lan.name = "lan";
  lan.address = *parse_ipv4_prefix("10.128.0.1/24");
  dp.ports = {wan, lan};
  config::RouteConfig pods;
  pods.prefix = *parse_ipv4_prefix("10.4.1.0/24");
  pods.via = *parse_ipv4("10.128.0.21");
  dp.routes = {pods};
  return dp;
}

// A PUT body is judged by the file loader, with paths relative to the Service.
TEST(ServiceBody, JsonLoadsWithTheFileLoader) {
  auto r = config::load_service_string(
      R"({"name": "web", "vip": "172.16.12.100",
          "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
          "loadBalancerSourceRanges": ["203.0.113.0/24"], "sessionAffinity": "ClientIP",
          "backends": [{"ip": "10.4.1.11", "weight": 2}, {"ip": "10.4.1.12"}]})",
      dataplane());
  ASSERT_TRUE(r.ok()) << r.errors.front().message;
  const auto& s = *r.service;
  EXPECT_EQ(s.name, "web");
  EXPECT_EQ(s.vip, *parse_ipv4("172.16.12.100"));
  ASSERT_EQ(s.ports.size(), 1u);
  EXPECT_EQ(s.ports[0].target_port, 8080);
  EXPECT_EQ(s.session_affinity, config::SessionAffinity::kClientIp);
  ASSERT_EQ(s.backends.size(), 2u);
  EXPECT_EQ(s.backends[0].weight, 2u);
  EXPECT_EQ(s.backends[1].weight, 1u);
}

struct BadBody {
  const char* body;
  const char* field;
  const char* message;
};

class ServiceBodyErrors : public testing::TestWithParam<BadBody> {};

TEST_P(ServiceBodyErrors, FieldAndMessage) {
  auto r = config::load_service_string(GetParam().body, dataplane());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors.front().field, GetParam().field);
  if (*GetParam().message == '\0') {
    EXPECT_EQ(r.errors.front().message.rfind("YAML syntax error", 0), 0u)
        << r.errors.front().message;
  } else {
    EXPECT_EQ(r.errors.front().message, GetParam().message);
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, ServiceBodyErrors,
    testing::Values(
        BadBody{R"({"name": "web", "vip": "1.2.3.300", "ports": [{"port": 80}]})", "vip",
                R"(vip: "1.2.3.300" is not an IPv4 address)"},
        BadBody{R"({"name": "web", "vip": "1.2.3.4", "ports": [{"port": "80"}]})", "ports[0].port",
                R"(ports[0].port: "80" is a string, not an integer (remove the quotes))"},
        BadBody{R"({"name": "web", "vip": "1.2.3.4", "ports": [{"port": 80}], "colour": 1})",
                "colour", "colour: unknown key"},
        BadBody{
            R"({"name": "web", "vip": "1.2.3.4", "ports": [{"port": 80}],
                    "loadBalancerSourceRanges": ["10.0.0.1/8"]})",
            "loadBalancerSourceRanges[0]",
            R"(loadBalancerSourceRanges[0]: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?)"},
        BadBody{R"({"name": "web", "vip": "1.2.3.4", "ports": [{"port": 80}],
                    "backends": [{"ip": "192.168.9.9"}]})",
                "backends[0].ip",
                "backends[0].ip: no route to 192.168.9.9 (not in any port's subnet or route)"},
        BadBody{R"({"name": "web", "vip": "1.2.3.4"})", "ports", "ports: missing required key"},
        BadBody{R"({"name": "web", "vip": )", "", ""},
        BadBody{R"([1, 2])", "", "top level: expected a mapping, got a list"}));

TEST(ServiceJson, RoundTripsThroughTheLoader) {
  auto r = config::load_service_string(
      "name: dns\nvip: 172.16.12.101\nports:\n  - {name: dns, protocol: UDP, port: 53, "
      "targetPort: 5353}\n  - {name: tcp, port: 53}\nhealthCheck: {type: http, port: 8080}\n"
      "backends: [{ip: 10.4.1.11, weight: 0}]\n",
      dataplane());
  ASSERT_TRUE(r.ok()) << r.errors.front().message;
  const nlohmann::json j = service_json(*r.service);
  auto back = config::load_service_string(j.dump(), dataplane());
  ASSERT_TRUE(back.ok()) << back.errors.front().message << "\n" << j.dump();
  EXPECT_EQ(service_json(*back.service), j);
  EXPECT_EQ(j["ports"][0]["protocol"], "UDP");
  EXPECT_EQ(j["backends"][0]["weight"], 0);
  EXPECT_EQ(j["healthCheck"]["port"], 8080);
}

TEST(ExposureConflict, SameVipProtocolPortOfAnotherService) {
  auto a = config::load_service_string(
      R"({"name": "a", "vip": "172.16.0.1", "ports": [{"port": 80}]})", dataplane());
  auto b = config::load_service_string(
      R"({"name": "b", "vip": "172.16.0.1", "ports": [{"name": "x", "port": 81, "protocol": "UDP"},
          {"name": "y", "port": 80}]})",
      dataplane());
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = config::find_exposure_conflict({*a.service}, *b.service);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->field, "ports[1]");
  EXPECT_EQ(c->message, R"(ports[1]: TCP 172.16.0.1:80 is already exposed by Service "a")");
  // The Service itself (a replacement) is no conflict.
  EXPECT_FALSE(config::find_exposure_conflict({*a.service}, *a.service).has_value());
}

TEST(TokenFile, ConfigKey) {
  const std::string base =
      "dataplane:\n  ports: [{name: wan, device: d, address: 10.0.0.1/24}]\ncontrol:\n  api: ";
  auto ok = config::load_config_string(base + "{listen: 127.0.0.1:0, tokenFile: /run/t}\n", "f");
  ASSERT_TRUE(ok.ok()) << ok.errors.front().to_string();
  EXPECT_EQ(ok.config->control.api_token_file, "/run/t");
  auto bad = config::load_config_string(base + "{tokenFile: \"\"}\n", "f");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.errors.front().to_string(), "f:4: control.api.tokenFile: must not be empty");
}

TEST(ValidateServices, FindsConflictsInAConfigBuiltInMemory) {
  config::Config cfg;
  cfg.dataplane = dataplane();
  auto a = config::load_service_string(
      R"({"name": "a", "vip": "172.16.0.1", "ports": [{"port": 80}]})", cfg.dataplane);
  ASSERT_TRUE(a.ok());
  cfg.services = {*a.service};
  EXPECT_TRUE(config::validate_services(cfg).empty());
  config::ServiceConfig b = *a.service;
  b.name = "b";
  cfg.services.push_back(b);
  cfg.services.push_back(b);
  auto errors = config::validate_services(cfg);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].message,
            R"(services[1].ports[0]: TCP 172.16.0.1:80 is already exposed by Service "a")");
  EXPECT_EQ(errors[1].field, "services[2].name");
}

TEST(FlowLimit, Parses) {
  EXPECT_EQ(parse_flow_limit(std::nullopt), kDefaultFlowLimit);
  EXPECT_EQ(parse_flow_limit("5"), 5u);
  EXPECT_EQ(parse_flow_limit("10000"), 10000u);
  EXPECT_FALSE(parse_flow_limit("0"));
  EXPECT_FALSE(parse_flow_limit("10001"));
  EXPECT_FALSE(parse_flow_limit("-1"));
  EXPECT_FALSE(parse_flow_limit("abc"));
  EXPECT_FALSE(parse_flow_limit(""));
  EXPECT_FALSE(parse_flow_limit("05"));
}

TEST(BearerToken, Checks) {
  EXPECT_TRUE(bearer_token_ok("Bearer s3cret", "s3cret"));
  EXPECT_TRUE(bearer_token_ok("bearer s3cret", "s3cret"));
  EXPECT_FALSE(bearer_token_ok("Bearer s3cre", "s3cret"));
  EXPECT_FALSE(bearer_token_ok("Bearer s3cret2", "s3cret"));
  EXPECT_FALSE(bearer_token_ok("Basic s3cret", "s3cret"));
  EXPECT_FALSE(bearer_token_ok("", "s3cret"));
  EXPECT_FALSE(bearer_token_ok("Bearer ", ""));
}

TEST(YamlToJson, KeepsTheLoadersTyping) {
  auto j = yaml_to_json(YAML::Load("{a: 80, b: \"80\", c: 080, d: true, e: x, f: [1, '2'], g: ~}"));
  EXPECT_EQ(j["a"], 80);
  EXPECT_EQ(j["b"], "80");
  EXPECT_EQ(j["c"], "080");
  EXPECT_EQ(j["d"], true);
  EXPECT_EQ(j["e"], "x");
  EXPECT_EQ(j["f"][0], 1);
  EXPECT_EQ(j["f"][1], "2");
  EXPECT_TRUE(j["g"].is_null());
}

}  // namespace
}  // namespace l4lb::api
