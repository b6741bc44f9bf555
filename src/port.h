// DPDK ports: find each configured device, configure one RX/TX queue pair per worker,
// a mempool on the port's NUMA socket, and start it. Control thread only; the PortInfo
// array is immutable once workers run and is read by them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lb/cidr.h"
#include "lb/steering_plan.h"
#include "nat/headers.h"
#include "src/config/config.h"

struct rte_mempool;

namespace l4lb {

struct PortInfo {
  std::string name;       // config name (wan, lan)
  std::string device;     // devargs as configured
  uint16_t port_id = 0;   // DPDK port id
  int socket = 0;
  MacAddr mac{};
  uint32_t addr_be = 0;   // the port's own address
  uint32_t mask_be = 0;
  uint32_t mtu = 1500;
  uint16_t queues = 1;
  bool tx_csum_offload = false;  // the NIC fills IPv4 and TCP/UDP checksums
  // How a flow's packets reach its owner worker (src/steering.h), and why.
  SteeringMode steering = SteeringMode::kSingleQueue;
  PortSide side = PortSide::kBoth;
  std::string steering_detail;
  // Kernel twin (net_tap) for the host's own traffic; same MAC and address as the port.
  bool has_tap = false;
  // Workers poll the port only once its link has been up: net_memif's RX computes a
  // queue's ring address before it checks that the peer is connected, so a worker
  // preempted between the two while the peer connects reads ring 1 and up at the
  // region's offset from address 0 (SIGSEGV, seen in bench runs with 2 queues).
  bool poll_after_link_up = false;
  uint16_t tap_port_id = 0;
  std::string tap;
  rte_mempool* pool = nullptr;
  bool in_subnet(uint32_t ip_be) const { return (ip_be & mask_be) == (addr_be & mask_be); }
};

// The MAC of a port whose device is given as "aa:bb:cc:dd:ee:ff" (a PCI NIC found by MAC).
std::optional<MacAddr> device_mac(const std::string& device);
// The EAL arguments that attach a device: PCI addresses with -a, a MAC none (EAL probes
// every PCI NIC bound to a DPDK driver), everything else --vdev. probe_all_pci: some port
// is found by MAC, so no -a allow-list may hide its NIC.
std::vector<std::string> device_eal_args(const std::string& device, bool probe_all_pci);
// The net_tap device of port `index`'s kernel twin.
std::string tap_vdev(size_t index, const std::string& ifname);

// Sets up and starts every port; throws std::runtime_error naming the port on failure.
std::vector<PortInfo> start_ports(const config::DataplaneConfig& dp, uint16_t queues);
void stop_ports(std::vector<PortInfo>& ports);

}  // namespace l4lb
