#include "nat/icmp_error.h"

#include <algorithm>
#include <cstring>

#include "nat/checksum.h"
#include "nat/reply_header.h"
#include "nat/rewrite.h"

namespace l4lb {

size_t icmp_error_size(const Ipv4Hdr& ip, uint16_t l4_len) noexcept {
  return sizeof(Ipv4Hdr) + sizeof(IcmpHdr) + ip.ihl_bytes() + std::min<uint16_t>(l4_len, 8);
}

uint16_t make_icmp_error(Ipv4Hdr& ip, uint16_t l4_len, uint8_t type, uint8_t code,
                         uint16_t next_hop_mtu, uint32_t src_be) noexcept {
  auto* base = reinterpret_cast<uint8_t*>(&ip);
  const size_t quoted = ip.ihl_bytes() + std::min<uint16_t>(l4_len, 8);
  const uint32_t dst = ip.src;
  // The offending header and 8 bytes of its payload follow the new IP and ICMP headers.
  std::memmove(base + sizeof(Ipv4Hdr) + sizeof(IcmpHdr), base, quoted);
  const auto total = static_cast<uint16_t>(sizeof(Ipv4Hdr) + sizeof(IcmpHdr) + quoted);
  write_reply_ipv4_header(ip, src_be, dst, kIpProtoIcmp, total, /*dont_fragment=*/false);
  IcmpHdr icmp{};
  icmp.type = type;
  icmp.code = code;
  icmp.seq = hton16(next_hop_mtu);  // RFC 1191: "Next-Hop MTU" is the low 16 bits
  auto* out = base + sizeof(Ipv4Hdr);
  std::memcpy(out, &icmp, sizeof icmp);
  const uint16_t csum = checksum_fold(checksum_add(out, sizeof(IcmpHdr) + quoted));
  std::memcpy(out + offsetof(IcmpHdr, checksum), &csum, sizeof csum);
  return total;
}

bool parse_icmp_quote(uint8_t* icmp, uint16_t icmp_len, IcmpQuote* q) noexcept {
  if (icmp_len < sizeof(IcmpHdr) + sizeof(Ipv4Hdr)) return false;
  auto* ip = reinterpret_cast<Ipv4Hdr*>(icmp + sizeof(IcmpHdr));
  const uint32_t have = icmp_len - sizeof(IcmpHdr);
  const uint32_t ihl = ip->ihl_bytes();
  if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(Ipv4Hdr) || ihl + 8 > have) return false;
  if (ip->protocol != kIpProtoTcp && ip->protocol != kIpProtoUdp) return false;
  if ((ntoh16(ip->frag_off) & kIpv4FragOffsetMask) != 0) return false;  // no ports quoted
  q->ip = ip;
  q->l4 = reinterpret_cast<uint8_t*>(ip) + ihl;
  q->l4_have = static_cast<uint16_t>(have - ihl);
  return true;
}

bool icmp_checksum_ok(const uint8_t* icmp, uint16_t icmp_len) noexcept {
  return checksum_fold(checksum_add(icmp, icmp_len)) == 0;
}

void translate_icmp_quote(uint8_t* icmp, uint16_t icmp_len, const IcmpQuote& q, QuotedEnd end,
                          uint32_t new_ip, uint16_t new_port) noexcept {
  Ipv4Hdr& ip = *q.ip;
  const bool dst = end == QuotedEnd::kQuotedDst;
  const uint32_t old_ip = dst ? ip.dst : ip.src;
  ip.checksum = checksum_adjust32(ip.checksum, old_ip, new_ip);
  (dst ? ip.dst : ip.src) = new_ip;
  uint8_t* port_at = q.l4 + (dst ? offsetof(UdpHdr, dst_port) : offsetof(UdpHdr, src_port));
  uint16_t old_port;
  std::memcpy(&old_port, port_at, sizeof old_port);
  std::memcpy(port_at, &new_port, sizeof new_port);
  // The quoted L4 checksum covers the pseudo-header address and the port (RFC 1624
  // update); TCP's lies past the 8 bytes most routers quote, and is then not there.
  const size_t csum_off =
      ip.protocol == kIpProtoTcp ? offsetof(TcpHdr, checksum) : offsetof(UdpHdr, checksum);
  if (csum_off + 2 <= q.l4_have) {
    uint16_t c;
    std::memcpy(&c, q.l4 + csum_off, sizeof c);
    if (!(ip.protocol == kIpProtoUdp && c == 0)) {
      c = rewrite_detail::adjust_addr_port(c, old_ip, new_ip, old_port, new_port);
      if (ip.protocol == kIpProtoUdp && c == 0) c = 0xffff;
      std::memcpy(q.l4 + csum_off, &c, sizeof c);
    }
  }
  auto* h = reinterpret_cast<IcmpHdr*>(icmp);
  h->checksum = 0;
  h->checksum = checksum_fold(checksum_add(icmp, icmp_len));
}

}  // namespace l4lb
