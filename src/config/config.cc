#include "src/config/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "lb/prime.h"

namespace l4lb::config {

namespace {

// Bounds an operator can rely on; conf/schema.md lists the same numbers.
constexpr int64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
constexpr int64_t kMaxLcore = 1023;
constexpr int64_t kMinMtu = 68;  // RFC 791: every IPv4 host must accept 68 octets
constexpr int64_t kMaxMtu = 9216;
constexpr int64_t kMinFlowCapacity = 1024;
constexpr int64_t kMaxFlowCapacity = 67108864;
constexpr int64_t kMaxTimeoutS = 604800;  // one week
constexpr int64_t kMinMaglevSize = 101;
constexpr int64_t kMaxMaglevSize = 16777216;
// Maglev (NSDI'16) section 3.4 picks M > 100 x N to keep backend shares within ~1%; below 10 x N
// the imbalance is large enough to call a mistake.
constexpr int64_t kMaglevSlotsPerBackend = 10;
constexpr int64_t kMaxWeight = 1000;
constexpr int64_t kMaxHealthThreshold = 100;
constexpr int64_t kMinHealthIntervalMs = 100;
constexpr int64_t kMinHealthTimeoutMs = 10;
constexpr int64_t kMaxHealthMs = 3600000;
constexpr size_t kMaxLabel = 63;

// A value in the document: the node, its YAML path and the lines errors point at.
struct Ref {
  YAML::Node node;
  std::string path;
  int line = 0;      // the value (the key's line when the value is empty)
  int key_line = 0;  // the key that holds it, or the list item itself
};

int line_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return quote(node.Scalar());
    default:
      return "nothing";
  }
}

// A YAML string the author quoted ('80' or "80"); yaml-cpp tags those "!", plain ones "?".
bool is_quoted(const YAML::Node& node) { return node.Tag() == "!"; }

// "0" or an optional '-' then digits without a leading zero: what YAML 1.1 and 1.2 both read as
// the same decimal number. Values beyond int64 are clamped, so they still read as out of range.
std::optional<int64_t> parse_int(std::string_view text) {
  bool negative = !text.empty() && text[0] == '-';
  std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  if (digits.size() > 18) {
    return negative ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
  }
  int64_t v = 0;
  for (char c : digits) v = v * 10 + (c - '0');
  return negative ? -v : v;
}

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// RFC 1123 label as Kubernetes checks it (port names).
bool is_dns1123_label(std::string_view s) {
  if (s.empty() || s.size() > kMaxLabel) return false;
  if (!is_lower_alnum(s.front()) || !is_lower_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '-'; });
}

// RFC 1035 label as Kubernetes checks it (Service names): a 1123 label starting with a letter.
bool is_dns1035_label(std::string_view s) {
  return is_dns1123_label(s) && s.front() >= 'a' && s.front() <= 'z';
}

// The entries of one YAML mapping, after unknown and duplicate keys were reported.
class MapView {
 public:
  MapView(std::string path, int line) : path_(std::move(path)), line_(line) {}

  const std::string& path() const { return path_; }
  int line() const { return line_; }  // where "missing required key" points
  void add(std::string key, Ref ref) { fields_.emplace_back(std::move(key), std::move(ref)); }
  const Ref* find(std::string_view key) const {
    for (const auto& [k, ref] : fields_) {
      if (k == key) return &ref;
    }
    return nullptr;
  }

 private:
  std::string path_;
  int line_;
  std::vector<std::pair<std::string, Ref>> fields_;
};

// A port whose address was invalid holds 0.0.0.0/0, which contains every address: callers
// check ports_ok_ first.
const PortConfig* port_with_subnet(const std::vector<PortConfig>& ports, uint32_t ip) {
  for (const PortConfig& p : ports) {
    if (p.address.contains(ip)) return &p;
  }
  return nullptr;
}

// A port whose address was invalid holds 0.0.0.0, which is never a unicast address.
const PortConfig* port_with_address(const std::vector<PortConfig>& ports, uint32_t ip) {
  for (const PortConfig& p : ports) {
    if (p.address.addr == ip) return &p;
  }
  return nullptr;
}

std::string service_label(size_t i, const std::string& name) {
  return name.empty() ? index("services", i) : "Service " + quote(name);
}

// Walks the document stream without building nodes. yaml-cpp 0.7 never ends LoadAll() on a
// stray ',' where a document should start (jbeder/yaml-cpp#1040): the parser hands out the same
// empty document forever, allocating each time. Load() stops after one document, so this walk is
// how the loader sees both that stuck position and a second document.
class DocumentScan final : public YAML::EventHandler {
 public:
  const YAML::Mark& start() const { return start_; }
  // Where the document's first node is; nothing for an empty document (a trailing "---").
  const std::optional<YAML::Mark>& content() const { return content_; }

