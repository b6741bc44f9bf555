// The answers a host gives to a packet for a port nobody serves, built in place over the
// packet's own bytes: a TCP reset (RFC 793 section 3.4, "Reset Generation") or an ICMP
// port unreachable (RFC 792; RFC 1122 3.2.2). kube-proxy answers this way for a Service
// with no endpoints. Worker-safe, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "nat/headers.h"

namespace l4lb {

// `ip` points at an IPv4 header of a TCP segment whose headers were validated, with
// `l4_len` bytes of segment. Rewrites it into the reset its destination would send back:
// addresses and ports swapped, no payload, checksums complete. Returns the new IP total
// length (40); the caller trims the frame to it.
uint16_t make_tcp_reset(Ipv4Hdr& ip, uint16_t l4_len) noexcept;

// Number of bytes an ICMP error about this packet occupies (new IP header, ICMP header,
// the offending IP header and up to 8 bytes of its payload).
size_t icmp_unreachable_size(const Ipv4Hdr& ip, uint16_t l4_len) noexcept;

// Rewrites the packet at `ip` (with room for icmp_unreachable_size() bytes from `ip`)
// into a port-unreachable error from its destination to its source. Returns the new IP
// total length.
uint16_t make_icmp_port_unreachable(Ipv4Hdr& ip, uint16_t l4_len) noexcept;

}  // namespace l4lb
