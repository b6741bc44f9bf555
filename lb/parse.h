// Parses one Ethernet frame (one optional 802.1Q tag) into header views with full
// bounds checks, so the rest of the data path never reads past the frame. Worker-safe.
#pragma once

#include <cstdint>

#include "lb/drop_reason.h"
#include "lb/flow_key.h"
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

// `data` must stay valid while the views are used; nothing is written. Fills p whole (the
// data path parses into a reused array: no struct copies per packet).
void parse_frame_into(uint8_t* data, uint32_t len, ParseOptions opts, ParsedPacket& p) noexcept;

inline ParsedPacket parse_frame(uint8_t* data, uint32_t len, ParseOptions opts) noexcept {
  ParsedPacket p;
  parse_frame_into(data, len, opts, p);
  return p;
}

}  // namespace l4lb
