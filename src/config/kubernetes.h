// Kubernetes manifests as input: Service and EndpointSlice objects (multi-document YAML,
// `kind: List`, as `kubectl get svc,endpointslices -A -o yaml` prints them) turned into
// l4lb Services. Used by l4lbctl apply; control path only (allocates, may be slow).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "src/config/config.h"

namespace l4lb::config {

struct KubernetesResult {
  std::vector<ServiceConfig> services;  // in the order the Services appear
  // What we read but cannot honour (externalTrafficPolicy: Local, SCTP ports, IPv6
  // slices, ...), as `file:line: Service ns/name: what`.
  std::vector<std::string> warnings;
  std::vector<ConfigError> errors;  // a Service with an error is left out
  bool ok() const { return errors.empty(); }
};

// Never throws. Mapping (README "Kubernetes manifests"):
//  - name: metadata.name in namespace "default" (or none), else "<namespace>-<name>";
//  - VIP: status.loadBalancer.ingress[].ip, else spec.loadBalancerIP, else spec.clusterIP;
//  - ports[]: name, protocol, port; targetPort numeric, or named and resolved through the
//    EndpointSlice port of the same name (which carries the number);
//  - backends: the endpoints of the EndpointSlices labelled kubernetes.io/service-name with
//    the Service's name in its namespace: ready -> weight 1, terminating but serving ->
//    weight 0 (drain: existing flows stay, no new ones), otherwise left out.
KubernetesResult load_kubernetes_string(std::string_view yaml, const std::string& file_name);
KubernetesResult load_kubernetes_file(const std::string& path);

// Whether a YAML stream holds Kubernetes objects (a top-level `kind` and `apiVersion`)
// rather than an l4lb config (`services:`, `dataplane:`).
bool looks_like_kubernetes(std::string_view yaml);

}  // namespace l4lb::config
