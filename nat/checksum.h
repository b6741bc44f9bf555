// Internet checksums (RFC 1071) for IPv4 headers and TCP/UDP with the IPv4 pseudo-header,
// full and incremental (RFC 1624). Pure functions over packet bytes: worker-safe, noexcept,
// no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "nat/headers.h"

namespace l4lb {

// Byte order. Every 16-bit word is summed as loaded from memory in host order. RFC 1071
// section 2(B): the one's-complement sum is byte-order independent, so a sum of words loaded
// in host order is the byte-swapped network-order sum on a little-endian CPU, and storing its
// complement with a plain 16-bit store puts the right bytes on the wire. Hence every value
// taken or returned here is "as stored in the packet" (network order) and is never swapped.

// One's-complement sum (RFC 1071) of len bytes at data, added to sum. Returns the 32-bit
// accumulator, not folded. An odd trailing byte is padded with a zero byte after it (RFC 793,
// RFC 768); so when one sum is built in several calls, only the last may have an odd length.
inline uint32_t checksum_add(const void* data, size_t len, uint32_t sum = 0) noexcept {
  const auto* p = static_cast<const uint8_t*>(data);
  // 32-bit loads into a 64-bit accumulator: each 32-bit word is two 16-bit words, and
  // end-around carries are deferred to the fold below (RFC 1071 section 2(C), "deferred
  // carries"). 2^32 loads cannot overflow 64 bits.
  uint64_t acc = sum;
  while (len >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    acc += w;
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    uint16_t w = 0;
    std::memcpy(&w, p, 1);  // memory {byte, 0}: the zero pad follows the byte
    acc += w;
  }
  // Fold 64 -> 32 bits with end-around carry; twice covers the carry of the first fold.
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  return static_cast<uint32_t>(acc);
}

// Folds the carries of a 32-bit accumulator into 16 bits (end-around carry, RFC 1071) and
// returns the one's complement of that 16-bit sum: the value to store in a checksum field.
// The folded sum is 0x0000 only when the accumulator is 0 (all data zero); otherwise it lies
// in 0x0001..0xffff, so the result lies in 0x0000..0xfffe and never is 0xffff ("-0").
// checksum_fold(checksum_add(x)) == 0 means x, checksum field included, verifies.
inline uint16_t checksum_fold(uint32_t sum) noexcept {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

// IPv4 header checksum (RFC 791) over ip.ihl_bytes() bytes with the checksum field taken as
// zero. The caller has checked ihl >= 5 and that ihl bytes are readable. Result ready to store.
inline uint16_t ipv4_header_checksum(const Ipv4Hdr& ip) noexcept {
  // Summing the stored field and then adding its complement cancels it (x + ~x = -0), which
  // is the same as summing a zero field, without copying the header.
  return checksum_fold(checksum_add(&ip, ip.ihl_bytes(), static_cast<uint16_t>(~ip.checksum)));
}

// True when the stored header checksum verifies: the sum over the whole header, checksum
// included, is 0xffff (RFC 1071 section 1, step 3). Same preconditions as above.
inline bool ipv4_header_checksum_ok(const Ipv4Hdr& ip) noexcept {
  if (ip.ihl_bytes() == 20) {
    // Nearly every header has no options: five fixed loads instead of the general loop
    // (measured with callgrind: 57 -> ~20 instructions per packet).
    uint32_t w[5];
    std::memcpy(w, &ip, sizeof w);
    uint64_t acc = uint64_t{w[0]} + w[1] + w[2] + w[3] + w[4];
    acc = (acc & 0xffffffffu) + (acc >> 32);
    acc = (acc & 0xffffffffu) + (acc >> 32);  // the first fold's own carry
    return checksum_fold(static_cast<uint32_t>(acc)) == 0;
  }
  return checksum_fold(checksum_add(&ip, ip.ihl_bytes())) == 0;
}

// Full TCP (RFC 793 section 3.1) or UDP (RFC 768) checksum with the IPv4 pseudo-header
// {src, dst, zero, protocol, l4_len}. l4 points at the TCP/UDP header, l4_len is the IP
// payload length (total length - ihl), all of it readable. The protocol comes from
// ip.protocol; for TCP and UDP the stored checksum field is taken as zero, so the result is
// what belongs there (ready to store). For UDP a computed 0 becomes 0xffff, because 0 on the
// wire means "no checksum" (RFC 768). Out of line: the cost is the payload, not the call.
uint16_t l4_checksum(const Ipv4Hdr& ip, const void* l4, size_t l4_len) noexcept;

// The IPv4 pseudo-header sum, folded but not complemented, as NICs doing TX L4 checksum
// offload expect it in the TCP/UDP checksum field (they add the segment and complement).
inline uint16_t ipv4_pseudo_header_sum(const Ipv4Hdr& ip) noexcept {
  const uint16_t l4_len = static_cast<uint16_t>(ntoh16(ip.total_length) - ip.ihl_bytes());
  uint32_t sum = (ip.src & 0xffff) + (ip.src >> 16) + (ip.dst & 0xffff) + (ip.dst >> 16) +
                 hton16(ip.protocol) + hton16(l4_len);
  return static_cast<uint16_t>(~checksum_fold(sum));
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), the checksum after a 16-bit word of the covered
// data changes from m to m'. Values as stored in the packet (network order). Eqn. 3 rather
// than RFC 1141's eqn. 2, because eqn. 2 can give 0xffff where a full recompute gives 0x0000
// (RFC 1624 section 3). For an HC from a full computation (never 0xffff, see checksum_fold)
// the result equals a full recompute of the changed data, bit for bit.
inline uint16_t checksum_adjust16(uint16_t csum, uint16_t old_v, uint16_t new_v) noexcept {
  uint32_t sum = static_cast<uint16_t>(~csum);
  sum += static_cast<uint16_t>(~old_v);
  sum += new_v;
  return checksum_fold(sum);
}

// The same for a 32-bit field (an IPv4 address) that starts at an even offset of the covered
// data: two 16-bit words change at once, folded once.
inline uint16_t checksum_adjust32(uint16_t csum, uint32_t old_v, uint32_t new_v) noexcept {
  uint32_t sum = static_cast<uint16_t>(~csum);
  uint32_t inv_old = ~old_v;
  sum += (inv_old & 0xffff) + (inv_old >> 16);
  sum += (new_v & 0xffff) + (new_v >> 16);
  return checksum_fold(sum);
}

}  // namespace l4lb