  void OnDocumentStart(const YAML::Mark& mark) override { start_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t /*anchor*/) override { saw(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                const std::string& /*value*/) override {
    saw(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/,
                       YAML::anchor_t /*anchor*/, YAML::EmitterStyle::value /*style*/) override {
    saw(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                  YAML::EmitterStyle::value /*style*/) override {
    saw(mark);
  }
  void OnMapEnd() override {}

 private:
  void saw(const YAML::Mark& mark) {
    if (!content_) content_ = mark;
  }

  YAML::Mark start_ = YAML::Mark::null_mark();
  std::optional<YAML::Mark> content_;
};

// The character at a parser mark, quoted, for "unexpected ..." messages.
std::string token_at(const std::string& text, const YAML::Mark& mark) {
  size_t begin = 0;
  for (int i = 0; i < mark.line && begin != std::string::npos; ++i) {
    begin = text.find('\n', begin);
    if (begin != std::string::npos) ++begin;
  }
  if (begin != std::string::npos && mark.column >= 0) {
    size_t at = begin + static_cast<size_t>(mark.column);
    if (at < text.size() && text[at] > ' ' && text[at] < 0x7f) return quote(text.substr(at, 1));
  }
  return "token";
}

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  LoadResult load(std::string_view yaml);
  ServiceLoadResult load_one_service(std::string_view yaml, const DataplaneConfig& dp);

 private:
  // Reports a second document, or a syntax error yaml-cpp would loop on. False: stop there.
  bool scan_stream(const std::string& text);
  void error(int line, const std::string& path, const std::string& message) {
    errors_.push_back({file_, line, path.empty() ? message : path + ": " + message});
    fields_.push_back({path == "top level" ? "" : path, errors_.back().message, line});
  }
  size_t error_count() const { return errors_.size(); }

  std::optional<MapView> map(const Ref& ref, std::initializer_list<std::string_view> keys);
  const Ref* require(const MapView& m, std::string_view key);
  std::optional<std::vector<Ref>> list(const Ref& ref);

  std::optional<std::string> string(const Ref& ref);
  std::optional<std::string> nonempty_string(const Ref& ref);
  std::optional<int64_t> integer(const Ref& ref, int64_t lo, int64_t hi);
  std::optional<bool> boolean(const Ref& ref);
  std::optional<uint32_t> ipv4(const Ref& ref);
  std::optional<uint32_t> unicast(const Ref& ref);
  std::optional<Ipv4Prefix> network(const Ref& ref);
  std::optional<MacAddr> mac(const Ref& ref);

  void load_root(const Ref& root, Config& config);
  void load_dataplane(const Ref& ref, DataplaneConfig& dp);
  void load_workers(const Ref& ref, std::vector<unsigned>& workers);
  void load_flow_table(const Ref& ref, FlowTableConfig& ft);
  void load_fragments(const Ref& ref, FragmentConfig& frags);
  void load_maglev_size(const Ref& ref, uint32_t& size);
  void load_ports(const Ref& ref, std::vector<PortConfig>& ports);
  std::optional<Ipv4Prefix> port_address(const Ref& ref);
  void load_routes(const Ref& ref, const std::vector<PortConfig>& ports,
                   std::vector<RouteConfig>& routes);
  void load_neighbors(const Ref& ref, const std::vector<PortConfig>& ports,
                      std::vector<NeighborConfig>& neighbors);
  void load_control(const Ref& ref, ControlConfig& control);
  void load_log(const Ref& ref, LogConfig& log);
  std::optional<LogLevel> log_level(const Ref& ref);
  std::optional<int> load_listen(const MapView& m, ListenConfig& listen);
  void load_services(const Ref& ref, const DataplaneConfig& dp, std::vector<ServiceConfig>& out);
  void load_service(const Ref& ref, size_t i, const DataplaneConfig& dp, ServiceConfig& svc,
                    int& name_line);
  void load_service_ports(const Ref& ref, ServiceConfig& svc);
  void load_health_check(const Ref& ref, HealthCheckConfig& hc);
  void load_backends(const Ref& ref, const DataplaneConfig& dp, ServiceConfig& svc);

  // Checks against a port's subnet are skipped when a port address was invalid, so that one
  // typo does not also flag every route and neighbour; likewise for routes and Maglev.
  bool ports_ok_ = true;
  bool routes_ok_ = true;
  bool maglev_ok_ = true;

  std::string file_;
  std::vector<ConfigError> errors_;
  std::vector<FieldError> fields_;  // the same errors with their path apart (single Service)
};

std::optional<MapView> Loader::map(const Ref& ref, std::initializer_list<std::string_view> keys) {
  MapView view(ref.path, ref.key_line);
  if (ref.node.IsNull()) return view;  // "key:" with nothing after it: all defaults
  if (!ref.node.IsMap()) {
    error(ref.line, ref.path.empty() ? "top level" : ref.path,
          "expected a mapping, got " + describe(ref.node));
    return std::nullopt;
  }
  std::map<std::string, int, std::less<>> seen;
  // Copies: yaml-cpp's iterator hands out a temporary pair, so references into it dangle.
  for (auto it = ref.node.begin(); it != ref.node.end(); ++it) {
    const YAML::Node key = it->first;
    int key_line = line_of(key);
    if (!key.IsScalar()) {
      error(key_line, ref.path.empty() ? "top level" : ref.path,
            "expected a plain key, got " + describe(key));
      continue;
    }
    std::string name = key.Scalar();
    std::string path = join(ref.path, name);
    if (std::find(keys.begin(), keys.end(), name) == keys.end()) {
      error(key_line, path, "unknown key");
      continue;
    }
    if (auto first = seen.find(name); first != seen.end()) {
      error(key_line, path, "duplicate key (first at line " + std::to_string(first->second) + ")");
      continue;
    }
    seen.emplace(name, key_line);
    const YAML::Node value = it->second;
    int value_line = value.IsNull() ? key_line : line_of(value);
    view.add(name, Ref{value, path, value_line, key_line});
  }
  return view;
}

const Ref* Loader::require(const MapView& m, std::string_view key) {
  if (const Ref* ref = m.find(key)) return ref;
  error(m.line(), join(m.path(), key), "missing required key");
  return nullptr;
}

std::optional<std::vector<Ref>> Loader::list(const Ref& ref) {
  std::vector<Ref> items;
  if (ref.node.IsNull()) return items;  // every entry commented out
  if (!ref.node.IsSequence()) {
    error(ref.line, ref.path, "expected a list, got " + describe(ref.node));
    return std::nullopt;
  }
  for (size_t i = 0; i < ref.node.size(); ++i) {
    YAML::Node item = ref.node[i];
    int line = line_of(item);
    if (line == 0 || item.IsNull()) line = ref.line;
    items.push_back(Ref{item, index(ref.path, i), line, line});
  }
  return items;
}

std::optional<std::string> Loader::string(const Ref& ref) {
  if (!ref.node.IsScalar()) {
    error(ref.line, ref.path, "expected a string, got " + describe(ref.node));
    return std::nullopt;
  }
  return ref.node.Scalar();
}

std::optional<std::string> Loader::nonempty_string(const Ref& ref) {
  auto s = string(ref);
  if (s && s->empty()) {
    error(ref.line, ref.path, "must not be empty");
    return std::nullopt;
  }
  return s;
}

// YAML 1.2 core schema booleans only: `yes`/`on` (YAML 1.1) are errors, not surprises.
std::optional<bool> Loader::boolean(const Ref& ref) {
  if (ref.node.IsScalar() && !is_quoted(ref.node)) {
    const std::string& text = ref.node.Scalar();
    if (text == "true") return true;
    if (text == "false") return false;
  }
  error(ref.line, ref.path, "expected true or false, got " +
                                (ref.node.IsScalar() ? quote(ref.node.Scalar()) : describe(ref.node)));
  return std::nullopt;
}

std::optional<int64_t> Loader::integer(const Ref& ref, int64_t lo, int64_t hi) {
  if (!ref.node.IsScalar()) {
    error(ref.line, ref.path, "expected an integer, got " + describe(ref.node));
    return std::nullopt;
  }
  const std::string& text = ref.node.Scalar();
  auto v = parse_int(text);
  if (!v) {
    error(ref.line, ref.path, quote(text) + " is not an integer");
    return std::nullopt;
  }
  if (is_quoted(ref.node)) {
    error(ref.line, ref.path, quote(text) + " is a string, not an integer (remove the quotes)");
    return std::nullopt;
  }
  if (*v < lo || *v > hi) {
    error(ref.line, ref.path,
          text + " is out of range " + std::to_string(lo) + "-" + std::to_string(hi));
    return std::nullopt;
  }
  return v;
}

std::optional<uint32_t> Loader::ipv4(const Ref& ref) {
  auto s = string(ref);
  if (!s) return std::nullopt;
  auto ip = parse_ipv4(*s);
  if (!ip) error(ref.line, ref.path, quote(*s) + " is not an IPv4 address");
  return ip;
}

std::optional<uint32_t> Loader::unicast(const Ref& ref) {
  auto ip = ipv4(ref);
  if (ip && !is_unicast(*ip)) {
    error(ref.line, ref.path, format_ipv4(*ip) + " is not a unicast address");
    return std::nullopt;
  }
  return ip;
}

// A network (route, source range): the host bits must be clear, as Kubernetes requires for
// loadBalancerSourceRanges, because a stray host bit usually means a typo in the length.
std::optional<Ipv4Prefix> Loader::network(const Ref& ref) {
  auto s = string(ref);
  if (!s) return std::nullopt;
  auto p = parse_ipv4_prefix(*s);
  if (!p) {
    error(ref.line, ref.path, quote(*s) + " is not an IPv4 CIDR");
    return std::nullopt;
  }
  if (p->addr != p->network()) {
    error(ref.line, ref.path,
          quote(*s) + " has host bits set; did you mean " + format_prefix({p->network(), p->len}) +
              "?");
    return std::nullopt;
  }
  return p;
}

std::optional<MacAddr> Loader::mac(const Ref& ref) {
  auto s = string(ref);
  if (!s) return std::nullopt;
  auto m = parse_mac(*s);
  if (!m) {
    error(ref.line, ref.path, quote(*s) + " is not a MAC address");
    return std::nullopt;
  }
  if (m->is_multicast()) {
    error(ref.line, ref.path, quote(*s) + " is a multicast MAC address");
    return std::nullopt;
  }
  return m;
}

LoadResult Loader::load(std::string_view yaml) {
  std::string text(yaml);
  YAML::Node root;
  try {
    if (!scan_stream(text)) return {std::nullopt, std::move(errors_)};
    root = YAML::Load(text);  // the first document only
  } catch (const YAML::Exception& e) {
    error(e.mark.is_null() ? 0 : e.mark.line + 1, "", "YAML syntax error: " + e.msg);
    return {std::nullopt, std::move(errors_)};
  }
  Config config;
  config.file = file_;
  int root_line = root.IsNull() ? 1 : std::max(line_of(root), 1);
  load_root(Ref{root, "", root_line, root_line}, config);

  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  if (!errors_.empty()) return {std::nullopt, std::move(errors_)};
  return {std::move(config), {}};
}

ServiceLoadResult Loader::load_one_service(std::string_view yaml, const DataplaneConfig& dp) {
  std::string text(yaml);
  YAML::Node root;
  try {
    if (!scan_stream(text)) return {std::nullopt, std::move(fields_)};
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    error(e.mark.is_null() ? 0 : e.mark.line + 1, "", "YAML syntax error: " + e.msg);
    return {std::nullopt, std::move(fields_)};
  }
  if (root.IsNull()) {
    error(1, "", "expected a Service (a mapping), got nothing");
    return {std::nullopt, std::move(fields_)};
  }
  ServiceConfig svc;
  int root_line = std::max(line_of(root), 1);
  svc.line = root_line;
  int name_line = root_line;
  // The path is relative to the Service: "vip", "ports[0].port".
  load_service(Ref{root, "", root_line, root_line}, 0, dp, svc, name_line);
  std::stable_sort(fields_.begin(), fields_.end(),
                   [](const FieldError& a, const FieldError& b) { return a.line < b.line; });
  if (!fields_.empty()) return {std::nullopt, std::move(fields_)};
  return {std::move(svc), {}};
}

bool Loader::scan_stream(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentScan scan;
  int documents = 0;
  int previous_start = -1;
  while (documents < 2) {
    scan = DocumentScan();
    if (!parser.HandleNextDocument(scan)) break;
    const YAML::Mark& start = scan.start();
    if (start.pos == previous_start) {  // the parser did not move: it is stuck on a token
      error(start.line + 1, "", "YAML syntax error: unexpected " + token_at(text, start));
      return false;
    }
    previous_start = start.pos;
    if (scan.content() && ++documents == 2) {
      error(scan.content()->line + 1, "", "only one YAML document is allowed (found a second one)");
    }
  }
  return true;
}

void Loader::load_root(const Ref& root, Config& config) {
  auto m = map(root, {"dataplane", "control", "services"});
  if (!m) return;
  // The data plane first: Services are checked against its ports, routes and Maglev size.
  if (auto dp = require(*m, "dataplane")) {
    load_dataplane(*dp, config.dataplane);
  } else {
    ports_ok_ = routes_ok_ = maglev_ok_ = false;
  }
  if (auto control = m->find("control")) load_control(*control, config.control);
  if (auto services = m->find("services")) {
    load_services(*services, config.dataplane, config.services);
  }
}

void Loader::load_dataplane(const Ref& ref, DataplaneConfig& dp) {
  auto m =
      map(ref, {"eal", "workers", "flowTable", "maglevTableSize", "ports", "routes", "neighbors",
                "answerVipPings", "icmpErrorsPerSecond", "fragments"});
  if (!m) {
    ports_ok_ = routes_ok_ = maglev_ok_ = false;
    return;
  }
  if (auto eal = m->find("eal")) {
    if (auto items = list(*eal)) {
      for (const Ref& item : *items) {
        if (auto arg = string(item)) dp.eal.push_back(*arg);
      }
    }
  }
  if (auto workers = m->find("workers")) load_workers(*workers, dp.workers);
  if (auto ft = m->find("flowTable")) load_flow_table(*ft, dp.flow_table);
  if (auto size = m->find("maglevTableSize")) load_maglev_size(*size, dp.maglev_table_size);
  if (auto pings = m->find("answerVipPings")) {
    if (auto v = boolean(*pings)) dp.answer_vip_pings = *v;
  }
  if (auto rate = m->find("icmpErrorsPerSecond")) {
    if (auto v = integer(*rate, 0, 1000000)) dp.icmp_errors_per_s = static_cast<uint32_t>(*v);
  }
  if (auto frags = m->find("fragments")) load_fragments(*frags, dp.fragments);
  if (auto ports = require(*m, "ports")) {
    load_ports(*ports, dp.ports);
  } else {
    ports_ok_ = false;
  }
  if (auto routes = m->find("routes")) load_routes(*routes, dp.ports, dp.routes);
  if (auto neighbors = m->find("neighbors")) {
    load_neighbors(*neighbors, dp.ports, dp.neighbors);
  }
}

void Loader::load_workers(const Ref& ref, std::vector<unsigned>& workers) {
  auto items = list(ref);
  if (!items) return;
  workers.clear();
  if (items->empty()) {
    error(ref.line, ref.path, "must list at least one lcore");
    return;
  }
  std::map<int64_t, int> seen;
  for (const Ref& item : *items) {
    auto lcore = integer(item, 0, kMaxLcore);
    if (!lcore) continue;
    if (auto first = seen.find(*lcore); first != seen.end()) {
      error(item.line, item.path,
            "duplicate lcore " + std::to_string(*lcore) + " (first at line " +
                std::to_string(first->second) + ")");
      continue;
    }
    seen.emplace(*lcore, item.line);
    workers.push_back(static_cast<unsigned>(*lcore));
  }
}

void Loader::load_flow_table(const Ref& ref, FlowTableConfig& ft) {
  auto m = map(
      ref, {"capacity", "tcpTimeoutSeconds", "tcpTransitoryTimeoutSeconds", "udpTimeoutSeconds"});
  if (!m) return;
  if (auto f = m->find("capacity")) {
    if (auto v = integer(*f, kMinFlowCapacity, kMaxFlowCapacity)) {
      ft.capacity = static_cast<uint32_t>(*v);
    }
  }
  const std::pair<std::string_view, uint32_t*> timeouts[] = {
      {"tcpTimeoutSeconds", &ft.tcp_timeout_s},
      {"tcpTransitoryTimeoutSeconds", &ft.tcp_transitory_timeout_s},
      {"udpTimeoutSeconds", &ft.udp_timeout_s},
  };
  for (const auto& [key, out] : timeouts) {
    if (auto f = m->find(key)) {
      if (auto v = integer(*f, 1, kMaxTimeoutS)) *out = static_cast<uint32_t>(*v);
    }
  }
}

void Loader::load_fragments(const Ref& ref, FragmentConfig& frags) {
  auto m = map(ref, {"datagrams", "heldFragments", "timeoutSeconds"});
  if (!m) return;
  // Held fragments are mbufs taken from the port's pool: keep the bound well under it.
  const std::tuple<std::string_view, uint32_t*, int64_t, int64_t> keys[] = {
      {"datagrams", &frags.datagrams, 16, 1 << 20},
      {"heldFragments", &frags.held_fragments, 0, 4096},
      {"timeoutSeconds", &frags.timeout_s, 1, 60},
  };
  for (const auto& [key, out, lo, hi] : keys) {
    if (auto f = m->find(key)) {
      if (auto v = integer(*f, lo, hi)) *out = static_cast<uint32_t>(*v);
    }
  }
}

void Loader::load_maglev_size(const Ref& ref, uint32_t& size) {
  maglev_ok_ = false;
  auto v = integer(ref, 0, kMaxU32);
  if (!v) return;
  if (*v < kMinMaglevSize) {
    error(ref.line, ref.path,
          std::to_string(*v) + " is too small (minimum " + std::to_string(kMinMaglevSize) + ")");
  } else if (*v > kMaxMaglevSize) {
    error(ref.line, ref.path,
          std::to_string(*v) + " is too large (maximum " + std::to_string(kMaxMaglevSize) + ")");
  } else if (!is_prime(static_cast<uint64_t>(*v))) {
    // Maglev paper, section 3.4: the permutation needs M prime to visit every slot.
    error(ref.line, ref.path, std::to_string(*v) + " is not prime");
  } else {
    size = static_cast<uint32_t>(*v);
    maglev_ok_ = true;
  }
}

// A port's address is the port's own IP plus its subnet length, so host bits are expected.
std::optional<Ipv4Prefix> Loader::port_address(const Ref& ref) {
  auto s = string(ref);
  if (!s) return std::nullopt;
  auto p = parse_ipv4_prefix(*s);
  if (!p) {
    std::string message = quote(*s) + " is not an IPv4 CIDR";
    if (parse_ipv4(*s)) message += " (a port address needs a prefix length, like " + *s + "/24)";
    error(ref.line, ref.path, message);
    return std::nullopt;
  }
  if (!is_unicast(p->addr)) {
    error(ref.line, ref.path, format_ipv4(p->addr) + " is not a unicast address");
    return std::nullopt;
  }
  if (p->len == 0) {
    error(ref.line, ref.path, quote(*s) + " needs a prefix length of 1-32");
    return std::nullopt;
  }
  if (p->len <= 30) {  // /31 (RFC 3021) and /32 have no network or broadcast address
    uint32_t host = p->addr & ~p->mask();
    if (host == 0) {
      error(ref.line, ref.path, quote(*s) + " is the subnet's network address, not a host");
      return std::nullopt;
    }
    if (host == ~p->mask()) {
      error(ref.line, ref.path, quote(*s) + " is the subnet's broadcast address, not a host");
      return std::nullopt;
    }
  }
  return p;
}

void Loader::load_ports(const Ref& ref, std::vector<PortConfig>& ports) {
  auto items = list(ref);
  if (!items) {
    ports_ok_ = false;
    return;
  }
  if (items->empty()) {
    error(ref.line, ref.path, "must list at least one port");
    ports_ok_ = false;
    return;
  }
  std::map<std::string, int> names;
  std::map<std::string, int> devices;
  for (const Ref& item : *items) {
    auto m = map(item, {"name", "device", "address", "mtu", "mac", "promiscuous", "tap"});
    if (!m) {
      ports_ok_ = false;
      continue;
    }
    PortConfig port;
    port.line = item.line;
    if (auto f = require(*m, "name")) {
      if (auto name = string(*f)) {
        if (!is_dns1123_label(*name)) {
          error(f->line, f->path,
                quote(*name) +
                    " is not a valid port name (lowercase letters, digits and '-', starting and "
                    "ending with a letter or digit, at most 63 characters)");
        } else if (auto first = names.find(*name); first != names.end()) {
          error(f->line, f->path,
                "duplicate port name " + quote(*name) + " (first at line " +
                    std::to_string(first->second) + ")");
        } else {
          names.emplace(*name, f->line);
        }
        port.name = *name;
      }
    }
    if (auto f = require(*m, "device")) {
      if (auto device = nonempty_string(*f)) {
        if (auto first = devices.find(*device); first != devices.end()) {
          error(f->line, f->path,
                "duplicate device " + quote(*device) + " (first at line " +
                    std::to_string(first->second) + ")");
        } else {
          devices.emplace(*device, f->line);
        }
        port.device = *device;
      }
    }
    bool address_ok = false;
    if (auto f = require(*m, "address")) {
      if (auto address = port_address(*f)) {
        port.address = *address;
        address_ok = true;
        for (const PortConfig& other : ports) {
          if (other.address.addr == 0) continue;  // its address was invalid
          Ipv4Prefix mine{address->network(), address->len};
          Ipv4Prefix theirs{other.address.network(), other.address.len};
          if (other.address.contains(mine.addr) || address->contains(theirs.addr)) {
            error(f->line, f->path,
                  "subnet " + format_prefix(mine) + " overlaps port " + quote(other.name) + " (" +
                      format_prefix(theirs) + ")");
            address_ok = false;
            break;
          }
        }
      }
    }
    if (!address_ok) ports_ok_ = false;
    if (auto f = m->find("mtu")) {
      if (auto v = integer(*f, kMinMtu, kMaxMtu)) port.mtu = static_cast<uint32_t>(*v);
    }
    if (auto f = m->find("mac")) port.mac = mac(*f);
    if (auto f = m->find("promiscuous")) {
      if (auto v = boolean(*f)) port.promiscuous = *v;
    }
    if (auto f = m->find("tap")) {
      // A Linux interface name: 1-15 characters, no '/', ':' or white space.
      if (auto tap = nonempty_string(*f)) {
        bool ok = tap->size() <= 15 && std::all_of(tap->begin(), tap->end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                           c == '.';
                  });
        if (ok) {
          port.tap = *tap;
        } else {
          error(f->line, f->path,
                quote(*tap) +
                    " is not a valid interface name (at most 15 letters, digits, "
                    "'-', '_' or '.')");
        }
      }
    }
    if (!address_ok) port.address = Ipv4Prefix{};
    ports.push_back(std::move(port));
  }
}

void Loader::load_routes(const Ref& ref, const std::vector<PortConfig>& ports,
                         std::vector<RouteConfig>& routes) {
  size_t before = error_count();
  auto items = list(ref);
  if (!items) {
    routes_ok_ = false;
    return;
  }
  std::map<std::pair<uint32_t, uint8_t>, int> seen;
  for (const Ref& item : *items) {
    auto m = map(item, {"prefix", "via"});
    if (!m) continue;
    RouteConfig route;
    route.line = item.line;
    if (auto f = require(*m, "prefix")) {
      if (auto p = network(*f)) {
        route.prefix = *p;
        auto key = std::make_pair(p->addr, p->len);
        if (auto first = seen.find(key); first != seen.end()) {
          error(f->line, f->path,
                "duplicate route " + format_prefix(*p) + " (first at line " +
                    std::to_string(first->second) + ")");
        } else {
          seen.emplace(key, f->line);
        }
      }
    }
    if (auto f = m->find("via")) {
      if (auto via = unicast(*f)) {
        route.via = *via;
        if (ports_ok_) {
          if (const PortConfig* own = port_with_address(ports, *via)) {
            error(f->line, f->path,
                  "next hop " + format_ipv4(*via) + " is the address of port " + quote(own->name));
          } else if (!port_with_subnet(ports, *via)) {
            error(f->line, f->path,
                  "next hop " + format_ipv4(*via) + " is not in any port's subnet");
          }
        }
      }
    }
    routes.push_back(route);
  }
  if (error_count() != before) routes_ok_ = false;
}

void Loader::load_neighbors(const Ref& ref, const std::vector<PortConfig>& ports,
                            std::vector<NeighborConfig>& neighbors) {
  auto items = list(ref);
  if (!items) return;
  std::map<uint32_t, int> seen;
  for (const Ref& item : *items) {
    auto m = map(item, {"ip", "mac"});
    if (!m) continue;
    NeighborConfig neighbor;
    neighbor.line = item.line;
    if (auto f = require(*m, "ip")) {
      if (auto ip = unicast(*f)) {
        neighbor.ip = *ip;
        if (auto first = seen.find(*ip); first != seen.end()) {
          error(f->line, f->path,
                "duplicate neighbor " + format_ipv4(*ip) + " (first at line " +
                    std::to_string(first->second) + ")");
        } else {
          seen.emplace(*ip, f->line);
        }
        if (ports_ok_) {
          if (const PortConfig* own = port_with_address(ports, *ip)) {
            error(f->line, f->path,
                  format_ipv4(*ip) + " is the address of port " + quote(own->name));
          } else if (!port_with_subnet(ports, *ip)) {
            error(f->line, f->path, format_ipv4(*ip) + " is not in any port's subnet");
          }
        }
      }
    }
    if (auto f = require(*m, "mac")) {
      if (auto mac_addr = mac(*f)) neighbor.mac = *mac_addr;
    }
    neighbors.push_back(neighbor);
  }
}

void Loader::load_control(const Ref& ref, ControlConfig& control) {
  auto m = map(ref, {"api", "metrics", "log"});
  if (!m) return;
  if (auto f = m->find("log")) load_log(*f, control.log);
  std::optional<int> api_line;
  std::optional<int> metrics_line;
  if (auto f = m->find("api")) {
    if (auto api = map(*f, {"listen", "tokenFile"})) {
      api_line = load_listen(*api, control.api);
      if (auto t = api->find("tokenFile")) {
        if (auto path = nonempty_string(*t)) control.api_token_file = *path;
      }
    }
  }
  if (auto f = m->find("metrics")) {
    if (auto metrics = map(*f, {"listen"})) metrics_line = load_listen(*metrics, control.metrics);
  }
  // Port 0 asks the kernel for a free port, so it never conflicts.
  const ListenConfig& a = control.api;
  const ListenConfig& b = control.metrics;
  bool overlap = a.host == b.host || a.host == "0.0.0.0" || b.host == "0.0.0.0";
  if ((api_line || metrics_line) && a.port != 0 && a.port == b.port && overlap) {
    int line = metrics_line ? *metrics_line : *api_line;
    std::string path = metrics_line ? "control.metrics.listen" : "control.api.listen";
    std::string other = metrics_line ? "control.api" : "control.metrics";
    const ListenConfig& mine = metrics_line ? b : a;
    error(line, path, mine.host + ":" + std::to_string(mine.port) + " is already used by " + other);
  }
}

std::optional<LogLevel> Loader::log_level(const Ref& ref) {
  auto s = string(ref);
  if (!s) return std::nullopt;
  auto level = parse_log_level(*s);
  if (!level) error(ref.line, ref.path, quote(*s) + " is not a log level (error, warning, info, debug)");
  return level;
}

void Loader::load_log(const Ref& ref, LogConfig& log) {
  auto m = map(ref, {"level", "modules", "dataPathLinesPerSecond"});
  if (!m) return;
  if (auto f = m->find("level")) {
    if (auto level = log_level(*f)) log.level = *level;
  }
  if (auto f = m->find("modules")) {
    std::initializer_list<std::string_view> names = {
#define L4LB_X(e, name) name,
        L4LB_LOG_MODULES(L4LB_X)
#undef L4LB_X
    };
    if (auto modules = map(*f, names)) {
      for (std::string_view name : names) {
        if (auto g = modules->find(name)) {
          if (auto level = log_level(*g)) log.modules.emplace_back(*parse_log_module(name), *level);
        }
      }
    }
  }
  if (auto f = m->find("dataPathLinesPerSecond")) {
    if (auto n = integer(*f, 1, 1000)) log.data_path_lines_per_second = static_cast<uint32_t>(*n);
  }
}

// Returns the line of a valid "listen", or nothing when absent or invalid.
std::optional<int> Loader::load_listen(const MapView& m, ListenConfig& listen) {
  auto f = m.find("listen");
  if (!f) return std::nullopt;
  auto s = string(*f);
  if (!s) return std::nullopt;
  size_t colon = s->rfind(':');
  if (colon == std::string::npos) {
    error(f->line, f->path, quote(*s) + " is not host:port (like 127.0.0.1:9180)");
    return std::nullopt;
  }
  std::string host = s->substr(0, colon);
  std::string port_text = s->substr(colon + 1);
  bool ok = true;
  if (host == "localhost") host = "127.0.0.1";
  if (!parse_ipv4(host)) {
    error(f->line, f->path, "host " + quote(host) + " is not an IPv4 address or localhost");
    ok = false;
  }
  auto port = parse_int(port_text);
  if (!port) {
    error(f->line, f->path, "port " + quote(port_text) + " is not an integer");
    ok = false;
  } else if (*port < 0 || *port > 65535) {
    error(f->line, f->path, "port " + port_text + " is out of range 0-65535");
    ok = false;
  }
  if (!ok) return std::nullopt;
  listen.host = host;
  listen.port = static_cast<uint16_t>(*port);
  return f->line;
}

void Loader::load_services(const Ref& ref, const DataplaneConfig& dp,
                           std::vector<ServiceConfig>& out) {
  auto items = list(ref);
  if (!items) return;
  std::map<std::string, int> names;
  // (protocol, VIP, port) -> who exposes it; Kubernetes lets Services share a VIP on other ports.
  std::map<std::tuple<Protocol, uint32_t, uint16_t>, std::string> exposed;
  for (size_t i = 0; i < items->size(); ++i) {
    const Ref& item = (*items)[i];
    ServiceConfig svc;
    svc.line = item.line;
    int name_line = item.line;
    load_service(item, i, dp, svc, name_line);
    bool vip_ok = svc.vip != 0;
    if (!svc.name.empty() && is_dns1035_label(svc.name)) {
      if (auto first = names.find(svc.name); first != names.end()) {
        error(name_line, index("services", i) + ".name",
              "duplicate Service name " + quote(svc.name) + " (first at line " +
                  std::to_string(first->second) + ")");
      } else {
        names.emplace(svc.name, name_line);
      }
    }
    if (vip_ok) {
      for (size_t j = 0; j < svc.ports.size(); ++j) {
        const ServicePortConfig& sp = svc.ports[j];
        if (sp.port == 0) continue;  // had an error, already reported
        auto key = std::make_tuple(sp.protocol, svc.vip, sp.port);
        std::string who =
            service_label(i, svc.name) + (sp.name.empty() ? "" : " port " + quote(sp.name));
        auto [it, inserted] = exposed.emplace(key, who);
        if (!inserted) {
          error(sp.line, index(index("services", i) + ".ports", j),
                std::string(sp.protocol == Protocol::kTcp ? "TCP " : "UDP ") +
                    format_ipv4(svc.vip) + ":" + std::to_string(sp.port) +
                    " is already exposed by " + it->second);
        }
      }
    }
    out.push_back(std::move(svc));
  }
}

void Loader::load_service(const Ref& ref, size_t i, const DataplaneConfig& dp, ServiceConfig& svc,
                          int& name_line) {
  auto m = map(ref, {"name", "vip", "ports", "loadBalancerSourceRanges", "sessionAffinity",
                     "healthCheck", "backends", "allUnhealthy", "unhealthyFlows",
                     "externalTrafficPolicy", "healthCheckNodePort"});
  if (!m) return;
  if (auto f = require(*m, "name")) {
    name_line = f->line;
    if (auto name = string(*f)) {
      svc.name = *name;
      if (!is_dns1035_label(*name)) {
        error(f->line, f->path,
              quote(*name) +
                  " is not a valid Service name (lowercase letters, digits and '-', starting with "
                  "a letter, ending with a letter or digit, at most 63 characters)");
      }
    }
  }
  if (auto f = require(*m, "vip")) {
    if (auto vip = unicast(*f)) {
      if (const PortConfig* own = port_with_address(dp.ports, *vip)) {
        error(f->line, f->path, format_ipv4(*vip) + " is the address of port " + quote(own->name));
      } else {
        svc.vip = *vip;
      }
    }
  }
  if (auto f = require(*m, "ports")) load_service_ports(*f, svc);
  if (auto f = m->find("loadBalancerSourceRanges")) {
    if (auto items = list(*f)) {
      for (const Ref& item : *items) {
        if (auto p = network(item)) svc.source_ranges.push_back(*p);
      }
    }
  }
  if (auto f = m->find("sessionAffinity")) {
    if (auto s = string(*f)) {
      if (*s == "None") {
        svc.session_affinity = SessionAffinity::kNone;
      } else if (*s == "ClientIP") {
        svc.session_affinity = SessionAffinity::kClientIp;
      } else {
        error(f->line, f->path, quote(*s) + " is not a valid sessionAffinity (None or ClientIP)");
      }
    }
  }
  if (auto f = m->find("healthCheck")) {
    svc.health_check.emplace();
    load_health_check(*f, *svc.health_check);
  }
  auto choice = [&](const char* key, std::initializer_list<const char*> allowed) -> int {
    auto f = m->find(key);
    if (!f) return -1;
    auto s = string(*f);
    if (!s) return -1;
    int index = 0;
    std::string names;
    for (const char* a : allowed) {
      if (*s == a) return index;
      names += (index++ ? ", " : "") + std::string(a);
    }
    error(f->line, f->path, quote(*s) + " is not a valid " + key + " (" + names + ")");
    return -1;
  };
  if (int c = choice("allUnhealthy", {"spread", "drop", "reject"}); c >= 0) {
    svc.all_unhealthy = static_cast<AllUnhealthy>(c);
  }
  if (int c = choice("unhealthyFlows", {"repick", "keep"}); c >= 0) {
    svc.unhealthy_flows_repick = c == 0;
  }
  if (int c = choice("externalTrafficPolicy", {"Cluster", "Local"}); c >= 0) {
    svc.external_traffic_local = c == 1;
  }
  if (auto f = m->find("healthCheckNodePort")) {
    if (auto v = integer(*f, 1, 65535)) svc.health_check_node_port = static_cast<uint16_t>(*v);
  }
  if (svc.external_traffic_local && svc.health_check_node_port == 0) {
    error(ref.line, ref.path + ".healthCheckNodePort",
          "externalTrafficPolicy: Local needs healthCheckNodePort (kube-proxy serves "
          "/healthz there)");
  }
  if (auto f = m->find("backends")) {
    load_backends(*f, dp, svc);
    // Checked per Service: all of a Service's ports share its backend list.
    int64_t needed = kMaglevSlotsPerBackend * static_cast<int64_t>(svc.backends.size());
    if (maglev_ok_ && dp.maglev_table_size < needed) {
      error(f->key_line, f->path,
            std::to_string(svc.backends.size()) + " backends for " + service_label(i, svc.name) +
                " need dataplane.maglevTableSize >= " + std::to_string(needed) + " (it is " +
                std::to_string(dp.maglev_table_size) + ")");
    }
  }
}

void Loader::load_service_ports(const Ref& ref, ServiceConfig& svc) {
  auto items = list(ref);
  if (!items) return;
  if (items->empty()) {
    error(ref.line, ref.path, "must list at least one port");
    return;
  }
  std::map<std::string, int> names;
  for (const Ref& item : *items) {
    // One entry per item, valid or not, so that svc.ports[j] is services[i].ports[j].
    ServicePortConfig& sp = svc.ports.emplace_back();
    sp.line = item.line;
    size_t before = error_count();
    auto m = map(item, {"name", "protocol", "port", "targetPort", "nodePort"});
    if (!m) continue;
    if (auto f = m->find("name")) {
      if (auto name = string(*f)) {
        sp.name = *name;
        if (!is_dns1123_label(*name)) {
          error(f->line, f->path,
                quote(*name) +
                    " is not a valid port name (lowercase letters, digits and '-', starting and "
                    "ending with a letter or digit, at most 63 characters)");
        } else if (auto first = names.find(*name); first != names.end()) {
          error(f->line, f->path,
                "duplicate port name " + quote(*name) + " (first at line " +
                    std::to_string(first->second) + ")");
        } else {
          names.emplace(*name, f->line);
        }
      }
    } else if (items->size() > 1) {
      // As Kubernetes: names tell the ports apart in the API and in metrics.
      error(item.line, item.path + ".name", "required when a Service has more than one port");
    }
    if (auto f = m->find("protocol")) {
      if (auto s = string(*f)) {
        if (*s == "TCP") {
          sp.protocol = Protocol::kTcp;
        } else if (*s == "UDP") {
          sp.protocol = Protocol::kUdp;
        } else if (*s == "SCTP") {
          error(f->line, f->path, "\"SCTP\" is not supported (TCP or UDP)");
        } else {
          error(f->line, f->path, quote(*s) + " is not a valid protocol (TCP or UDP)");
        }
      }
    }
    bool port_ok = false;
    if (auto f = require(*m, "port")) {
      if (auto v = integer(*f, 1, 65535)) {
        sp.port = static_cast<uint16_t>(*v);
        port_ok = true;
      }
    }
    if (auto f = m->find("targetPort")) {
      if (f->node.IsScalar() && !parse_int(f->node.Scalar())) {
        error(f->line, f->path,
              "named port " + quote(f->node.Scalar()) + " is not supported; give a number");
      } else if (auto v = integer(*f, 1, 65535)) {
        sp.target_port = static_cast<uint16_t>(*v);
      }
    } else if (port_ok) {
      sp.target_port = sp.port;
    }
    if (auto f = m->find("nodePort")) {
      if (auto v = integer(*f, 1, 65535)) sp.node_port = static_cast<uint16_t>(*v);
    }
    // port 0 leaves a port with any mistake out of the check for ports exposed twice.
    if (error_count() != before) sp.port = 0;
  }
}

void Loader::load_health_check(const Ref& ref, HealthCheckConfig& hc) {
  auto m = map(ref, {"type", "port", "path", "intervalMs", "timeoutMs", "healthyThreshold",
                     "unhealthyThreshold", "expectCodes", "host"});
  if (!m) return;
  if (auto f = m->find("expectCodes")) {
    if (auto items = list(*f)) {
      for (const Ref& item : *items) {
        if (auto v = integer(item, 100, 599)) hc.expect_codes.push_back(static_cast<int>(*v));
      }
    }
  }
  if (auto f = m->find("host")) {
    if (auto s = nonempty_string(*f)) {
      // A Host header value: no white space or control characters (no header injection).
      bool clean = std::none_of(s->begin(), s->end(), [](char c) {
        return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
      });
      if (clean) {
        hc.host = *s;
      } else {
        error(f->line, f->path, quote(*s) + " contains spaces or control characters");
      }
    }
  }
  if (auto f = m->find("type")) {
    if (auto s = string(*f)) {
      if (*s == "tcp") {
        hc.type = HealthCheckType::kTcp;
      } else if (*s == "http") {
        hc.type = HealthCheckType::kHttp;
      } else if (*s == "none") {
        hc.type = HealthCheckType::kNone;
      } else {
        error(f->line, f->path, quote(*s) + " is not a valid type (tcp, http or none)");
      }
    }
  }
  if (auto f = m->find("port")) {
    if (auto v = integer(*f, 1, 65535)) hc.port = static_cast<uint16_t>(*v);
  }
  if (auto f = m->find("path")) {
    if (auto s = string(*f)) {
      bool clean = std::none_of(s->begin(), s->end(), [](char c) {
        return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
      });
      if (s->empty() || s->front() != '/') {
        error(f->line, f->path, quote(*s) + " is not an absolute path (it must start with '/')");
      } else if (!clean) {
        error(f->line, f->path, quote(*s) + " contains spaces or control characters");
      } else {
        hc.path = *s;
      }
    }
  }
  bool interval_ok = true;
  if (auto f = m->find("intervalMs")) {
    auto v = integer(*f, kMinHealthIntervalMs, kMaxHealthMs);
    if (v) hc.interval_ms = static_cast<uint32_t>(*v);
    interval_ok = v.has_value();
  }
  if (auto f = m->find("timeoutMs")) {
    if (auto v = integer(*f, kMinHealthTimeoutMs, kMaxHealthMs)) {
      // A probe still running when the next one is due would overlap it.
      if (interval_ok && *v > hc.interval_ms) {
        error(f->line, f->path,
              std::to_string(*v) + " is longer than intervalMs " + std::to_string(hc.interval_ms));
      } else {
        hc.timeout_ms = static_cast<uint32_t>(*v);
      }
    }
  } else if (hc.timeout_ms > hc.interval_ms) {
    // The default timeout must not outlast a shorter interval either (and the config shown
    // by GET /v1/services, with the timeout spelled out, must load again).
    hc.timeout_ms = hc.interval_ms;
  }
  if (auto f = m->find("healthyThreshold")) {
    if (auto v = integer(*f, 1, kMaxHealthThreshold)) {
      hc.healthy_threshold = static_cast<uint32_t>(*v);
    }
  }
  if (auto f = m->find("unhealthyThreshold")) {
    if (auto v = integer(*f, 1, kMaxHealthThreshold)) {
      hc.unhealthy_threshold = static_cast<uint32_t>(*v);
    }
  }
}

void Loader::load_backends(const Ref& ref, const DataplaneConfig& dp, ServiceConfig& svc) {
  auto items = list(ref);
  if (!items) return;
  std::map<uint32_t, int> seen;
  for (const Ref& item : *items) {
    auto m = map(item, {"ip", "weight"});
    if (!m) continue;
    BackendConfig backend;
    backend.line = item.line;
    if (auto f = require(*m, "ip")) {
      if (auto ip = unicast(*f)) {
        backend.ip = *ip;
        if (auto first = seen.find(*ip); first != seen.end()) {
          error(f->line, f->path,
                "duplicate backend " + format_ipv4(*ip) + " (first at line " +
                    std::to_string(first->second) + ")");
        } else {
          seen.emplace(*ip, f->line);
        }
        bool routed = port_with_subnet(dp.ports, *ip) != nullptr ||
                      std::any_of(dp.routes.begin(), dp.routes.end(),
                                  [&](const RouteConfig& r) { return r.prefix.contains(*ip); });
        if (*ip == svc.vip) {
          error(f->line, f->path, format_ipv4(*ip) + " is the Service's own VIP");
        } else if (const PortConfig* own = port_with_address(dp.ports, *ip)) {
          error(f->line, f->path, format_ipv4(*ip) + " is the address of port " + quote(own->name));
        } else if (ports_ok_ && routes_ok_ && !routed) {
          error(f->line, f->path,
                "no route to " + format_ipv4(*ip) + " (not in any port's subnet or route)");
        }
      }
    }
    if (auto f = m->find("weight")) {
      if (auto v = integer(*f, 0, kMaxWeight)) backend.weight = static_cast<uint32_t>(*v);
    }
    svc.backends.push_back(backend);
  }
}

}  // namespace

