#include "src/change_log.h"

#include <map>

#include "src/api/render.h"

namespace l4lb {

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

std::string describe_changes(const config::Config& before, const config::Config& after) {
  // The API's JSON view of a Service holds every field that matters and no line numbers.
  std::map<std::string, std::string> old_services;
  for (const auto& s : before.services) old_services[s.name] = api::service_json(s).dump();
  std::vector<std::string> added, removed, changed;
  std::map<std::string, bool> seen;
  for (const auto& s : after.services) {
    seen[s.name] = true;
    auto it = old_services.find(s.name);
    if (it == old_services.end()) {
      added.push_back(s.name);
    } else if (it->second != api::service_json(s).dump()) {
      changed.push_back(s.name);
    }
  }
  for (const auto& s : before.services) {
    if (!seen.count(s.name)) removed.push_back(s.name);
  }
  std::vector<std::string> parts;
  if (!added.empty()) parts.push_back("services added: " + join(added));
  if (!removed.empty()) parts.push_back("services removed: " + join(removed));
  if (!changed.empty()) parts.push_back("services changed: " + join(changed));
  const auto& a = before.dataplane;
  const auto& b = after.dataplane;
  bool routes = a.routes.size() != b.routes.size();
  for (size_t i = 0; !routes && i < a.routes.size(); ++i) {
    routes = !(a.routes[i].prefix == b.routes[i].prefix) || a.routes[i].via != b.routes[i].via;
  }
  bool neighbors = a.neighbors.size() != b.neighbors.size();
  for (size_t i = 0; !neighbors && i < a.neighbors.size(); ++i) {
    neighbors =
        a.neighbors[i].ip != b.neighbors[i].ip || !(a.neighbors[i].mac == b.neighbors[i].mac);
  }
  if (routes) parts.push_back("routes changed");
  if (neighbors) parts.push_back("neighbors changed");
  if (a.maglev_table_size != b.maglev_table_size) {
    parts.push_back("maglevTableSize " + std::to_string(a.maglev_table_size) + " -> " +
                    std::to_string(b.maglev_table_size));
  }
  if (parts.empty()) return "no change";
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out;
}

}  // namespace l4lb
