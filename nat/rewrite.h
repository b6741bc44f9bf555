// The NAT header rewrites of the data path: DNAT to a backend, reverse NAT of its replies,
// and the TTL decrement, each with incremental checksum updates (RFC 1624). Worker-safe,
// noexcept, no allocation; inline because every forwarded packet runs them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "nat/checksum.h"
#include "nat/headers.h"

namespace l4lb {

namespace rewrite_detail {

// RFC 1624 eqn. 3 for an address and a port changing together, folded once. Both fields sit
// at even offsets of the data the TCP/UDP checksum covers: the address in the pseudo-header
// (offset 0 or 4), the port in the first word or second word of the L4 header, which itself
// starts at an even offset (ihl is a multiple of 4). So each is whole 16-bit words.
inline uint16_t adjust_addr_port(uint16_t csum, uint32_t old_ip, uint32_t new_ip, uint16_t old_port,
                                 uint16_t new_port) noexcept {
  uint32_t sum = static_cast<uint16_t>(~csum);
  uint32_t inv_old_ip = ~old_ip;
  sum += (inv_old_ip & 0xffff) + (inv_old_ip >> 16);
  sum += (new_ip & 0xffff) + (new_ip >> 16);
  sum += static_cast<uint16_t>(~old_port);
  sum += new_port;
  return checksum_fold(sum);
}

// The TCP/UDP side of rewriting one end: the port, and the checksum, which covers the port
// and, through the pseudo-header, the address (old_ip -> new_ip). Other protocols: nothing.
template <bool Dst>
inline void rewrite_l4(void* l4, uint8_t proto, uint32_t old_ip, uint32_t new_ip,
                       uint16_t new_port) noexcept {
  if (proto == kIpProtoTcp) {
    auto* tcp = static_cast<TcpHdr*>(l4);
    uint16_t old_port = Dst ? tcp->dst_port : tcp->src_port;
    tcp->checksum = adjust_addr_port(tcp->checksum, old_ip, new_ip, old_port, new_port);
    if constexpr (Dst) {
      tcp->dst_port = new_port;
    } else {
      tcp->src_port = new_port;
    }
  } else if (proto == kIpProtoUdp) {
    auto* udp = static_cast<UdpHdr*>(l4);
    uint16_t old_port = Dst ? udp->dst_port : udp->src_port;
    // RFC 768: a zero checksum means the sender computed none; it must stay zero, since
    // adjusting it would invent a checksum that is wrong. A computed zero goes on the wire
    // as 0xffff (both are zero in one's complement), so an adjusted zero is stored that way.
    if (udp->checksum != 0) {
      uint16_t c = adjust_addr_port(udp->checksum, old_ip, new_ip, old_port, new_port);
      udp->checksum = c == 0 ? 0xffff : c;
    }
    if constexpr (Dst) {
      udp->dst_port = new_port;
    } else {
      udp->src_port = new_port;
    }
  }
}

// Rewrites one end (destination when Dst, source otherwise) of a TCP or UDP packet.
template <bool Dst>
inline void rewrite_end(Ipv4Hdr& ip, void* l4, uint8_t proto, uint32_t new_ip,
                        uint16_t new_port) noexcept {
  uint32_t old_ip = Dst ? ip.dst : ip.src;
  // The IPv4 header checksum covers the address itself (RFC 791).
  ip.checksum = checksum_adjust32(ip.checksum, old_ip, new_ip);
  if constexpr (Dst) {
    ip.dst = new_ip;
  } else {
    ip.src = new_ip;
  }

  rewrite_l4<Dst>(l4, proto, old_ip, new_ip, new_port);
}

// rewrite_end() followed by decrement_ttl(), with one IPv4 header checksum update for the
// address and the {ttl, protocol} word together (RFC 1624 eqn. 3 summed over both changes):
// the forwarding fast lane's rewrite. The caller has checked ttl > 1.
template <bool Dst>
inline void rewrite_end_ttl(Ipv4Hdr& ip, void* l4, uint8_t proto, uint32_t new_ip,
                            uint16_t new_port) noexcept {
  static_assert(offsetof(Ipv4Hdr, ttl) % 2 == 0 && offsetof(Ipv4Hdr, protocol) == 9);
  auto* ttl_word = reinterpret_cast<uint8_t*>(&ip) + offsetof(Ipv4Hdr, ttl);
  uint16_t old_w;
  std::memcpy(&old_w, ttl_word, sizeof(old_w));
  ip.ttl = static_cast<uint8_t>(ip.ttl - 1);
  uint16_t new_w;
  std::memcpy(&new_w, ttl_word, sizeof(new_w));
  const uint32_t old_ip = Dst ? ip.dst : ip.src;
  const uint32_t inv_old_ip = ~old_ip;
  uint32_t sum = static_cast<uint16_t>(~ip.checksum);
  sum += (inv_old_ip & 0xffff) + (inv_old_ip >> 16) + (new_ip & 0xffff) + (new_ip >> 16);
  sum += static_cast<uint16_t>(~old_w) + uint32_t{new_w};
  ip.checksum = checksum_fold(sum);
  if constexpr (Dst) {
    ip.dst = new_ip;
  } else {
    ip.src = new_ip;
  }
  rewrite_l4<Dst>(l4, proto, old_ip, new_ip, new_port);
}

}  // namespace rewrite_detail

// DNAT: sets the destination address and port of an IPv4 TCP or UDP packet whose L4 header
// is at l4, updating the IPv4 header checksum and the TCP/UDP checksum incrementally.
// A UDP checksum of 0 (none, RFC 768) stays 0; an adjusted UDP checksum that becomes 0 is
// stored as 0xffff. For any other proto only the IPv4 header changes and l4 is not touched.
// All values in network byte order. The caller has made sure the L4 header is present (not
// a non-first fragment). With TX L4 checksum offload the caller rewrites the pseudo-header
// checksum itself; what this leaves in the field is then overwritten.
inline void rewrite_dst(Ipv4Hdr& ip, void* l4, uint8_t proto, uint32_t new_ip,
                        uint16_t new_port) noexcept {
  rewrite_detail::rewrite_end<true>(ip, l4, proto, new_ip, new_port);
}

// Reverse NAT: the same for the source, so that replies from the backend leave with the
// VIP:port the client talked to.
inline void rewrite_src(Ipv4Hdr& ip, void* l4, uint8_t proto, uint32_t new_ip,
                        uint16_t new_port) noexcept {
  rewrite_detail::rewrite_end<false>(ip, l4, proto, new_ip, new_port);
}

// DNAT and the TTL decrement of a forwarded TCP or UDP packet (not a fragment) in one go:
// the same bytes as rewrite_dst() then decrement_ttl(), up to the representation of a zero
// IPv4 header checksum. ttl > 1 is the caller's to check.
inline void forward_dst(Ipv4Hdr& ip, void* l4, uint8_t proto, uint32_t new_ip,
                        uint16_t new_port) noexcept {
  rewrite_detail::rewrite_end_ttl<true>(ip, l4, proto, new_ip, new_port);
}

// Reverse NAT and the TTL decrement of a forwarded reply: rewrite_src() then decrement_ttl().
inline void forward_src(Ipv4Hdr& ip, void* l4, uint8_t proto, uint32_t new_ip,
                        uint16_t new_port) noexcept {
  rewrite_detail::rewrite_end_ttl<false>(ip, l4, proto, new_ip, new_port);
}

// Decrements the TTL (RFC 791, RFC 1812 section 5.3.1) and adjusts the header checksum
// incrementally. The caller has checked ttl > 1 (a packet that would reach 0 gets ICMP time
// exceeded or is dropped, not forwarded). TTL is the high byte of the 16-bit word it shares
// with protocol, so the whole word {ttl, protocol} is the m of RFC 1624.
inline void decrement_ttl(Ipv4Hdr& ip) noexcept {
  static_assert(offsetof(Ipv4Hdr, ttl) % 2 == 0 && offsetof(Ipv4Hdr, protocol) == 9);
  auto* word = reinterpret_cast<uint8_t*>(&ip) + offsetof(Ipv4Hdr, ttl);
  uint16_t old_w;
  std::memcpy(&old_w, word, sizeof(old_w));
  ip.ttl = static_cast<uint8_t>(ip.ttl - 1);
  uint16_t new_w;
  std::memcpy(&new_w, word, sizeof(new_w));
  ip.checksum = checksum_adjust16(ip.checksum, old_w, new_w);
}

}  // namespace l4lb
