#include "lb/service_table.h"

#include <algorithm>
#include <bit>
#include <map>
#include <unordered_map>

#include "lb/flow_key.h"
#include "nat/headers.h"

namespace l4lb {

int ServicePort::pick(uint64_t flow_hash, uint32_t client_ip_be) const noexcept {
  return maglev->lookup(client_ip_affinity ? hash_client_ip(client_ip_be) : flow_hash);
}

bool ServicePort::has_backend(uint32_t ip_be, uint16_t port_be) const noexcept {
  return port_be == target_port_be &&
         std::binary_search(backend_set_be.begin(), backend_set_be.end(), ip_be);
}

namespace {

size_t slots_for(size_t n) { return std::bit_ceil(std::max<size_t>(8, n * 2)); }

}  // namespace

void ServiceTable::put(std::vector<Slot>& slots, uint64_t key, uint32_t value) {
  size_t mask = slots.size() - 1;
  for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
    if (slots[i].key == 0 || slots[i].key == key) {
      slots[i] = Slot{key, value};
      return;
    }
  }
}

uint32_t ServiceTable::get(const std::vector<Slot>& slots, uint64_t key) noexcept {
  if (slots.empty()) return kNotFound;
  size_t mask = slots.size() - 1;
  for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
    if (slots[i].key == key) return slots[i].value;
    if (slots[i].key == 0) return kNotFound;
  }
}

ServiceTable::ServiceTable(const std::vector<ServiceSpec>& services, uint32_t maglev_size,
                           const ServiceTable* previous) {
  // The input of a build, in canonical order: equal keys give equal tables.
  using MaglevKey = std::pair<uint32_t, std::vector<std::pair<uint32_t, uint32_t>>>;
  auto key_of = [](uint32_t size, const std::vector<MaglevBackend>& backends) {
    MaglevKey key{size, {}};
    for (const auto& b : backends) key.second.emplace_back(b.ip, b.weight);
    std::sort(key.second.begin(), key.second.end());
    return key;
  };
  std::map<MaglevKey, std::shared_ptr<const MaglevTable>> reusable;
  if (previous != nullptr) {
    for (const auto& sp : previous->ports_) {
      reusable.emplace(key_of(sp.maglev->size(), sp.maglev->backends()), sp.maglev);
    }
  }
  size_t n_ports = 0;
  for (const auto& s : services) n_ports += s.ports.size();
  ports_.reserve(n_ports);

  std::vector<std::pair<uint64_t, uint32_t>> endpoints;
  for (const auto& s : services) {
    std::shared_ptr<const SourceRanges> acl;
    if (!s.source_ranges.empty()) acl = std::make_shared<const SourceRanges>(s.source_ranges);
    std::vector<MaglevBackend> backends;
    backends.reserve(s.backends.size());
    for (const auto& b : s.backends) backends.push_back(MaglevBackend{b.ip, b.weight});
    // Every port of a Service has the same backend set, so one build serves them all.
    std::shared_ptr<const MaglevTable> table;
    if (auto it = reusable.find(key_of(maglev_size, backends)); it != reusable.end()) {
      table = it->second;
      ++maglev_reused_;
    } else {
      table = std::make_shared<const MaglevTable>(backends, maglev_size);
      ++maglev_built_;
    }
    std::vector<uint32_t> ips_be;
    for (const auto& b : table->backends()) ips_be.push_back(hton32(b.ip));
    std::unordered_map<uint32_t, size_t> spec_index;  // backend ip -> position in s.backends
    for (size_t i = 0; i < s.backends.size(); ++i) spec_index[s.backends[i].ip] = i;

    for (size_t port_index = 0; port_index < s.ports.size(); ++port_index) {
      const ServicePortSpec& p = s.ports[port_index];
      ServicePort sp;
      sp.service = s.name;
      sp.name = p.name;
      sp.vip_be = hton32(s.vip);
      sp.port_be = hton16(p.port);
      sp.target_port_be = hton16(p.target_port);
      sp.proto = p.proto;
      sp.client_ip_affinity = s.client_ip_affinity;
      sp.reject_when_empty = s.reject_when_empty;
      sp.acl = acl;
      sp.maglev = table;
      sp.backend_ips_be = ips_be;
      sp.backend_set_be = ips_be;
      std::sort(sp.backend_set_be.begin(), sp.backend_set_be.end());
      sp.counter_id = p.counter_id;
      for (const auto& b : table->backends()) {
        const BackendSpec& spec = s.backends[spec_index.at(b.ip)];
        sp.backend_counter_ids.push_back(
            port_index < spec.counter_ids.size() ? spec.counter_ids[port_index] : 0);
      }
      auto index = static_cast<uint32_t>(ports_.size());
      for (uint32_t ip_be : ips_be) {
        endpoints.emplace_back(pack(ip_be, sp.proto, sp.target_port_be), index);
      }
      ports_.push_back(std::move(sp));
    }
    vips_.push_back(hton32(s.vip));
  }

  by_frontend_.resize(slots_for(ports_.size()));
  for (uint32_t i = 0; i < ports_.size(); ++i) {
    put(by_frontend_, pack(ports_[i].vip_be, ports_[i].proto, ports_[i].port_be), i);
  }
  const size_t vip_slots = std::bit_ceil(std::max<size_t>(8, vips_.size() * 4));
  vip_slots_.assign(vip_slots, 0);
  vip_mask_ = static_cast<uint32_t>(vip_slots - 1);
  vip_shift_ = static_cast<uint32_t>(32 - std::countr_zero(vip_slots));
  for (uint32_t vip : vips_) {
    if (vip == 0) continue;  // refused by the config loader; never a match
    uint32_t i = (vip * 0x9e3779b1u) >> vip_shift_;
    while (vip_slots_[i] != 0 && vip_slots_[i] != vip) i = (i + 1) & vip_mask_;
    vip_slots_[i] = vip;
  }
  by_endpoint_.resize(slots_for(endpoints.size()));
  for (const auto& [key, index] : endpoints) {
    uint32_t seen = get(by_endpoint_, key);
    put(by_endpoint_, key, seen == kNotFound || seen == index ? index : kAmbiguous);
  }
}

const ServicePort* ServiceTable::find(uint32_t vip_be, uint8_t proto,
                                      uint16_t port_be) const noexcept {
  uint32_t i = get(by_frontend_, pack(vip_be, proto, port_be));
  return i == kNotFound ? nullptr : &ports_[i];
}

uint32_t ServiceTable::find_endpoint(uint32_t backend_ip_be, uint8_t proto,
                                     uint16_t target_port_be) const noexcept {
  return get(by_endpoint_, pack(backend_ip_be, proto, target_port_be));
}

}  // namespace l4lb
