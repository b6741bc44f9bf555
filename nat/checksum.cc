#include "nat/checksum.h"

#include <cstddef>

namespace l4lb {

uint16_t l4_checksum(const Ipv4Hdr& ip, const void* l4, size_t l4_len) noexcept {
  // The stored checksum field must count as zero; adding its complement cancels it.
  size_t field_off = 0;
  bool has_field = false;
  if (ip.protocol == kIpProtoTcp && l4_len >= sizeof(TcpHdr)) {
    field_off = offsetof(TcpHdr, checksum);
    has_field = true;
  } else if (ip.protocol == kIpProtoUdp && l4_len >= sizeof(UdpHdr)) {
    field_off = offsetof(UdpHdr, checksum);
    has_field = true;
  }
  uint32_t sum = 0;
  if (has_field) {
    uint16_t stored;
    std::memcpy(&stored, static_cast<const uint8_t*>(l4) + field_off, sizeof(stored));
    sum += static_cast<uint16_t>(~stored);
  }

  // Pseudo-header (RFC 793 section 3.1, RFC 768): the words {0, protocol} and {length}, in
  // memory order like every other word, then both addresses as stored. l4_len fits 16 bits
  // because an IPv4 total length does.
  sum += hton16(ip.protocol);
  sum += hton16(static_cast<uint16_t>(l4_len));
  sum = checksum_add(reinterpret_cast<const uint8_t*>(&ip) + offsetof(Ipv4Hdr, src),
                     2 * sizeof(uint32_t), sum);

  uint16_t csum = checksum_fold(checksum_add(l4, l4_len, sum));
  // RFC 768: a computed zero is sent as all ones; zero means "no checksum".
  if (ip.protocol == kIpProtoUdp && csum == 0) csum = 0xffff;
  return csum;
}

}  // namespace l4lb
