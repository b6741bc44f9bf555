// Every reason the data path drops a packet, declared once: X(enum, label, help).
// The enum, the metric label and the help text all come from this list. Worker-safe.
#pragma once

#include <cstdint>
#include <string_view>

namespace l4lb {

#define L4LB_DROP_REASONS(X)                                                              \
  X(kEthTruncated, "eth_truncated", "frame shorter than an Ethernet header")              \
  X(kVlanTruncated, "vlan_truncated", "802.1Q tag cut short")                             \
  X(kVlanStacked, "vlan_stacked", "more than one VLAN tag (QinQ is not supported)")       \
  X(kNotOurMac, "not_our_mac", "unicast frame for another station")                       \
  X(kMulticast, "multicast", "multicast destination MAC")                                 \
  X(kBadSrcMac, "bad_src_mac", "multicast or broadcast source MAC")                       \
  X(kUnsupportedEtherType, "unsupported_ethertype", "neither IPv4 nor ARP")               \
  X(kIpv6, "ipv6_unsupported", "IPv6 is not handled yet")                                 \
  X(kArpMalformed, "arp_malformed", "ARP packet cut short or not Ethernet/IPv4")          \
  X(kArpNotForUs, "arp_not_for_us", "ARP request for an address l4lb does not own")       \
  X(kIpv4Truncated, "ipv4_truncated", "frame shorter than the IPv4 header")               \
  X(kIpv4BadVersion, "ipv4_bad_version", "IP version field is not 4")                     \
  X(kIpv4BadIhl, "ipv4_bad_ihl", "IPv4 header length under 20 bytes or past the frame")   \
  X(kIpv4BadTotalLength, "ipv4_bad_total_length", "IPv4 total length past the frame or under the header") \
  X(kIpv4BadChecksum, "ipv4_bad_checksum", "IPv4 header checksum is wrong")               \
  X(kIpv4BadSrc, "ipv4_bad_src", "source address is multicast, broadcast, loopback or zero") \
  X(kIpv4Fragment, "ipv4_fragment", "fragment of an ICMP or non-TCP/UDP datagram (not forwarded)") \
  X(kFragmentOverlap, "fragment_overlap", "TCP fragment at offset 8 bytes, which could rewrite the header (RFC 1858)") \
  X(kFragTableFull, "frag_table_full", "no fragment-table entry free for a new fragmented datagram") \
  X(kFragHoldFull, "frag_hold_full", "fragment arrived before its first and the hold limit was reached") \
  X(kFragTimeout, "frag_timeout", "held fragment whose first fragment never came (or was not forwarded)") \
  X(kTtlExceeded, "ttl_exceeded", "TTL would reach zero (ICMP time exceeded sent, rate permitting)") \
  X(kL4Truncated, "l4_truncated", "TCP/UDP/ICMP header cut short")                        \
  X(kTcpBadDataOffset, "tcp_bad_data_offset", "TCP data offset under 5 words or past the segment") \
  X(kUdpBadLength, "udp_bad_length", "UDP length disagrees with the IP payload")          \
  X(kUnsupportedProto, "unsupported_proto", "IP protocol other than TCP, UDP or ICMP")    \
  X(kHostUnsupported, "host_unsupported", "traffic for l4lb's own address that it does not serve") \
  X(kIcmpUnsupported, "icmp_unsupported", "ICMP to an owned address other than an echo request or an error about a flow") \
  X(kIcmpBadChecksum, "icmp_bad_checksum", "ICMP error about a flow with a wrong ICMP checksum") \
  X(kVipPingDisabled, "vip_ping_disabled", "echo request to a VIP while dataplane.answerVipPings is false") \
  X(kNoServicePort, "no_service_port", "VIP reached on a protocol/port no Service exposes") \
  X(kAclDenied, "acl_denied", "source outside the Service's loadBalancerSourceRanges")    \
  X(kNoBackend, "no_backend", "Service port has no backend able to take new flows")       \
  X(kNoFlow, "no_flow", "not for a VIP, a known flow, nor l4lb itself (not an open router)") \
  X(kNoRoute, "no_route", "no route to the destination")                                  \
  X(kNeighborHoldFull, "neighbor_hold_full", "next hop unresolved and its hold queue full") \
  X(kNeighborTimeout, "neighbor_timeout", "next hop did not answer ARP in time")         \
  X(kNeighborTableFull, "neighbor_table_full", "no room to track another next hop")      \
  X(kTxFull, "tx_full", "the port's TX queue refused the packet")                         \
  X(kHandoffFull, "handoff_full", "the owning worker's hand-off ring was full")            \
  X(kMtuExceeded, "mtu_exceeded", "packet without DF larger than the egress MTU (l4lb does not fragment)") \
  X(kFragNeeded, "frag_needed", "DF packet larger than the egress MTU (ICMP fragmentation needed sent, rate permitting)")

enum class DropReason : uint8_t {
#define L4LB_X(e, label, help) e,
  L4LB_DROP_REASONS(L4LB_X)
#undef L4LB_X
      kCount
};

constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kCount);

constexpr std::string_view drop_reason_label(DropReason r) {
  constexpr std::string_view kLabels[] = {
#define L4LB_X(e, label, help) label,
      L4LB_DROP_REASONS(L4LB_X)
#undef L4LB_X
  };
  return kLabels[static_cast<size_t>(r)];
}

constexpr std::string_view drop_reason_help(DropReason r) {
  constexpr std::string_view kHelp[] = {
#define L4LB_X(e, label, help) help,
      L4LB_DROP_REASONS(L4LB_X)
#undef L4LB_X
  };
  return kHelp[static_cast<size_t>(r)];
}

}  // namespace l4lb
