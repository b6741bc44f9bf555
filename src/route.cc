#include "src/route.h"

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_lpm.h>

#include <stdexcept>

namespace l4lb {

RouteTable::RouteTable(const std::vector<config::RouteConfig>& routes,
                       const std::vector<PortInfo>& ports, uint64_t generation) {
  rte_lpm_config cfg{};
  cfg.max_rules = static_cast<uint32_t>(routes.size() + ports.size() + 16);
  cfg.number_tbl8s = 256;
  std::string name = "l4lb_rt" + std::to_string(generation);
  lpm_ = rte_lpm_create(name.c_str(), static_cast<int>(rte_socket_id()), &cfg);
  if (lpm_ == nullptr) {
    throw std::runtime_error(std::string("cannot create route table: ") + rte_strerror(rte_errno));
  }
  auto add = [&](uint32_t prefix_host, uint8_t len, NextHop nh) {
    uint32_t index = add_next_hop(nh);
    if (len == 0) {
      default_index_ = static_cast<int>(index);
      return;
    }
    if (int rc = rte_lpm_add(lpm_, prefix_host, len, index); rc != 0) {
      throw std::runtime_error("cannot add route: " + std::string(rte_strerror(-rc)));
    }
  };
  for (uint16_t i = 0; i < ports.size(); ++i) {
    uint32_t mask = ntoh32(ports[i].mask_be);
    uint8_t len = static_cast<uint8_t>(__builtin_popcount(mask));
    add(ntoh32(ports[i].addr_be) & mask, len, NextHop{i, 0});
  }
  // Later routes replace earlier ones of the same prefix, as the config reads.
  for (const auto& r : routes) {
    uint32_t via_be = hton32(r.via);
    int port = -1;
    for (uint16_t i = 0; i < ports.size(); ++i) {
      if (r.via == 0 || ports[i].in_subnet(via_be)) {
        port = i;
        break;
      }
    }
    if (port < 0) {
      throw std::runtime_error("route " + format_prefix(r.prefix) + ": next hop " +
                               format_ipv4(r.via) + " is not in any port's subnet");
    }
    add(r.prefix.network(), r.prefix.len, NextHop{static_cast<uint16_t>(port), via_be});
  }
}

RouteTable::~RouteTable() { rte_lpm_free(lpm_); }

uint32_t RouteTable::add_next_hop(NextHop nh) {
  for (uint32_t i = 0; i < next_hops_.size(); ++i) {
    if (next_hops_[i].port == nh.port && next_hops_[i].gateway_be == nh.gateway_be) return i;
  }
  next_hops_.push_back(nh);
  return static_cast<uint32_t>(next_hops_.size() - 1);
}

const NextHop* RouteTable::lookup(uint32_t dst_be) const noexcept {
  uint32_t index = 0;
  if (rte_lpm_lookup(lpm_, ntoh32(dst_be), &index) == 0) return &next_hops_[index];
  return default_index_ >= 0 ? &next_hops_[default_index_] : nullptr;
}

}  // namespace l4lb
