// IPv4 address and prefix text <-> numbers, for the config loader, the API and logs.
// Control thread only (allocates strings).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nat/headers.h"

namespace l4lb {

// Addresses here are in host byte order (10.0.0.1 == 0x0a000001).
struct Ipv4Prefix {
  uint32_t addr = 0;  // as written; may have host bits set (a port's 10.0.0.1/24)
  uint8_t len = 0;
  uint32_t mask() const { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }
  uint32_t network() const { return addr & mask(); }
  bool contains(uint32_t ip) const { return (ip & mask()) == network(); }
  bool operator==(const Ipv4Prefix&) const = default;
};

// Strict dotted quad: four decimal parts 0-255, no leading zeros, no spaces.
std::optional<uint32_t> parse_ipv4(std::string_view text);
// An address a host may have: not "this network" (0/8), loopback (127/8), multicast or
// reserved (224/3). Host order.
inline bool is_unicast(uint32_t ip) {
  const auto first = static_cast<uint8_t>(ip >> 24);
  return first != 0 && first != 127 && first < 224;
}
// "a.b.c.d/len" with len 0-32. A bare address is not a prefix.
std::optional<Ipv4Prefix> parse_ipv4_prefix(std::string_view text);
// "aa:bb:cc:dd:ee:ff", hex, case-insensitive.
std::optional<MacAddr> parse_mac(std::string_view text);

std::string format_ipv4(uint32_t host_order);
std::string format_prefix(const Ipv4Prefix& p);
std::string format_mac(const MacAddr& mac);

}  // namespace l4lb
