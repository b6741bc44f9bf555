#include "src/config/kubernetes.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

namespace l4lb::config {

namespace {

constexpr std::string_view kServiceNameLabel = "kubernetes.io/service-name";

// One object with where it starts in the file.
struct Object {
  YAML::Node node;
  int line = 0;    // 1-based line of the object in the whole file
  int offset = 0;  // add to a yaml-cpp mark's 0-based line inside it for the file's line
};

// One document of the stream, with the line where it starts.
struct Document {
  std::string text;
  int first_line = 1;
};

// Splits on "---" separator lines, as kubectl's YAML reader does. (yaml-cpp's LoadAll can
// loop forever on some malformed input, see config.cc; Load reads one document.)
std::vector<Document> split_documents(std::string_view yaml) {
  std::vector<Document> docs(1);
  int line_no = 0;
  size_t pos = 0;
  while (pos <= yaml.size()) {
    size_t end = yaml.find('\n', pos);
    if (end == std::string_view::npos) end = yaml.size();
    std::string_view line = yaml.substr(pos, end - pos);
    ++line_no;
    bool separator = line.substr(0, 3) == "---" &&
                     (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
    if (separator) {
      docs.push_back({"", line_no + 1});
    } else if (line.substr(0, 3) != "...") {
      docs.back().text.append(line);
      docs.back().text += '\n';
    }
    pos = end + 1;
  }
  return docs;
}

// n[k0][k1]...: a null node when any step is missing or not a mapping. (Chaining yaml-cpp's
// operator[] through a missing key throws InvalidNode.)
YAML::Node at(const YAML::Node& n, std::initializer_list<std::string_view> path) {
  const YAML::Node missing(YAML::NodeType::Undefined);  // false in a boolean context
  YAML::Node cur = n;
  for (std::string_view key : path) {
    if (!cur || !cur.IsMap()) return missing;
    YAML::Node next = cur[std::string(key)];
    if (!next) return missing;
    cur.reset(next);  // rebinds; operator= would overwrite the node cur refers to
  }
  return cur;
}

std::string scalar(const YAML::Node& n, const std::string& fallback = "") {
  return n && n.IsScalar() ? n.Scalar() : fallback;
}

std::optional<int64_t> integer(const YAML::Node& n) {
  if (!n || !n.IsScalar() || n.Tag() == "!") return std::nullopt;
  const std::string& s = n.Scalar();
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), ::isdigit)) {
    return std::nullopt;
  }
  return std::stoll(s);
}

