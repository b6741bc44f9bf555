#include "src/config/kubernetes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace l4lb::config {
namespace {

const std::string kDir = std::string(L4LB_CONF_DIR) + "/examples/kubernetes/";

uint32_t ip(const char* text) { return *parse_ipv4(text); }

bool has_warning(const KubernetesResult& r, const std::string& needle) {
  return std::any_of(r.warnings.begin(), r.warnings.end(),
                     [&](const std::string& w) { return w.find(needle) != std::string::npos; });
}

std::string all(const std::vector<ConfigError>& errors) {
  std::string out;
  for (const auto& e : errors) out += e.to_string() + "\n";
  return out;
}

TEST(Kubernetes, FrontendSample) {
  KubernetesResult r = load_kubernetes_file(kDir + "frontend.yaml");
  ASSERT_TRUE(r.ok()) << all(r.errors);
  ASSERT_EQ(r.services.size(), 1u);
  const ServiceConfig& s = r.services[0];
  EXPECT_EQ(s.name, "frontend");
  EXPECT_EQ(s.vip, ip("172.16.12.100"));  // status ingress beats loadBalancerIP
  ASSERT_EQ(s.ports.size(), 1u);
  EXPECT_EQ(s.ports[0].name, "http");
  EXPECT_EQ(s.ports[0].protocol, Protocol::kTcp);
  EXPECT_EQ(s.ports[0].port, 80);
  EXPECT_EQ(s.ports[0].target_port, 8080);  // "web" resolved through the slice port "http"
  ASSERT_EQ(s.source_ranges.size(), 2u);
  EXPECT_EQ(format_prefix(s.source_ranges[0]), "10.0.0.0/24");
  EXPECT_EQ(format_prefix(s.source_ranges[1]), "203.0.113.0/24");
  EXPECT_EQ(s.session_affinity, SessionAffinity::kNone);
  EXPECT_FALSE(s.health_check.has_value());
  ASSERT_EQ(s.backends.size(), 2u);  // pod-c (not serving) is left out
  EXPECT_EQ(s.backends[0].ip, ip("10.4.1.11"));
  EXPECT_EQ(s.backends[0].weight, 1u);  // ready
  EXPECT_EQ(s.backends[1].ip, ip("10.4.1.12"));
  EXPECT_EQ(s.backends[1].weight, 0u);  // terminating but serving: drain
  EXPECT_TRUE(has_warning(r, "externalTrafficPolicy: Local is not honoured")) << r.warnings.size();
  EXPECT_TRUE(has_warning(r, "frontend.yaml:")) << "warnings carry file:line";
}

TEST(Kubernetes, KubectlListSample) {
  KubernetesResult r = load_kubernetes_file(kDir + "kubectl-list.yaml");
  ASSERT_TRUE(r.ok()) << all(r.errors);
  ASSERT_EQ(r.services.size(), 2u);

  const ServiceConfig& dns = r.services[0];
  EXPECT_EQ(dns.name, "shop-dns");          // namespace other than default: "<ns>-<name>"
  EXPECT_EQ(dns.vip, ip("172.16.12.103"));  // spec.loadBalancerIP beats clusterIP
  ASSERT_EQ(dns.ports.size(), 2u);
  EXPECT_EQ(dns.ports[0].name, "dns");
  EXPECT_EQ(dns.ports[0].protocol, Protocol::kUdp);
  EXPECT_EQ(dns.ports[0].port, 53);
  EXPECT_EQ(dns.ports[0].target_port, 5353);
  EXPECT_EQ(dns.ports[1].name, "dns-tcp");
  EXPECT_EQ(dns.ports[1].protocol, Protocol::kTcp);
  EXPECT_EQ(dns.ports[1].target_port, 5353);
  EXPECT_TRUE(dns.source_ranges.empty());
  EXPECT_EQ(dns.session_affinity, SessionAffinity::kClientIp);
  ASSERT_EQ(dns.backends.size(), 3u);  // two slices merged
  EXPECT_EQ(dns.backends[0].ip, ip("10.4.1.11"));
  EXPECT_EQ(dns.backends[1].ip, ip("10.4.1.12"));  // conditions {}: nil ready means ready
  EXPECT_EQ(dns.backends[2].ip, ip("10.4.1.13"));
  for (const auto& b : dns.backends) EXPECT_EQ(b.weight, 1u);

  const ServiceConfig& api = r.services[1];
  EXPECT_EQ(api.name, "kubernetes-api");
  EXPECT_EQ(api.vip, ip("172.16.12.102"));  // the cluster IP
  ASSERT_EQ(api.ports.size(), 1u);
  EXPECT_EQ(api.ports[0].port, 443);
  EXPECT_EQ(api.ports[0].target_port, 443);  // absent targetPort: the port
  ASSERT_EQ(api.backends.size(), 1u);
  EXPECT_EQ(api.backends[0].ip, ip("10.128.0.21"));

  EXPECT_TRUE(has_warning(r, "headless"));
  EXPECT_TRUE(has_warning(r, "timeoutSeconds is not honoured"));
}

TEST(Kubernetes, LooksLikeKubernetes) {
  EXPECT_TRUE(looks_like_kubernetes("apiVersion: v1\nkind: Service\n"));
  EXPECT_TRUE(looks_like_kubernetes("---\napiVersion: v1\nkind: List\nitems: []\n"));
  EXPECT_FALSE(looks_like_kubernetes("services:\n  - name: a\n"));
  EXPECT_FALSE(looks_like_kubernetes("dataplane: {}\n"));
}

TEST(Kubernetes, NamedTargetPortWithoutSliceIsAnError) {
  auto r = load_kubernetes_string(
      "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIP: 10.96.0.1\n"
      "  ports: [{name: http, port: 80, targetPort: web}]\n",
      "m.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].to_string(),
            "m.yaml:1: Service default/a: port http: named targetPort \"web\" needs an "
            "EndpointSlice port named \"http\" to resolve it");
  EXPECT_TRUE(r.services.empty());
  EXPECT_TRUE(has_warning(r, "no EndpointSlice"));
}

TEST(Kubernetes, UnsupportedFieldsAreReported) {
  auto r = load_kubernetes_string(
      "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIP: 10.96.0.1\n"
      "  ipFamilies: [IPv4, IPv6]\n  externalIPs: [1.2.3.4]\n"
      "  ports: [{name: s, protocol: SCTP, port: 9}, {name: t, port: 80}]\n"
      "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
      "m.yaml");
  ASSERT_TRUE(r.ok()) << all(r.errors);
  ASSERT_EQ(r.services.size(), 1u);
  ASSERT_EQ(r.services[0].ports.size(), 1u);
  EXPECT_EQ(r.services[0].ports[0].name, "t");
  EXPECT_TRUE(has_warning(r, "protocol SCTP is not supported"));
  EXPECT_TRUE(has_warning(r, "IPv6 is not supported"));
  EXPECT_TRUE(has_warning(r, "externalIPs are not used"));
  EXPECT_TRUE(has_warning(r, "m.yaml:10: kind ConfigMap is ignored"));
}

TEST(Kubernetes, BadInputIsAnErrorWithItsLine) {
  auto r = load_kubernetes_string(
      "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIP: 10.96.0.1\n"
      "  loadBalancerSourceRanges: [10.0.0.1/8]\n  ports: [{port: 80}]\n---\n"
      "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: 80}]}\n",
      "m.yaml");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].to_string(),
            "m.yaml:1: Service default/a: loadBalancerSourceRanges: \"10.0.0.1/8\" has host "
            "bits set; did you mean 10.0.0.0/8?");
  EXPECT_EQ(r.errors[1].line, 9);
  EXPECT_NE(r.errors[1].message.find("no IPv4 VIP"), std::string::npos);
}

