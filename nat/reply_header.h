// The IPv4 header of a packet l4lb sends itself (TCP RST, ICMP replies and errors): no
// options, TTL 64, header checksum set. Worker-safe.
#pragma once

#include <cstdint>

#include "nat/checksum.h"
#include "nat/headers.h"

namespace l4lb {

constexpr uint8_t kReplyTtl = 64;

inline void write_reply_ipv4_header(Ipv4Hdr& ip, uint32_t src_be, uint32_t dst_be, uint8_t proto,
                                    uint16_t total, bool dont_fragment) noexcept {
  ip.version_ihl = 0x45;
  ip.tos = 0;
  ip.total_length = hton16(total);
  ip.id = 0;
  ip.frag_off = dont_fragment ? hton16(kIpv4FlagDf) : 0;
  ip.ttl = kReplyTtl;
  ip.protocol = proto;
  ip.src = src_be;
  ip.dst = dst_be;
  ip.checksum = 0;
  ip.checksum = ipv4_header_checksum(ip);
}

}  // namespace l4lb