std::optional<bool> boolean(const YAML::Node& n) {
  if (!n || !n.IsScalar()) return std::nullopt;
  if (n.Scalar() == "true") return true;
  if (n.Scalar() == "false") return false;
  return std::nullopt;
}

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  KubernetesResult read(std::string_view yaml) {
    for (const Document& doc : split_documents(yaml)) collect(doc);
    for (const Object& svc : services_) convert(svc);
    check_together();
    for (const auto& [key, slices] : slices_) {
      if (!used_slices_.count(key)) {
        warn(slices.front().line, "EndpointSlice for Service " + key.first + "/" + key.second +
                                      ": no such Service in the input; ignored");
      }
    }
    return std::move(result_);
  }

 private:
  void warn(int line, const std::string& what) {
    result_.warnings.push_back(file_ + ":" + std::to_string(line) + ": " + what);
  }
  void error(int line, const std::string& what) { result_.errors.push_back({file_, line, what}); }
  int line_of(const YAML::Node& n, int offset) const {
    return n.Mark().is_null() ? offset : n.Mark().line + offset;
  }

  void collect(const Document& doc) {
    YAML::Node root;
    try {
      root = YAML::Load(doc.text);
    } catch (const YAML::Exception& e) {
      error(doc.first_line + (e.mark.is_null() ? 0 : e.mark.line), "YAML syntax error: " + e.msg);
      return;
    }
    if (!root || root.IsNull()) return;
    add(root, doc.first_line);
  }

  void add(const YAML::Node& obj, int offset) {
    const int line = line_of(obj, offset);
    if (!obj.IsMap()) {
      error(line, "expected a Kubernetes object (a mapping with kind and apiVersion)");
      return;
    }
    const std::string kind = scalar(at(obj, {"kind"}));
    if (kind.ends_with("List") && at(obj, {"items"})) {
      const YAML::Node items = at(obj, {"items"});
      if (!items.IsSequence()) {
        error(line, kind + ": items must be a list");
        return;
      }
      for (const auto& item : items) add(item, offset);
      return;
    }
    if (kind == "Service") {
      services_.push_back({obj, line, offset});
    } else if (kind == "EndpointSlice") {
      const YAML::Node meta = at(obj, {"metadata"});
      const std::string ns = scalar(at(meta, {"namespace"}), "default");
      const std::string owner = scalar(at(meta, {"labels", kServiceNameLabel}));
      if (owner.empty()) {
        warn(line, "EndpointSlice " + ns + "/" + scalar(at(meta, {"name"})) + " has no " +
                       std::string(kServiceNameLabel) + " label; ignored");
        return;
      }
      slices_[{ns, owner}].push_back({obj, line, offset});
    } else if (kind == "Endpoints") {
      warn(line, "Endpoints objects are ignored: l4lb reads EndpointSlices");
    } else if (kind.empty()) {
      error(line, "object without kind");
    } else {
      warn(line, "kind " + kind + " is ignored (l4lb reads Service and EndpointSlice)");
    }
  }

  // The Kubernetes name of a Service as ours (README): Service names are DNS-1035 labels in
  // both, so "<namespace>-<name>" is one too whenever it fits in 63 characters.
  static std::string our_name(const std::string& ns, const std::string& name) {
    return ns == "default" ? name : ns + "-" + name;
  }

  void convert(const Object& obj) {
    const YAML::Node& svc = obj.node;
    const YAML::Node meta = at(svc, {"metadata"});
    const YAML::Node spec = at(svc, {"spec"});
    const std::string name = scalar(at(meta, {"name"}));
    const std::string ns = scalar(at(meta, {"namespace"}), "default");
    const std::string label = "Service " + ns + "/" + name;
    if (name.empty()) {
      error(obj.line, "Service without metadata.name");
      return;
    }
    if (!spec || !spec.IsMap()) {
      error(obj.line, label + ": no spec");
      return;
    }
    const std::string type = scalar(at(spec, {"type"}), "ClusterIP");
    if (type == "ExternalName") {
      warn(obj.line, label + ": type ExternalName has no VIP to balance; skipped");
      used_slices_.insert({ns, name});
      return;
    }
    ServiceConfig out;
    out.name = our_name(ns, name);
    out.line = obj.line;
    size_t errors_before = result_.errors.size();

    // VIP: what a cloud load balancer would own first, then what was asked for, then the
    // cluster IP (kube-proxy's view).
    std::optional<uint32_t> vip;
    std::string vip_from;
    if (const YAML::Node ingress = at(svc, {"status", "loadBalancer", "ingress"});
        ingress && ingress.IsSequence()) {
      size_t ips = 0;
      for (const auto& entry : ingress) {
        std::string ip = scalar(at(entry, {"ip"}));
        if (ip.empty()) continue;
        ++ips;
        if (!vip) {
          vip = parse_ipv4(ip);
          vip_from = "status.loadBalancer.ingress[].ip " + ip;
        }
      }
      if (ips > 1) {
        warn(obj.line, label + ": " + std::to_string(ips) +
                           " load-balancer ingress IPs; only the first is used as the VIP");
      }
    }
    if (const std::string lb_ip = scalar(at(spec, {"loadBalancerIP"})); !vip && !lb_ip.empty()) {
      vip = parse_ipv4(lb_ip);
      vip_from = "spec.loadBalancerIP " + lb_ip;
    }
    if (!vip) {
      const std::string cluster_ip = scalar(at(spec, {"clusterIP"}));
      if (cluster_ip == "None") {
        warn(obj.line, label + ": headless (clusterIP: None) and no load-balancer IP; skipped");
        used_slices_.insert({ns, name});
        return;
      }
      if (!cluster_ip.empty()) {
        vip = parse_ipv4(cluster_ip);
        vip_from = "spec.clusterIP " + cluster_ip;
      }
    }
    if (!vip) {
      error(obj.line,
            label + (vip_from.empty() ? ": no IPv4 VIP (status.loadBalancer.ingress[].ip, "
                                        "spec.loadBalancerIP or spec.clusterIP)"
                                      : ": " + vip_from + " is not an IPv4 address"));
    } else {
      out.vip = *vip;
    }

    // Named target ports, resolved below through the EndpointSlices.
    std::vector<std::string> named_target;
    if (const YAML::Node ports = at(spec, {"ports"}); ports && ports.IsSequence()) {
      for (const auto& p : ports) {
        ServicePortConfig sp;
        sp.line = line_of(p, obj.offset);
        sp.name = scalar(at(p, {"name"}));
        const std::string proto = scalar(at(p, {"protocol"}), "TCP");
        if (proto == "UDP") {
          sp.protocol = Protocol::kUdp;
        } else if (proto != "TCP") {
          warn(obj.line, label + ": port " + (sp.name.empty() ? scalar(at(p, {"port"})) : sp.name) +
                             ": protocol " + proto + " is not supported (TCP or UDP); skipped");
          continue;
        }
        auto port = integer(at(p, {"port"}));
        if (!port || *port < 1 || *port > 65535) {
          error(obj.line,
                label + ": port " + scalar(at(p, {"port"})) + " is not a port number 1-65535");
          continue;
        }
        sp.port = static_cast<uint16_t>(*port);
        std::string named;
        if (const YAML::Node tp = at(p, {"targetPort"}); tp) {
          if (auto n = integer(tp)) {
            if (*n < 1 || *n > 65535) {
              error(obj.line, label + ": targetPort " + scalar(tp) +
                                  " is not a port number 1-65535");
              continue;
            }
            sp.target_port = static_cast<uint16_t>(*n);
          } else {
            named = scalar(tp);
          }
        } else {
          sp.target_port = sp.port;
        }
        out.ports.push_back(sp);
        named_target.push_back(named);
      }
    }
    if (out.ports.empty()) error(obj.line, label + ": no TCP or UDP port");

    if (const YAML::Node ranges = at(spec, {"loadBalancerSourceRanges"});
        ranges && ranges.IsSequence()) {
      for (const auto& r : ranges) {
        auto p = parse_ipv4_prefix(scalar(r));
        if (!p) {
          error(obj.line,
                label + ": loadBalancerSourceRanges: \"" + scalar(r) + "\" is not an IPv4 CIDR");
        } else if (p->addr != p->network()) {
          error(obj.line, label + ": loadBalancerSourceRanges: \"" + scalar(r) +
                              "\" has host bits set; did you mean " +
                              format_prefix({p->network(), p->len}) + "?");
        } else {
          out.source_ranges.push_back(*p);
        }
      }
    }
    const std::string affinity = scalar(at(spec, {"sessionAffinity"}), "None");
    if (affinity == "ClientIP") {
      out.session_affinity = SessionAffinity::kClientIp;
      if (at(spec, {"sessionAffinityConfig", "clientIP", "timeoutSeconds"})) {
        warn(obj.line, label +
                           ": sessionAffinityConfig.clientIP.timeoutSeconds is not honoured "
                           "(ClientIP affinity is Maglev's hash of the client IP, it never "
                           "times out)");
      }
    } else if (affinity != "None") {
      error(obj.line, label + ": sessionAffinity \"" + affinity + "\" is not None or ClientIP");
    }
    if (scalar(at(spec, {"externalTrafficPolicy"})) == "Local") {
      warn(obj.line, label +
                         ": externalTrafficPolicy: Local is not honoured: every endpoint "
                         "takes flows (the client address is preserved either way)");
    }
    if (scalar(at(spec, {"internalTrafficPolicy"})) == "Local") {
      warn(obj.line, label + ": internalTrafficPolicy: Local is not honoured");
    }
    if (const YAML::Node ext = at(spec, {"externalIPs"});
        ext && ext.IsSequence() && ext.size() > 0) {
      warn(obj.line, label + ": spec.externalIPs are not used as VIPs (the VIP is " +
                         (vip ? format_ipv4(*vip) : std::string("unset")) + ")");
    }
    if (const YAML::Node fam = at(spec, {"ipFamilies"}); fam && fam.IsSequence()) {
      for (const auto& f : fam) {
        if (scalar(f) == "IPv6") warn(obj.line, label + ": IPv6 is not supported yet; IPv4 only");
      }
    }

    add_backends(ns, name, label, obj.line, out, named_target);
    if (result_.errors.size() == errors_before) {
      result_.services.push_back(std::move(out));
      labels_.push_back(label);
    }
  }

  void add_backends(const std::string& ns, const std::string& name, const std::string& label,
                    int line, ServiceConfig& out, const std::vector<std::string>& named_target) {
    auto it = slices_.find({ns, name});
    std::vector<std::optional<uint16_t>> resolved(out.ports.size());
    if (it == slices_.end()) {
      warn(line, label + ": no EndpointSlice in the input: no backends");
    } else {
      used_slices_.insert({ns, name});
      std::map<uint32_t, size_t> index;  // ip -> position in out.backends
      for (const Object& slice : it->second) {
        const YAML::Node s = slice.node;
        const std::string type = scalar(at(s, {"addressType"}), "IPv4");
        if (type != "IPv4") {
          warn(slice.line, label + ": EndpointSlice " + scalar(at(s, {"metadata", "name"})) +
                               " has addressType " + type + "; only IPv4 is supported, skipped");
          continue;
        }
        // The slice's port of a Service port's name carries the resolved target port.
        if (const YAML::Node ports = at(s, {"ports"}); ports && ports.IsSequence()) {
          for (size_t j = 0; j < out.ports.size(); ++j) {
            for (const auto& sp : ports) {
              const std::string proto = scalar(at(sp, {"protocol"}), "TCP");
              const bool same_proto = (proto == "UDP") == (out.ports[j].protocol == Protocol::kUdp);
              auto number = integer(at(sp, {"port"}));
              if (scalar(at(sp, {"name"})) != out.ports[j].name || !same_proto || !number) continue;
              if (!resolved[j]) {
                resolved[j] = static_cast<uint16_t>(*number);
              } else if (*resolved[j] != *number) {
                warn(slice.line, label + ": port " + out.ports[j].name +
                                     " targets different ports on different endpoints (" +
                                     std::to_string(*resolved[j]) + ", " + std::to_string(*number) +
                                     "); using " + std::to_string(*resolved[j]));
              }
            }
          }
        }
        const YAML::Node endpoints = at(s, {"endpoints"});
        if (!endpoints || !endpoints.IsSequence()) continue;
        for (const auto& ep : endpoints) {
          const YAML::Node addresses = at(ep, {"addresses"});
          if (!addresses || !addresses.IsSequence() || addresses.size() == 0) continue;
          const std::string text = scalar(addresses[0]);
          auto ip = parse_ipv4(text);
          if (!ip) {
            error(slice.line, label + ": endpoint address \"" + text + "\" is not IPv4");
            continue;
          }
          if (!is_unicast(*ip)) {  // as the API and the file loader refuse it
            error(slice.line, label + ": endpoint address " + text + " is not a unicast address");
            continue;
          }
          const YAML::Node cond = at(ep, {"conditions"});
          const bool terminating = boolean(at(cond, {"terminating"})).value_or(false);
          // API reference: a nil ready or serving condition means true (serving: as ready).
          const bool ready = boolean(at(cond, {"ready"})).value_or(!terminating);
          const bool serving = boolean(at(cond, {"serving"})).value_or(ready);
          uint32_t weight;
          if (ready && !terminating) {
            weight = 1;
          } else if (serving && terminating) {
            weight = 0;  // drain: keeps its flows, takes no new ones
          } else {
            continue;  // not serving: no traffic at all
          }
          if (auto at = index.find(*ip); at != index.end()) {
            out.backends[at->second].weight = std::max(out.backends[at->second].weight, weight);
          } else {
            index.emplace(*ip, out.backends.size());
            out.backends.push_back({*ip, weight, line_of(ep, slice.offset)});
          }
        }
      }
    }
    for (size_t j = 0; j < out.ports.size(); ++j) {
      if (resolved[j]) {
        if (named_target[j].empty() && out.ports[j].target_port != *resolved[j]) {
          warn(line, label + ": port " + out.ports[j].name + ": targetPort " +
                         std::to_string(out.ports[j].target_port) +
                         " differs from the EndpointSlice's " + std::to_string(*resolved[j]) +
                         "; using the EndpointSlice's");
        }
        out.ports[j].target_port = *resolved[j];
      } else if (!named_target[j].empty()) {
        error(line, label + ": port " + out.ports[j].name + ": named targetPort \"" +
                        named_target[j] + "\" needs an EndpointSlice port named \"" +
                        out.ports[j].name + "\" to resolve it");
      }
    }
  }

  // What the REST API would refuse about the Services among themselves is an error here, so
  // that `l4lbctl apply` refuses the file rather than applying part of it: a name that is
  // not a DNS-1035 label ("<namespace>-<name>" longer than 63 characters), two objects
  // mapped to one name ("a-b" in default and "b" in namespace a), one VIP:port twice.
  void check_together() {
    Config all;
    all.dataplane.maglev_table_size = UINT32_MAX;  // backend counts are the data plane's call
    all.services = result_.services;
    std::vector<bool> refused(all.services.size(), false);
    for (const FieldError& e : validate_services(all)) {
      // e.field is "services[<i>].<rest>", e.message "<e.field>: <what>".
      const size_t i = std::stoul(e.field.substr(e.field.find('[') + 1));
      const std::string prefix = e.field.substr(0, e.field.find(']') + 2);
      error(e.line, labels_[i] + ": " + e.message.substr(prefix.size()));
      refused[i] = true;
    }
    for (size_t i = refused.size(); i-- > 0;) {
      if (refused[i]) {
        result_.services.erase(result_.services.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
  }

  std::string file_;
  KubernetesResult result_;
  std::vector<std::string> labels_;  // "Service ns/name", parallel to result_.services
  std::vector<Object> services_;
  std::map<std::pair<std::string, std::string>, std::vector<Object>> slices_;
  std::set<std::pair<std::string, std::string>> used_slices_;
};

}  // namespace

KubernetesResult load_kubernetes_string(std::string_view yaml, const std::string& file_name) {
  try {
    return Reader(file_name).read(yaml);
  } catch (const std::exception& e) {
    KubernetesResult r;
    r.errors.push_back({file_name, 0, std::string("internal error: ") + e.what()});
    return r;
  }
}

KubernetesResult load_kubernetes_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    KubernetesResult r;
    r.errors.push_back({path, 0, std::string("cannot read file: ") + std::strerror(errno)});
    return r;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return load_kubernetes_string(buf.str(), path);
}

bool looks_like_kubernetes(std::string_view yaml) {
  for (const Document& doc : split_documents(yaml)) {
    try {
      YAML::Node root = YAML::Load(doc.text);
      if (root && root.IsMap()) return at(root, {"kind"}) && at(root, {"apiVersion"});
    } catch (const YAML::Exception&) {
      return false;
    }
  }
  return false;
}

}  // namespace l4lb::config
