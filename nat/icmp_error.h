// ICMP errors (RFC 792) as a NATing router sees them: building the errors l4lb itself sends
// (time exceeded, fragmentation needed with the next-hop MTU of RFC 1191), and translating
// errors that quote a NATed packet so that they reach the endpoint that sent it, with the
// quoted headers as that endpoint sent them (RFC 5508 section 4.2 describes the same for
// NAT devices). Plain functions over packet bytes: worker-safe, noexcept, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "nat/headers.h"

namespace l4lb {

// True for the ICMP types that quote an offending datagram and that l4lb translates.
constexpr bool is_icmp_error(uint8_t type) {
  return type == kIcmpDestUnreachable || type == kIcmpTimeExceeded || type == kIcmpParameterProblem;
}

// Bytes from the IP header on of an error quoting `ip` (its header and up to 8 bytes of
// payload, RFC 792).
size_t icmp_error_size(const Ipv4Hdr& ip, uint16_t l4_len) noexcept;

// Rewrites the packet at `ip` (with room for icmp_error_size() bytes from `ip`) into an
// ICMP error of `type`/`code` from `src_be` to the packet's source. next_hop_mtu (host
// order) goes in the second half of the unused word (RFC 1191 section 4, for code 4), 0
// otherwise. Returns the new IP total length.
uint16_t make_icmp_error(Ipv4Hdr& ip, uint16_t l4_len, uint8_t type, uint8_t code,
                         uint16_t next_hop_mtu, uint32_t src_be) noexcept;

// The datagram an ICMP error quotes. Only errors quoting a whole IPv4 header and at least
// the 8 bytes holding the TCP/UDP ports (RFC 792 guarantees them) of a first or unfragmented
// TCP/UDP datagram are parsed.
struct IcmpQuote {
  Ipv4Hdr* ip = nullptr;  // the quoted IPv4 header
  uint8_t* l4 = nullptr;  // its TCP/UDP header
  uint16_t l4_have = 0;   // quoted L4 bytes (>= 8)
};

// Parses the quote of an ICMP error whose ICMP header sits at `icmp` with `icmp_len`
// readable bytes (the IP payload). False if the quote is cut short, not IPv4, not TCP/UDP,
// or a non-first fragment.
bool parse_icmp_quote(uint8_t* icmp, uint16_t icmp_len, IcmpQuote* q) noexcept;

// True when the ICMP checksum over icmp_len bytes verifies.
bool icmp_checksum_ok(const uint8_t* icmp, uint16_t icmp_len) noexcept;

// Translates the quote of an error travelling towards the sender of the quoted datagram:
// the quoted destination (kQuotedDst) or source (kQuotedSrc) address and port become
// new_ip/new_port; the quoted IPv4 header checksum and the quoted TCP/UDP checksum (when it
// lies within the quote; a UDP 0 stays 0) are updated incrementally, the ICMP checksum
// over the whole message recomputed (the caller has verified it first, so a wrong one is
// never made right). The outer header is the caller's (it is NATed like any packet).
enum class QuotedEnd : uint8_t { kQuotedDst, kQuotedSrc };
void translate_icmp_quote(uint8_t* icmp, uint16_t icmp_len, const IcmpQuote& q, QuotedEnd end,
                          uint32_t new_ip, uint16_t new_port) noexcept;

}  // namespace l4lb
