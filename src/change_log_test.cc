#include "src/change_log.h"

#include <gtest/gtest.h>

namespace l4lb {
namespace {

config::Config load(const std::string& services, const std::string& routes = "") {
  const std::string yaml = R"(
dataplane:
  ports:
    - {name: wan, device: net_null0, address: 10.0.0.1/24}
)" + routes + R"(
services:
)" + services;
  auto r = config::load_config_string(yaml, "test.yaml");
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0].to_string());
  return r.ok() ? *r.config : config::Config{};
}

std::string svc(const std::string& name, const std::string& vip, const std::string& backend) {
  return "  - {name: " + name + ", vip: " + vip +
         ", ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}], backends: [{ip: " +
         backend + "}]}\n";
}

TEST(ChangeLog, NamesAddedRemovedChangedAndRoutes) {
  auto a = load(svc("web", "172.16.0.1", "10.0.0.11") + svc("old", "172.16.0.2", "10.0.0.12"));
  auto b = load(svc("web", "172.16.0.1", "10.0.0.13") + svc("new", "172.16.0.3", "10.0.0.12"),
                "  routes:\n    - {prefix: 10.4.0.0/16, via: 10.0.0.21}\n");
  EXPECT_EQ(describe_changes(a, b),
            "services added: new; services removed: old; services changed: web; routes changed");
  EXPECT_EQ(describe_changes(a, a), "no change");
  // Line numbers differ, content does not: no change.
  auto c =
      load("\n\n" + svc("web", "172.16.0.1", "10.0.0.11") + svc("old", "172.16.0.2", "10.0.0.12"));
  EXPECT_EQ(describe_changes(a, c), "no change");
}

}  // namespace
}  // namespace l4lb
