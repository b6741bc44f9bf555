// Parses one Ethernet frame (one optional 802.1Q tag) into header views with full
// bounds checks, so the rest of the data path never reads past the frame. Worker-safe.
#pragma once

#include <cstdint>

#include "lb/drop_reason.h"
#include "lb/flow_key.h"
#include "nat/checksum.h"
#include "nat/headers.h"
#include "nat/icmp_error.h"

namespace l4lb {

enum class PacketKind : uint8_t { kDrop, kArp, kIpv4 };
// kFirst: offset 0 with more fragments, its L4 header present (a UDP length then covers the
// whole datagram); kLater: a non-first TCP/UDP fragment: no L4 header, l4 is null and the
// key's ports are 0.
enum class FragKind : uint8_t { kNone, kFirst, kLater };

struct ParsedPacket {
  PacketKind kind = PacketKind::kDrop;
  DropReason drop = DropReason::kEthTruncated;  // valid when kind == kDrop
  uint8_t proto = 0;                            // IPv4 protocol
  uint8_t tcp_flags = 0;
  uint16_t l2_len = 0;  // Ethernet header plus VLAN tag
  uint16_t l4_len = 0;  // IPv4 payload length (from total length, not the frame)
  EthHdr* eth = nullptr;
  ArpHdr* arp = nullptr;
  Ipv4Hdr* ip = nullptr;
  void* l4 = nullptr;  // TCP/UDP/ICMP header, bounds-checked for its fixed part
  FlowKey key{};       // 5-tuple as carried, for TCP and UDP; see icmp_error
  FragKind frag = FragKind::kNone;
  // An ICMP error quoting a TCP/UDP datagram: key is then the quoted 5-tuple reversed,
  // the key the flow table knows the error's direction by (as if it were a packet of the
  // flow travelling the same way as the error).
  bool icmp_error = false;
  IcmpQuote quote{};
};

struct ParseOptions {
  // Off when the NIC already verified it (RX offload flags say GOOD).
  bool verify_ipv4_checksum = true;
};

// 0/8, 127/8, 224/4 (multicast) and 240/4 (reserved, incl. broadcast) never source real flows.
inline bool bad_source(uint32_t src_be) noexcept {
  const auto first = static_cast<uint8_t>(ntoh32(src_be) >> 24);
  return first == 0 || first == 127 || first >= 224;
}

// The general parser: every frame, every check. parse_frame_into() gives the same result.
void parse_frame_full(uint8_t* data, uint32_t len, ParseOptions opts, ParsedPacket& p) noexcept;

// `data` must stay valid while the views are used; nothing is written. Fills p whole (the
// data path parses into a reused array: no struct copies per packet).
//
// Inline for the frame nearly every packet is: untagged Ethernet, a 20-byte IPv4 header,
// not a fragment, TCP or UDP with a sane header; it makes the same checks as
// parse_frame_full() for that shape (parse_test compares the two over mutated frames, and
// fuzz_packet on every input). Anything else goes to parse_frame_full(). Measured with
// callgrind: ~117 -> ~60 instructions per packet.
inline void parse_frame_into(uint8_t* data, uint32_t len, ParseOptions opts,
                             ParsedPacket& p) noexcept {
  constexpr uint32_t kIpOff = sizeof(EthHdr);
  constexpr uint32_t kL4Off = kIpOff + sizeof(Ipv4Hdr);
  if (len < kL4Off + sizeof(UdpHdr)) [[unlikely]] return parse_frame_full(data, len, opts, p);
  auto* eth = reinterpret_cast<EthHdr*>(data);
  auto* ip = reinterpret_cast<Ipv4Hdr*>(data + kIpOff);
  const uint32_t total = ntoh16(ip->total_length);
  const bool plain = eth->ether_type == hton16(kEtherTypeIpv4) && ip->version_ihl == 0x45 &&
                     (ip->frag_off & hton16(kIpv4FlagMf | kIpv4FragOffsetMask)) == 0 &&
                     total >= sizeof(Ipv4Hdr) && kIpOff + total <= len &&
                     !eth->src.is_multicast() && !bad_source(ip->src);
  if (!plain) [[unlikely]] return parse_frame_full(data, len, opts, p);
  // Bounded by total (checked against len above): the L4 header lies inside the frame.
  const auto l4_len = static_cast<uint16_t>(total - sizeof(Ipv4Hdr));
  uint8_t* l4 = data + kL4Off;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t flags = 0;
  if (ip->protocol == kIpProtoTcp) {
    if (l4_len < sizeof(TcpHdr)) [[unlikely]] return parse_frame_full(data, len, opts, p);
    const auto* tcp = reinterpret_cast<const TcpHdr*>(l4);
    const uint32_t hl = tcp->header_bytes();
    if (hl < sizeof(TcpHdr) || hl > l4_len) [[unlikely]] return parse_frame_full(data, len, opts, p);
    src_port = tcp->src_port;
    dst_port = tcp->dst_port;
    flags = tcp->flags;
  } else if (ip->protocol == kIpProtoUdp) {
    const auto* udp = reinterpret_cast<const UdpHdr*>(l4);
    const uint32_t ulen = ntoh16(udp->length);
    if (l4_len < sizeof(UdpHdr) || ulen < sizeof(UdpHdr) || ulen > l4_len) [[unlikely]] {
      return parse_frame_full(data, len, opts, p);
    }
    src_port = udp->src_port;
    dst_port = udp->dst_port;
  } else {
    return parse_frame_full(data, len, opts, p);
  }
  if (opts.verify_ipv4_checksum && !ipv4_header_checksum_ok(*ip)) [[unlikely]] {
    return parse_frame_full(data, len, opts, p);
  }
  p.kind = PacketKind::kIpv4;
  p.drop = DropReason::kEthTruncated;  // ParsedPacket's default: unused for kIpv4
  p.proto = ip->protocol;
  p.tcp_flags = flags;
  p.l2_len = static_cast<uint16_t>(kIpOff);
  p.l4_len = l4_len;
  p.eth = eth;
  p.arp = nullptr;
  p.ip = ip;
  p.l4 = l4;
  p.key = FlowKey{ip->src, ip->dst, src_port, dst_port, ip->protocol};
  p.frag = FragKind::kNone;
  p.icmp_error = false;
  p.quote = IcmpQuote{};
}

inline ParsedPacket parse_frame(uint8_t* data, uint32_t len, ParseOptions opts) noexcept {
  ParsedPacket p;
  parse_frame_into(data, len, opts, p);
  return p;
}

}  // namespace l4lb
