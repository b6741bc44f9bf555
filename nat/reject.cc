#include "nat/reject.h"

#include <algorithm>
#include <cstring>

#include "nat/checksum.h"
#include "nat/reply_header.h"

namespace l4lb {

uint16_t make_tcp_reset(Ipv4Hdr& ip, uint16_t l4_len) noexcept {
  auto* in = reinterpret_cast<uint8_t*>(&ip) + ip.ihl_bytes();
  TcpHdr seg;
  std::memcpy(&seg, in, sizeof seg);
  const uint32_t data = l4_len - seg.header_bytes();
  TcpHdr rst{};
  rst.src_port = seg.dst_port;
  rst.dst_port = seg.src_port;
  rst.data_off = 5 << 4;
  if (seg.flags & kTcpAck) {
    // "If the incoming segment has an ACK field, the reset takes its sequence number
    // from the ACK field of the segment."
    rst.seq = seg.ack;
    rst.flags = kTcpRst;
  } else {
    // "...otherwise the reset has sequence number zero and the ACK field is set to the
    // sum of the sequence number and segment length of the incoming segment."
    const uint32_t len = data + ((seg.flags & kTcpSyn) ? 1 : 0) + ((seg.flags & kTcpFin) ? 1 : 0);
    rst.seq = 0;
    rst.ack = hton32(ntoh32(seg.seq) + len);
    rst.flags = kTcpRst | kTcpAck;
  }
  const uint32_t src = ip.dst, dst = ip.src;
  // The TCP header moves to offset 20 if the request carried IP options.
  write_reply_ipv4_header(ip, src, dst, kIpProtoTcp, sizeof(Ipv4Hdr) + sizeof(TcpHdr), true);
  auto* out = reinterpret_cast<uint8_t*>(&ip) + sizeof(Ipv4Hdr);
  std::memcpy(out, &rst, sizeof rst);
  const uint16_t csum = l4_checksum(ip, out, sizeof(TcpHdr));
  std::memcpy(out + offsetof(TcpHdr, checksum), &csum, sizeof csum);
  return sizeof(Ipv4Hdr) + sizeof(TcpHdr);
}

size_t icmp_unreachable_size(const Ipv4Hdr& ip, uint16_t l4_len) noexcept {
  return sizeof(Ipv4Hdr) + sizeof(IcmpHdr) + ip.ihl_bytes() + std::min<uint16_t>(l4_len, 8);
}

uint16_t make_icmp_port_unreachable(Ipv4Hdr& ip, uint16_t l4_len) noexcept {
  auto* base = reinterpret_cast<uint8_t*>(&ip);
  const size_t quoted = ip.ihl_bytes() + std::min<uint16_t>(l4_len, 8);
  const uint32_t src = ip.dst, dst = ip.src;
  // The offending header and 8 bytes of its payload follow the new IP and ICMP headers.
  std::memmove(base + sizeof(Ipv4Hdr) + sizeof(IcmpHdr), base, quoted);
  const auto total = static_cast<uint16_t>(sizeof(Ipv4Hdr) + sizeof(IcmpHdr) + quoted);
  write_reply_ipv4_header(ip, src, dst, kIpProtoIcmp, total, true);
  IcmpHdr icmp{};
  icmp.type = kIcmpDestUnreachable;
  icmp.code = kIcmpCodePortUnreachable;
  auto* out = base + sizeof(Ipv4Hdr);
  std::memcpy(out, &icmp, sizeof icmp);
  const uint16_t csum = checksum_fold(checksum_add(out, sizeof(IcmpHdr) + quoted));
  std::memcpy(out + offsetof(IcmpHdr, checksum), &csum, sizeof csum);
  return total;
}

}  // namespace l4lb
