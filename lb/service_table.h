// The Services as the data path sees them: (VIP, protocol, port) -> Service port with its
// ACL and Maglev table, plus the endpoint -> Service port map for stateless reverse NAT.
// Built by the control thread, immutable once built, read by workers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lb/acl.h"
#include "lb/cidr.h"
#include "lb/maglev.h"

namespace l4lb {

// What the control thread hands in (host byte order); the config loader's model maps onto it.
struct ServicePortSpec {
  std::string name;
  uint8_t proto = 0;  // kIpProtoTcp or kIpProtoUdp
  uint16_t port = 0;
  uint16_t target_port = 0;
  uint32_t counter_id = 0;  // stable slot for this port's counters (chosen by the caller)
};

struct BackendSpec {
  uint32_t ip = 0;
  uint32_t weight = 1;
  // Stable counter slots of this backend, one per port of its Service (same order as
  // ServiceSpec::ports); empty: slot 0.
  std::vector<uint32_t> counter_ids;
};

struct ServiceSpec {
  std::string name;
  uint32_t vip = 0;
  std::vector<ServicePortSpec> ports;
  std::vector<Ipv4Prefix> source_ranges;  // empty: every source allowed
  bool client_ip_affinity = false;
  std::vector<BackendSpec> backends;
  // With no backend taking new flows: answer TCP RST / ICMP port unreachable (kube-proxy's
  // behaviour without endpoints) instead of dropping silently.
  bool reject_when_empty = false;
};

struct ServicePort {
  std::string service;
  std::string name;
  uint32_t vip_be = 0;
  uint16_t port_be = 0;
  uint16_t target_port_be = 0;
  uint8_t proto = 0;
  bool client_ip_affinity = false;
  bool reject_when_empty = false;
  std::shared_ptr<const SourceRanges> acl;  // null: every source allowed; shared by a Service's ports
  // Shared by the Service's ports, and by later snapshots while the backends stay the same.
  std::shared_ptr<const MaglevTable> maglev;
  std::vector<uint32_t> backend_ips_be;  // in maglev.backends() order
  uint32_t counter_id = 0;
  std::vector<uint32_t> backend_counter_ids;  // in maglev.backends() order

  std::vector<uint32_t> backend_set_be;  // sorted, for has_backend()

  bool allows(uint32_t src_be) const noexcept { return !acl || acl->contains(src_be); }
  // Whether a flow pinned to this endpoint may stay: the backend is still listed (with any
  // weight: weight 0 drains, it does not evict) and the target port is unchanged.
  bool has_backend(uint32_t ip_be, uint16_t port_be) const noexcept;
  // Backend index for a new flow, or -1 when no backend takes new flows.
  int pick(uint64_t flow_hash, uint32_t client_ip_be) const noexcept;
};

class ServiceTable {
 public:
  static constexpr uint32_t kNotFound = ~uint32_t{0};
  static constexpr uint32_t kAmbiguous = ~uint32_t{0} - 1;

  ServiceTable() = default;
  // Specs must already be validated (unique names and VIP/proto/port, prime maglev_size).
  // Maglev tables of `previous` whose backend set (IPs and weights) and size are unchanged
  // are reused instead of rebuilt.
  ServiceTable(const std::vector<ServiceSpec>& services, uint32_t maglev_size,
               const ServiceTable* previous = nullptr);
  size_t maglev_built() const { return maglev_built_; }
  size_t maglev_reused() const { return maglev_reused_; }

  const std::vector<ServicePort>& ports() const { return ports_; }
  size_t size() const { return ports_.size(); }

  // All arguments in network byte order. noexcept, no allocation.
  const ServicePort* find(uint32_t vip_be, uint8_t proto, uint16_t port_be) const noexcept;
  // Asked of every packet (a worker's flow-table hash depends on it): inline, a
  // multiplicative hash and a probe or two over a set at most a quarter full.
  bool is_vip(uint32_t ip_be) const noexcept {
    for (uint32_t i = (ip_be * 0x9e3779b1u) >> vip_shift_;; i = (i + 1) & vip_mask_) {
      const uint32_t v = vip_slots_[i];
      if (v == 0) return false;  // a free slot; 0.0.0.0 is never a VIP
      if (v == ip_be) return true;
    }
  }
  // Index of the only Service port with this backend endpoint, kAmbiguous when several
  // share it, kNotFound when none.
  uint32_t find_endpoint(uint32_t backend_ip_be, uint8_t proto,
                         uint16_t target_port_be) const noexcept;
  const std::vector<uint32_t>& vips_be() const { return vips_; }

 private:
  // Open-addressed, power-of-two, linear probing; key 0 is empty (VIP 0.0.0.0 is invalid).
  struct Slot {
    uint64_t key = 0;
    uint32_t value = 0;
  };
  static uint64_t pack(uint32_t ip_be, uint8_t proto, uint16_t port_be) {
    return (uint64_t{ip_be} << 32) | (uint64_t{port_be} << 16) | proto;
  }
  static void put(std::vector<Slot>& slots, uint64_t key, uint32_t value);
  static uint32_t get(const std::vector<Slot>& slots, uint64_t key) noexcept;

  std::vector<ServicePort> ports_;
  std::vector<Slot> by_frontend_;
  std::vector<Slot> by_endpoint_;
  // Open-addressed, linear probing, 0 = free; 2^(32 - vip_shift_) slots.
  std::vector<uint32_t> vip_slots_ = std::vector<uint32_t>(8, 0);
  uint32_t vip_mask_ = 7;
  uint32_t vip_shift_ = 29;
  std::vector<uint32_t> vips_;
  size_t maglev_built_ = 0;
  size_t maglev_reused_ = 0;
};

}  // namespace l4lb