// Found by fuzz_k8s: names the API refuses came out as Services, so `l4lbctl apply` sent
// some Services and then failed on the next one.
TEST(Kubernetes, ServicesTheApiWouldRefuseTogetherAreErrors) {
  const std::string ns(40, 'n'), name(30, 'x');
  auto svc = [](const std::string& n, const std::string& space, const char* ip) {
    return "apiVersion: v1\nkind: Service\nmetadata: {name: " + n + ", namespace: " + space +
           "}\nspec: {clusterIP: " + ip + ", ports: [{port: 80}]}\n---\n";
  };
  auto r = load_kubernetes_string(svc(name, ns, "10.96.0.1") + svc("a-b", "default", "10.96.0.2") +
                                      svc("b", "a", "10.96.0.3") + svc("c", "default", "10.96.0.3") +
                                      svc("Web", "default", "10.96.0.4"),
                                  "m.yaml");
  std::vector<std::string> errors;
  for (const auto& e : r.errors) errors.push_back(e.to_string());
  EXPECT_EQ(errors, (std::vector<std::string>{
                        "m.yaml:1: Service " + ns + "/" + name + ": name: \"" + ns + "-" + name +
                            "\" is not a valid Service name",
                        "m.yaml:11: Service a/b: name: duplicate Service name \"a-b\"",
                        "m.yaml:19: Service default/c: ports[0]: TCP 10.96.0.3:80 is already "
                        "exposed by Service \"a-b\"",
                        "m.yaml:21: Service default/Web: name: \"Web\" is not a valid Service name",
                    }));
  ASSERT_EQ(r.services.size(), 1u);
  EXPECT_EQ(r.services[0].name, "a-b");
}

