#include "lb/steering_plan.h"

#include <stdexcept>

namespace l4lb {

// The key of the Microsoft RSS verification suite, which most NIC drivers default to;
// any fixed key works as long as every port and the software hash share it.
const std::array<uint8_t, 40> kRssKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

const char* steering_mode_name(SteeringMode m) noexcept {
  switch (m) {
    case SteeringMode::kSingleQueue:
      return "single-queue";
    case SteeringMode::kRssFields:
      return "rss-fields";
    case SteeringMode::kFlowRule:
      return "flow-rule";
    case SteeringMode::kSoftware:
      return "software";
  }
  return "?";
}

const char* port_side_name(PortSide s) noexcept {
  switch (s) {
    case PortSide::kClients:
      return "clients";
    case PortSide::kPods:
      return "pods";
    case PortSide::kBoth:
      return "clients and pods";
  }
  return "?";
}

std::vector<SteeringMode> steering_order(const SteeringCaps& caps, PortSide side) {
  if (caps.queues <= 1) return {SteeringMode::kSingleQueue};
  // One port carrying both directions would need rules per VIP (requests hash on the
  // source, replies on the destination); the software hand-off covers it.
  if (side == PortSide::kBoth) return {SteeringMode::kSoftware};
  std::vector<SteeringMode> order;
  if (caps.rss_tcp_udp_ipv4 && caps.rss_src_dst_only) order.push_back(SteeringMode::kRssFields);
  // rte_flow RSS may select fields the port-wide RSS does not advertise; only creating
  // the rule tells (validation alone is not trusted).
  order.push_back(SteeringMode::kFlowRule);
  order.push_back(SteeringMode::kSoftware);
  return order;
}

std::vector<PortSide> port_sides(const std::vector<bool>& routes_to_pods) {
  std::vector<PortSide> sides(routes_to_pods.size(), PortSide::kBoth);
  if (routes_to_pods.size() != 2 || routes_to_pods[0] == routes_to_pods[1]) return sides;
  for (size_t i = 0; i < 2; ++i)
    sides[i] = routes_to_pods[i] ? PortSide::kPods : PortSide::kClients;
  return sides;
}

uint32_t toeplitz(const uint8_t* key, size_t key_len, const uint8_t* data, size_t len) {
  if (key_len < len + 4) throw std::invalid_argument("Toeplitz key shorter than input + 4 bytes");
  uint32_t result = 0;
  // The 32-bit window of the key starting at the current input bit.
  uint32_t window =
      uint32_t{key[0]} << 24 | uint32_t{key[1]} << 16 | uint32_t{key[2]} << 8 | key[3];
  for (size_t i = 0; i < len; ++i) {
    for (int bit = 7; bit >= 0; --bit) {
      if (data[i] >> bit & 1) result ^= window;
      window = window << 1 | (key[i + 4] >> bit & 1);
    }
  }
  return result;
}

OwnerHash::OwnerHash(uint16_t workers, const uint8_t* key, size_t key_len) {
  if (workers == 0) throw std::invalid_argument("OwnerHash needs at least one worker");
  // Toeplitz is linear over XOR: the hash of six bytes is the XOR of each byte's hash
  // in its position (the other five zero).
  uint8_t input[6];
  for (size_t pos = 0; pos < 6; ++pos) {
    for (uint32_t b = 0; b < 256; ++b) {
      for (auto& x : input) x = 0;
      input[pos] = static_cast<uint8_t>(b);
      table_[pos][b] = toeplitz(key, key_len, input, sizeof input);
    }
  }
  for (uint32_t i = 0; i < kSlots; ++i) slot_owner_[i] = static_cast<uint16_t>(i % workers);
}

}  // namespace l4lb