std::string ConfigError::to_string() const {
  return file + ":" + std::to_string(line) + ": " + message;
}

LoadResult load_config_string(std::string_view yaml, const std::string& file_name) {
  try {
    return Loader(file_name).load(yaml);
  } catch (const std::exception& e) {
    // Not expected (yaml-cpp errors are caught inside); keep the promise never to throw.
    return {std::nullopt, {{file_name, 0, std::string("internal error: ") + e.what()}}};
  }
}

ServiceLoadResult load_service_string(std::string_view yaml, const DataplaneConfig& dataplane) {
  try {
    return Loader("service").load_one_service(yaml, dataplane);
  } catch (const std::exception& e) {
    return {std::nullopt, {{"", std::string("internal error: ") + e.what(), 0}}};
  }
}

namespace {

std::string exposure_owner(const ServiceConfig& svc, const ServicePortConfig& sp) {
  return "Service " + quote(svc.name) + (sp.name.empty() ? "" : " port " + quote(sp.name));
}

std::string exposure_text(const ServiceConfig& svc, const ServicePortConfig& sp) {
  return std::string(sp.protocol == Protocol::kTcp ? "TCP " : "UDP ") + format_ipv4(svc.vip) + ":" +
         std::to_string(sp.port);
}

}  // namespace

std::optional<FieldError> find_exposure_conflict(const std::vector<ServiceConfig>& others,
                                                 const ServiceConfig& candidate) {
  for (size_t j = 0; j < candidate.ports.size(); ++j) {
    const ServicePortConfig& sp = candidate.ports[j];
    for (const ServiceConfig& other : others) {
      if (other.name == candidate.name || other.vip != candidate.vip) continue;
      for (const ServicePortConfig& op : other.ports) {
        if (op.protocol == sp.protocol && op.port == sp.port) {
          std::string field = index("ports", j);
          return FieldError{field,
                            field + ": " + exposure_text(candidate, sp) +
                                " is already exposed by " + exposure_owner(other, op),
                            sp.line};
        }
      }
    }
  }
  return std::nullopt;
}