// Found by fuzz_k8s: the file loader's port rules held only for our YAML.
TEST(Kubernetes, PortsFollowTheLoadersRules) {
  auto r = load_kubernetes_string(
      "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIP: 10.96.0.1\n"
      "  ports: [{port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]\n---\n"
      "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec:\n  clusterIP: 10.96.0.2\n"
      "  ports: [{port: 80, targetPort: 70000}]\n",
      "m.yaml");
  std::vector<std::string> errors;
  for (const auto& e : r.errors) errors.push_back(e.to_string());
  EXPECT_EQ(errors, (std::vector<std::string>{
                        "m.yaml:8: Service default/b: targetPort 70000 is not a port number 1-65535",
                        "m.yaml:8: Service default/b: no TCP or UDP port",
                        "m.yaml:6: Service default/a: ports[0].name: required when a Service has "
                        "more than one port",
                    }));
  EXPECT_TRUE(r.services.empty());
}

// Found by fuzz_k8s: an endpoint at 0.14.1.12 became a backend the API refuses.
TEST(Kubernetes, EndpointAddressesFollowTheLoadersRules) {
  auto r = load_kubernetes_string(
      "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIP: 10.96.0.1\n"
      "  selector: {app: a}\n  ports: [{name: http, port: 80}]\n---\n"
      "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
      "metadata: {name: a-1, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\n"
      "ports: [{name: http, port: 8080}]\n"
      "endpoints: [{addresses: [10.4.1.11]}, {addresses: [0.14.1.12]}, {addresses: [127.0.0.1]},"
      " {addresses: [224.0.0.5]}]\n",
      "m.yaml");
  std::vector<std::string> errors;
  for (const auto& e : r.errors) errors.push_back(e.to_string());
  EXPECT_EQ(errors, (std::vector<std::string>{
                        "m.yaml:9: Service default/a: endpoint address 0.14.1.12 is not a unicast "
                        "address",
                        "m.yaml:9: Service default/a: endpoint address 127.0.0.1 is not a unicast "
                        "address",
                        "m.yaml:9: Service default/a: endpoint address 224.0.0.5 is not a unicast "
                        "address",
                    }));
}

}  // namespace
}  // namespace l4lb::config
