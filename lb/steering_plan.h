// Flow-owner steering, the pure part: which steering mode each port should try (from
// what the NIC says it can do and which side of the balancer the port faces), and the
// flow-owner hash that software and hardware share. Plain C++, no DPDK; control thread
// builds, workers read (OwnerHash is immutable after construction: worker-safe).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace l4lb {

// How packets of one flow reach the worker that owns it.
//  kSingleQueue  one queue per port: there is only one worker, nothing to steer
//  kRssFields    the port's RSS hashes only the client side: source IP + port on the
//                clients' port, destination IP + port on the pods' port (SRC_ONLY/DST_ONLY)
//  kFlowRule     rte_flow RSS rules (TCP and UDP over IPv4) with the same field selection
//  kSoftware     RSS (if any) spreads packets; the worker hands strays to their owner
enum class SteeringMode : uint8_t { kSingleQueue, kRssFields, kFlowRule, kSoftware };
const char* steering_mode_name(SteeringMode m) noexcept;

// Which traffic a port receives in a two-armed set-up. kBoth: one-armed, or roles unclear.
enum class PortSide : uint8_t { kClients, kPods, kBoth };
const char* port_side_name(PortSide s) noexcept;

// What the NIC advertises (rte_eth_dev_info, translated by src/steering.cc).
struct SteeringCaps {
  uint16_t queues = 1;
  bool rss_tcp_udp_ipv4 = false;  // NONFRAG_IPV4_TCP and NONFRAG_IPV4_UDP
  bool rss_src_dst_only = false;  // L3_SRC_ONLY, L3_DST_ONLY, L4_SRC_ONLY, L4_DST_ONLY
};

// Modes to try, best first. The last one (kSoftware or kSingleQueue) cannot fail; the
// others are only kept if the device accepts them and the result checks out.
std::vector<SteeringMode> steering_order(const SteeringCaps& caps, PortSide side);

// Sides from the routes: a port is the pods' side when a route narrower than the default
// route has its next hop on that port's subnet. Two-armed means exactly two ports, one of
// each; anything else is kBoth for every port.
// routes_to_pods[i]: port i is the next hop of such a route.
std::vector<PortSide> port_sides(const std::vector<bool>& routes_to_pods);

// Toeplitz hash (Microsoft RSS; the function NICs use for RSS) over bytes in wire order.
// The bit-serial reference; OwnerHash is the fast form for the fixed 6-byte input.
uint32_t toeplitz(const uint8_t* key, size_t key_len, const uint8_t* data, size_t len);

// The RSS key every port gets, so every port hashes a client the same way. 40 bytes (the
// common size); NICs with longer keys get it zero-padded.
extern const std::array<uint8_t, 40> kRssKey;

// The worker that owns a flow: Toeplitz over (client IP, client port), the input a NIC
// hashes with L3+L4 SRC_ONLY (requests) or DST_ONLY (replies), then an indirection table
// of kSlots entries (slot i -> worker i % workers) indexed by the hash's low bits, as a
// NIC's RETA is. Ports whose RETA is filled the same way put every packet on its owner's
// queue; anywhere else the worker hands strays over. Per-byte tables: six loads and
// five XORs per packet instead of 48 bit steps.
class OwnerHash {
 public:
  static constexpr uint32_t kSlots = 64;  // divides every power-of-two RETA size in use
  explicit OwnerHash(uint16_t workers, const uint8_t* key = kRssKey.data(),
                     size_t key_len = kRssKey.size());
  // ip_be, port_be as the packet carries them (network order).
  uint32_t hash(uint32_t ip_be, uint16_t port_be) const noexcept {
    const auto* ip = reinterpret_cast<const uint8_t*>(&ip_be);
    const auto* port = reinterpret_cast<const uint8_t*>(&port_be);
    return table_[0][ip[0]] ^ table_[1][ip[1]] ^ table_[2][ip[2]] ^ table_[3][ip[3]] ^
           table_[4][port[0]] ^ table_[5][port[1]];
  }
  uint16_t owner(uint32_t ip_be, uint16_t port_be) const noexcept {
    return slot_owner_[hash(ip_be, port_be) & (kSlots - 1)];
  }
  // The queue for RETA entry i of a table of any power-of-two size >= kSlots.
  uint16_t reta_queue(uint32_t i) const noexcept { return slot_owner_[i & (kSlots - 1)]; }

 private:
  std::array<std::array<uint32_t, 256>, 6> table_{};
  std::array<uint16_t, kSlots> slot_owner_{};
};

}  // namespace l4lb
