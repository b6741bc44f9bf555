#include "lb/parse.h"

#include "nat/checksum.h"

namespace l4lb {

namespace {

// A dropped packet carries its reason and nothing else, whatever was parsed before.
void drop(ParsedPacket& p, DropReason r) noexcept {
  p = ParsedPacket{};
  p.drop = r;
}

}  // namespace

void parse_frame_full(uint8_t* data, uint32_t len, ParseOptions opts, ParsedPacket& p) noexcept {
  p = ParsedPacket{};
  if (len < sizeof(EthHdr)) return drop(p, DropReason::kEthTruncated);
  auto* eth = reinterpret_cast<EthHdr*>(data);
  uint32_t off = sizeof(EthHdr);
  uint16_t type = ntoh16(eth->ether_type);
  if (type == kEtherTypeVlan || type == kEtherTypeQinQ) {
    if (len < off + sizeof(VlanHdr)) return drop(p, DropReason::kVlanTruncated);
    auto* vlan = reinterpret_cast<VlanHdr*>(data + off);
    off += sizeof(VlanHdr);
    type = ntoh16(vlan->ether_type);
    if (type == kEtherTypeVlan || type == kEtherTypeQinQ) return drop(p, DropReason::kVlanStacked);
  }
  if (eth->src.is_multicast()) return drop(p, DropReason::kBadSrcMac);

  p.eth = eth;
  p.l2_len = static_cast<uint16_t>(off);
  if (type == kEtherTypeArp) {
    if (len < off + sizeof(ArpHdr)) return drop(p, DropReason::kArpMalformed);
    auto* arp = reinterpret_cast<ArpHdr*>(data + off);
    if (ntoh16(arp->htype) != 1 || ntoh16(arp->ptype) != kEtherTypeIpv4 || arp->hlen != 6 ||
        arp->plen != 4) {
      return drop(p, DropReason::kArpMalformed);
    }
    p.arp = arp;
    p.kind = PacketKind::kArp;
    return;
  }
  if (type == kEtherTypeIpv6) return drop(p, DropReason::kIpv6);
  if (type != kEtherTypeIpv4) return drop(p, DropReason::kUnsupportedEtherType);

  if (len < off + sizeof(Ipv4Hdr)) return drop(p, DropReason::kIpv4Truncated);
  auto* ip = reinterpret_cast<Ipv4Hdr*>(data + off);
  if ((ip->version_ihl >> 4) != 4) return drop(p, DropReason::kIpv4BadVersion);
  uint32_t ihl = ip->ihl_bytes();
  if (ihl < sizeof(Ipv4Hdr) || off + ihl > len) return drop(p, DropReason::kIpv4BadIhl);
  uint32_t total = ntoh16(ip->total_length);
  // The frame may carry Ethernet padding past total length, never less than it.
  if (total < ihl || off + total > len) return drop(p, DropReason::kIpv4BadTotalLength);
  if (opts.verify_ipv4_checksum && !ipv4_header_checksum_ok(*ip)) {
    return drop(p, DropReason::kIpv4BadChecksum);
  }
  if (bad_source(ip->src)) return drop(p, DropReason::kIpv4BadSrc);
  p.ip = ip;
  p.proto = ip->protocol;
  p.l4_len = static_cast<uint16_t>(total - ihl);
  const uint16_t frag_off = ntoh16(ip->frag_off);
  if ((frag_off & (kIpv4FlagMf | kIpv4FragOffsetMask)) != 0) {
    if (ip->protocol != kIpProtoTcp && ip->protocol != kIpProtoUdp) {
      return drop(p, DropReason::kIpv4Fragment);
    }
    const uint16_t offset = frag_off & kIpv4FragOffsetMask;
    if (offset != 0) {
      // RFC 1858 section 4: a TCP fragment at offset 1 (8 bytes) could rewrite the flags.
      if (offset == 1 && ip->protocol == kIpProtoTcp) return drop(p, DropReason::kFragmentOverlap);
      p.frag = FragKind::kLater;
      p.key = FlowKey{ip->src, ip->dst, 0, 0, ip->protocol};
      p.kind = PacketKind::kIpv4;
      return;
    }
    p.frag = FragKind::kFirst;
  }
  uint8_t* l4 = data + off + ihl;
  p.l4 = l4;
  switch (ip->protocol) {
    case kIpProtoTcp: {
      if (p.l4_len < sizeof(TcpHdr)) return drop(p, DropReason::kL4Truncated);
      auto* tcp = reinterpret_cast<TcpHdr*>(l4);
      uint32_t hl = tcp->header_bytes();
      if (hl < sizeof(TcpHdr) || hl > p.l4_len) return drop(p, DropReason::kTcpBadDataOffset);
      p.tcp_flags = tcp->flags;
      p.key = FlowKey{ip->src, ip->dst, tcp->src_port, tcp->dst_port, kIpProtoTcp};
      break;
    }
    case kIpProtoUdp: {
      if (p.l4_len < sizeof(UdpHdr)) return drop(p, DropReason::kL4Truncated);
      auto* udp = reinterpret_cast<UdpHdr*>(l4);
      uint32_t ulen = ntoh16(udp->length);
      // A first fragment's UDP length covers the whole datagram, past this fragment.
      if (ulen < sizeof(UdpHdr) || (ulen > p.l4_len && p.frag == FragKind::kNone)) {
        return drop(p, DropReason::kUdpBadLength);
      }
      p.key = FlowKey{ip->src, ip->dst, udp->src_port, udp->dst_port, kIpProtoUdp};
      break;
    }
    case kIpProtoIcmp: {
      if (p.l4_len < sizeof(IcmpHdr)) return drop(p, DropReason::kL4Truncated);
      const auto* icmp = reinterpret_cast<const IcmpHdr*>(l4);
      if (is_icmp_error(icmp->type) && parse_icmp_quote(l4, p.l4_len, &p.quote)) {
        const Ipv4Hdr& q = *p.quote.ip;
        const auto* ports = reinterpret_cast<const UdpHdr*>(p.quote.l4);
        p.icmp_error = true;
        p.key = FlowKey{q.dst, q.src, ports->dst_port, ports->src_port, q.protocol};
      }
      break;
    }
    default:
      return drop(p, DropReason::kUnsupportedProto);
  }
  p.kind = PacketKind::kIpv4;
}

}  // namespace l4lb
