#include "src/port.h"

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <stdexcept>
#include <string_view>

#include "src/log.h"
#include "src/steering.h"

#undef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kPort

namespace l4lb {

namespace {

constexpr uint16_t kRxDesc = 1024;
constexpr uint16_t kTxDesc = 1024;
constexpr unsigned kPoolCache = 256;

bool is_pci_address(const std::string& device) {
  static const std::regex kPci(R"(^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7](,.*)?$)");
  return std::regex_match(device, kPci);
}

// The DPDK port of a PCI NIC named by its MAC: EAL probed every NIC bound to a DPDK driver.
bool find_port_by_mac(const MacAddr& want, uint16_t& port_id) {
  uint16_t id;
  RTE_ETH_FOREACH_DEV(id) {
    rte_ether_addr mac{};
    if (rte_eth_macaddr_get(id, &mac) == 0 && std::equal(want.b, want.b + 6, mac.addr_bytes)) {
      port_id = id;
      return true;
    }
  }
  return false;
}

// The ethdev name DPDK gives the device: the devargs up to the first comma.
std::string device_name(const std::string& device) { return device.substr(0, device.find(',')); }

[[noreturn]] void fail(const PortInfo& p, const std::string& what, int rc) {
  throw std::runtime_error("port " + p.name + " (" + p.device + "): " + what + ": " +
                           rte_strerror(rc < 0 ? -rc : rc));
}

}  // namespace

std::string tap_vdev(size_t index, const std::string& ifname) {
  return "net_tap_l4lb" + std::to_string(index) + ",iface=" + ifname;
}

namespace {

// Runs `ip ARGS...` for the kernel side of a twin; names and addresses were validated.
void run_ip(const std::string& args) {
  const std::string cmd = "ip " + args + " 2>&1";
  if (int rc = std::system(cmd.c_str()); rc != 0) {
    L4LB_WARN("kernel twin: '%s' failed (status %d)", cmd.c_str(), rc);
  }
}

// Sets up port p's kernel twin: a net_tap queue pair per worker, the port's MAC (so the
// kernel's frames leave the port as they are), the port's address, and the config's
// routes whose next hop sits on this port's subnet.
void start_tap(PortInfo& p, size_t index, const config::PortConfig& pc,
               const config::DataplaneConfig& dp) {
  const std::string name = device_name(tap_vdev(index, pc.tap));
  if (int rc = rte_eth_dev_get_port_by_name(name.c_str(), &p.tap_port_id); rc != 0) {
    fail(p, "kernel twin " + pc.tap + " missing", rc);
  }
  rte_eth_conf conf{};
  if (int rc = rte_eth_dev_configure(p.tap_port_id, p.queues, p.queues, &conf); rc != 0) {
    fail(p, "kernel twin configure", rc);
  }
  for (uint16_t q = 0; q < p.queues; ++q) {
    if (rte_eth_rx_queue_setup(p.tap_port_id, q, 256, p.socket, nullptr, p.pool) != 0 ||
        rte_eth_tx_queue_setup(p.tap_port_id, q, 256, p.socket, nullptr) != 0) {
      fail(p, "kernel twin queues", -EINVAL);
    }
  }
  rte_ether_addr mac;
  std::copy(p.mac.b, p.mac.b + 6, mac.addr_bytes);
  if (int rc = rte_eth_dev_default_mac_addr_set(p.tap_port_id, &mac); rc != 0) {
    fail(p, "kernel twin MAC", rc);
  }
  if (int rc = rte_eth_dev_start(p.tap_port_id); rc != 0) fail(p, "kernel twin start", rc);
  p.has_tap = true;
  p.tap = pc.tap;
  // IPv4 only: keep the kernel's IPv6 chatter (router solicitations) off the wire.
  if (FILE* f = std::fopen(("/proc/sys/net/ipv6/conf/" + pc.tap + "/disable_ipv6").c_str(), "w")) {
    std::fputs("1", f);
    std::fclose(f);
  }
  run_ip("addr replace " + format_prefix(pc.address) + " dev " + pc.tap);
  run_ip("link set " + pc.tap + " up");
  for (const auto& r : dp.routes) {
    if (r.prefix.len == 0 || r.via == 0 || !pc.address.contains(r.via)) continue;
    run_ip("route replace " + format_prefix(Ipv4Prefix{r.prefix.network(), r.prefix.len}) +
           " via " + format_ipv4(r.via) + " dev " + pc.tap);
  }
  L4LB_INFO("port %s: kernel twin %s carries %s/%u (host traffic, ARP replies)", p.name.c_str(),
            pc.tap.c_str(), format_ipv4(pc.address.addr).c_str(), pc.address.len);
}

// Two-armed set-ups: the port that routes to the pods (a route narrower than the default
// one with its next hop on the port's subnet) receives replies, the other requests.
std::vector<PortSide> port_sides_of(const config::DataplaneConfig& dp) {
  std::vector<bool> routes_to_pods;
  for (const auto& pc : dp.ports) {
    bool pods = false;
    for (const auto& r : dp.routes) pods |= r.prefix.len > 0 && r.via != 0 && pc.address.contains(r.via);
    routes_to_pods.push_back(pods);
  }
  return port_sides(routes_to_pods);
}

}  // namespace

std::optional<MacAddr> device_mac(const std::string& device) {
  static const std::regex kMac(R"(^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$)");
  if (!std::regex_match(device, kMac)) return std::nullopt;
  return parse_mac(device);
}

std::vector<std::string> device_eal_args(const std::string& device, bool probe_all_pci) {
  if (device_mac(device)) return {};
  if (is_pci_address(device)) {
    if (probe_all_pci) return {};
    return {"-a", device};
  }
  return {"--vdev", device};
}

std::vector<PortInfo> start_ports(const config::DataplaneConfig& dp, uint16_t queues) {
  std::vector<PortInfo> ports;
  std::map<int, rte_mempool*> pools;  // one per NUMA socket
  const std::vector<PortSide> sides = port_sides_of(dp);
  for (const auto& pc : dp.ports) {
    PortInfo p;
    p.side = sides[ports.size()];
    p.name = pc.name;
    p.device = pc.device;
    p.addr_be = hton32(pc.address.addr);
    p.mask_be = hton32(pc.address.mask());
    p.mtu = pc.mtu;
    p.queues = queues;
    if (auto mac = device_mac(pc.device)) {
      if (!find_port_by_mac(*mac, p.port_id)) {
        throw std::runtime_error("port " + p.name + ": no DPDK port has MAC " + pc.device +
                                 " (is its NIC bound to vfio-pci or uio_pci_generic?)");
      }
    } else {
      std::string name = device_name(pc.device);
      if (int rc = rte_eth_dev_get_port_by_name(name.c_str(), &p.port_id); rc != 0) {
        fail(p, "no such DPDK device '" + name + "'", rc);
      }
    }
    int socket = rte_eth_dev_socket_id(p.port_id);
    p.socket = socket < 0 ? static_cast<int>(rte_socket_id()) : socket;

    if (!pools.count(p.socket)) {
      // One segment per frame, whatever the MTU: the parser reads one contiguous buffer.
      uint32_t max_mtu = 0;
      for (const auto& any : dp.ports) max_mtu = std::max(max_mtu, any.mtu);
      const auto data_room = static_cast<uint16_t>(std::max<uint32_t>(
          RTE_MBUF_DEFAULT_BUF_SIZE, RTE_PKTMBUF_HEADROOM + max_mtu + 14 + 4 + 4));
      // Enough for every RX ring, TX ring, the burst in hand and the neighbour hold
      // queues of every port and queue on this socket.
      unsigned n = static_cast<unsigned>(dp.ports.size()) * queues * (kRxDesc + kTxDesc + 512) + 4096;
      std::string pool_name = "l4lb_mbuf_s" + std::to_string(p.socket);
      rte_mempool* pool = rte_pktmbuf_pool_create(pool_name.c_str(), n, kPoolCache, 0,
                                                  data_room, p.socket);
      if (pool == nullptr) fail(p, "cannot create mbuf pool", rte_errno);
      pools[p.socket] = pool;
    }
    p.pool = pools[p.socket];

    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(p.port_id, &info); rc != 0) fail(p, "device info", rc);
    if (queues > info.max_rx_queues || queues > info.max_tx_queues) {
      throw std::runtime_error("port " + p.name + ": " + std::to_string(queues) +
                               " workers need as many queues; the device has " +
                               std::to_string(info.max_rx_queues) + " RX / " +
                               std::to_string(info.max_tx_queues) + " TX");
    }
    rte_eth_conf conf{};
    const SteeringPlan steering = plan_port_steering(info, queues, p.side, conf);
    constexpr uint64_t kCsumOffloads = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM |
                                       RTE_ETH_TX_OFFLOAD_TCP_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
    p.tx_csum_offload = (info.tx_offload_capa & kCsumOffloads) == kCsumOffloads;
    p.poll_after_link_up = std::string_view(info.driver_name) == "net_memif";
    if (p.tx_csum_offload) conf.txmode.offloads |= kCsumOffloads;
    if (int rc = rte_eth_dev_configure(p.port_id, queues, queues, &conf); rc != 0) {
      fail(p, "configure", rc);
    }
    uint16_t rxd = kRxDesc, txd = kTxDesc;
    rte_eth_dev_adjust_nb_rx_tx_desc(p.port_id, &rxd, &txd);
    for (uint16_t q = 0; q < queues; ++q) {
      if (int rc = rte_eth_rx_queue_setup(p.port_id, q, rxd, p.socket, nullptr, p.pool); rc != 0) {
        fail(p, "RX queue " + std::to_string(q), rc);
      }
      if (int rc = rte_eth_tx_queue_setup(p.port_id, q, txd, p.socket, nullptr); rc != 0) {
        fail(p, "TX queue " + std::to_string(q), rc);
      }
    }
    bool software_mac = false;
    if (pc.mac) {
      rte_ether_addr mac;
      std::copy(pc.mac->b, pc.mac->b + 6, mac.addr_bytes);
      if (int rc = rte_eth_dev_default_mac_addr_set(p.port_id, &mac); rc != 0) {
        // Some virtual devices (net_pcap) cannot change it: receive promiscuously and
        // use the configured MAC in software (ARP answers, source MACs, RX filter).
        L4LB_WARN("port %s: device cannot take MAC %s (%s); using it in software, promiscuous",
                  p.name.c_str(), format_mac(*pc.mac).c_str(), rte_strerror(-rc));
        software_mac = true;
      }
    }
    if (int rc = rte_eth_dev_set_mtu(p.port_id, static_cast<uint16_t>(p.mtu)); rc != 0) {
      // Virtual devices often cannot change MTU; l4lbd still enforces it on egress.
      L4LB_WARN("port %s: device MTU not set to %u (%s); enforcing it in software", p.name.c_str(),
                p.mtu, rte_strerror(-rc));
    }
    if (int rc = rte_eth_dev_start(p.port_id); rc != 0) fail(p, "start", rc);
    if (software_mac) {
      p.mac = *pc.mac;
      if (int rc = rte_eth_promiscuous_enable(p.port_id); rc != 0 && rc != -ENOTSUP) {
        fail(p, "promiscuous mode", rc);
      }
    } else {
      if (pc.promiscuous) {
        if (int rc = rte_eth_promiscuous_enable(p.port_id); rc != 0) fail(p, "promiscuous mode", rc);
      }
      rte_ether_addr mac{};
      rte_eth_macaddr_get(p.port_id, &mac);
      std::copy(mac.addr_bytes, mac.addr_bytes + 6, p.mac.b);
    }
    L4LB_INFO("port %s: %s id %u socket %d mac %s%s address %s/%u mtu %u queues %u checksums %s",
              p.name.c_str(), p.device.c_str(), p.port_id, p.socket, format_mac(p.mac).c_str(),
              software_mac || pc.promiscuous ? " (promiscuous)" : "",
              format_ipv4(pc.address.addr).c_str(), pc.address.len, p.mtu, queues,
              p.tx_csum_offload ? "TX offload" : "software (RFC 1624 incremental)");
    SteeringResult steered = apply_port_steering(p.port_id, info, queues, steering);
    p.steering = steered.mode;
    p.steering_detail = std::move(steered.detail);
    L4LB_INFO("port %s: steering %s (%s side: %s)", p.name.c_str(),
              steering_mode_name(p.steering), port_side_name(p.side), p.steering_detail.c_str());
    if (!pc.tap.empty()) start_tap(p, ports.size(), pc, dp);
    ports.push_back(std::move(p));
  }
  return ports;
}

void stop_ports(std::vector<PortInfo>& ports) {
  for (auto& p : ports) {
    if (p.has_tap) {
      rte_eth_dev_stop(p.tap_port_id);
      rte_eth_dev_close(p.tap_port_id);  // the kernel interface goes with it
    }
    if (int rc = rte_eth_dev_stop(p.port_id); rc != 0) {
      L4LB_WARN("port %s: stop: %s", p.name.c_str(), rte_strerror(-rc));
    }
    rte_eth_dev_close(p.port_id);
  }
}

}  // namespace l4lb
