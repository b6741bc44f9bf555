// Wire formats of the headers l4lb reads and rewrites, and byte-order helpers.
// Plain structs over packet bytes; no DPDK. Worker-safe.
#pragma once

#include <cstdint>
#include <cstring>

namespace l4lb {

// Network-byte-order values stay in these wrappers' raw form on the hot path;
// convert only where a host-order number is needed (config, logs, tests).
constexpr uint16_t bswap16(uint16_t v) { return static_cast<uint16_t>((v >> 8) | (v << 8)); }
constexpr uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }
constexpr uint16_t hton16(uint16_t v) { return bswap16(v); }
constexpr uint16_t ntoh16(uint16_t v) { return bswap16(v); }
constexpr uint32_t hton32(uint32_t v) { return bswap32(v); }
constexpr uint32_t ntoh32(uint32_t v) { return bswap32(v); }

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88a8;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;

constexpr uint8_t kIpProtoIcmp = 1;
constexpr uint8_t kIpProtoTcp = 6;
constexpr uint8_t kIpProtoUdp = 17;

struct MacAddr {
  uint8_t b[6];
  // Two loads and a compare, not six byte compares: every frame's destination is checked.
  bool operator==(const MacAddr& o) const noexcept {
    uint32_t a, c;
    uint16_t x, y;
    std::memcpy(&a, b, 4);
    std::memcpy(&c, o.b, 4);
    std::memcpy(&x, b + 4, 2);
    std::memcpy(&y, o.b + 4, 2);
    return ((a ^ c) | static_cast<uint32_t>(x ^ y)) == 0;
  }
  bool is_broadcast() const { return (b[0] & b[1] & b[2] & b[3] & b[4] & b[5]) == 0xff; }
  bool is_multicast() const { return (b[0] & 1) != 0; }
};

struct __attribute__((packed)) EthHdr {
  MacAddr dst;
  MacAddr src;
  uint16_t ether_type;  // network order
};

struct __attribute__((packed)) VlanHdr {
  uint16_t tci;         // network order
  uint16_t ether_type;  // network order
};

struct __attribute__((packed)) ArpHdr {
  uint16_t htype;  // 1 = Ethernet
  uint16_t ptype;  // 0x0800
  uint8_t hlen;    // 6
  uint8_t plen;    // 4
  uint16_t oper;   // 1 request, 2 reply
  MacAddr sha;
  uint32_t spa;  // network order
  MacAddr tha;
  uint32_t tpa;  // network order
};
constexpr uint16_t kArpRequest = 1;
constexpr uint16_t kArpReply = 2;

struct __attribute__((packed)) Ipv4Hdr {
  uint8_t version_ihl;
  uint8_t tos;
  uint16_t total_length;
  uint16_t id;
  uint16_t frag_off;  // flags (3 bits) + offset (13 bits), network order
  uint8_t ttl;
  uint8_t protocol;
  uint16_t checksum;
  uint32_t src;  // network order
  uint32_t dst;  // network order
  unsigned ihl_bytes() const { return (version_ihl & 0x0f) * 4u; }
};
constexpr uint16_t kIpv4FlagMf = 0x2000;
constexpr uint16_t kIpv4FlagDf = 0x4000;
constexpr uint16_t kIpv4FragOffsetMask = 0x1fff;

struct __attribute__((packed)) TcpHdr {
  uint16_t src_port;
  uint16_t dst_port;
  uint32_t seq;
  uint32_t ack;
  uint8_t data_off;  // upper 4 bits: header length in 32-bit words
  uint8_t flags;
  uint16_t window;
  uint16_t checksum;
  uint16_t urgent;
  unsigned header_bytes() const { return (data_off >> 4) * 4u; }
};
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpAck = 0x10;

struct __attribute__((packed)) UdpHdr {
  uint16_t src_port;
  uint16_t dst_port;
  uint16_t length;
  uint16_t checksum;
};

struct __attribute__((packed)) IcmpHdr {
  uint8_t type;
  uint8_t code;
  uint16_t checksum;
  uint16_t id;
  uint16_t seq;
};
constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpEchoRequest = 8;
// Errors l4lb sends or translates.
constexpr uint8_t kIcmpDestUnreachable = 3;
constexpr uint8_t kIcmpTimeExceeded = 11;
constexpr uint8_t kIcmpParameterProblem = 12;
constexpr uint8_t kIcmpCodePortUnreachable = 3;
constexpr uint8_t kIcmpCodeFragNeeded = 4;
constexpr uint8_t kIcmpCodeTtlExceeded = 0;

static_assert(sizeof(EthHdr) == 14);
static_assert(sizeof(ArpHdr) == 28);
static_assert(sizeof(Ipv4Hdr) == 20);
static_assert(sizeof(TcpHdr) == 20);
static_assert(sizeof(UdpHdr) == 8);

}  // namespace l4lb
