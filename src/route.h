// The IPv4 routing table of one snapshot: rte_lpm from destination to a next hop
// (egress port + gateway). Built by the control thread, read by workers, freed only
// after an RCU grace period with its snapshot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/port.h"

struct rte_lpm;

namespace l4lb {

struct NextHop {
  uint16_t port = 0;        // index into the PortInfo array
  uint32_t gateway_be = 0;  // 0: destination is on the port's subnet
};

class RouteTable {
 public:
  // Connected subnets of every port, then config routes; throws std::runtime_error.
  RouteTable(const std::vector<config::RouteConfig>& routes, const std::vector<PortInfo>& ports,
             uint64_t generation);
  ~RouteTable();
  RouteTable(const RouteTable&) = delete;
  RouteTable& operator=(const RouteTable&) = delete;

  // Next hop for dst (network order), or nullptr when there is no route. Worker-safe.
  const NextHop* lookup(uint32_t dst_be) const noexcept;
  const std::vector<NextHop>& next_hops() const { return next_hops_; }

 private:
  uint32_t add_next_hop(NextHop nh);

  rte_lpm* lpm_ = nullptr;
  std::vector<NextHop> next_hops_;
  int default_index_ = -1;  // rte_lpm has no /0; the default route lives beside it
};

}  // namespace l4lb