std::vector<FieldError> validate_services(const Config& config) {
  std::vector<FieldError> errors;
  std::map<std::string, size_t> names;
  std::map<std::tuple<Protocol, uint32_t, uint16_t>, std::string> exposed;
  for (size_t i = 0; i < config.services.size(); ++i) {
    const ServiceConfig& svc = config.services[i];
    const std::string at = index("services", i);
    if (!is_dns1035_label(svc.name)) {
      errors.push_back({at + ".name",
                        at + ".name: " + quote(svc.name) + " is not a valid Service name",
                        svc.line});
    } else if (auto first = names.find(svc.name); first != names.end()) {
      errors.push_back(
          {at + ".name", at + ".name: duplicate Service name " + quote(svc.name), svc.line});
    } else {
      names.emplace(svc.name, i);
    }
    if (!is_unicast(svc.vip)) {
      errors.push_back({at + ".vip",
                        at + ".vip: " + format_ipv4(svc.vip) + " is not a unicast address",
                        svc.line});
    }
    if (svc.ports.empty()) {
      errors.push_back({at + ".ports", at + ".ports: must list at least one port", svc.line});
    }
    std::set<std::string> port_names;
    for (size_t j = 0; j < svc.ports.size(); ++j) {
      const ServicePortConfig& sp = svc.ports[j];
      const std::string field = index(at + ".ports", j);
      // The file loader's port-name rules, for Services built elsewhere (Kubernetes reader).
      if (sp.name.empty() ? svc.ports.size() > 1
                          : !is_dns1123_label(sp.name) || !port_names.insert(sp.name).second) {
        errors.push_back({field + ".name",
                          field + ".name: " +
                              (sp.name.empty() ? "required when a Service has more than one port"
                                               : quote(sp.name) + " is not a valid, unique port name"),
                          sp.line});
      }
      if (sp.port == 0 || sp.target_port == 0) {
        errors.push_back({field, field + ": port and targetPort must be 1-65535", sp.line});
        continue;
      }
      auto [it, inserted] =
          exposed.emplace(std::make_tuple(sp.protocol, svc.vip, sp.port), exposure_owner(svc, sp));
      if (!inserted) {
        errors.push_back(
            {field, field + ": " + exposure_text(svc, sp) + " is already exposed by " + it->second,
             sp.line});
      }
    }
    int64_t needed = kMaglevSlotsPerBackend * static_cast<int64_t>(svc.backends.size());
    if (config.dataplane.maglev_table_size < needed) {
      errors.push_back({at + ".backends",
                        at + ".backends: " + std::to_string(svc.backends.size()) +
                            " backends need dataplane.maglevTableSize >= " + std::to_string(needed),
                        svc.line});
    }
  }
  return errors;
}

LoadResult load_config_file(const std::string& path) {
  auto cannot_read = [&](int err) {
    return LoadResult{std::nullopt,
                      {{path, 0, std::string("cannot read file: ") + std::strerror(err)}}};
  };
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return cannot_read(errno);
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err != 0) return cannot_read(err);
  return load_config_string(text, path);
}

}  // namespace l4lb::config
