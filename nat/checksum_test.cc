#include "nat/checksum.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "nat/headers.h"
#include "nat/rewrite.h"

namespace l4lb {
namespace {

// Reference one's-complement sum, written the way RFC 1071 describes it: big-endian 16-bit
// words, an odd last byte padded with zero, end-around carry. Returns the folded sum in host
// order. Deliberately naive so that it shares nothing with the code under test.
uint16_t ref_sum(const uint8_t* b, size_t n) {
  uint32_t s = 0;
  for (size_t i = 0; i < n; i += 2) {
    s += static_cast<uint32_t>(b[i]) << 8;
    if (i + 1 < n) s += b[i + 1];
    while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  }
  return static_cast<uint16_t>(s);
}

// The value a stored checksum field holds, as a host-order number.
uint16_t wire(uint16_t stored) { return ntoh16(stored); }

// An IPv4 packet in a byte buffer, at an odd offset so that unaligned accesses show up under
// UBSan as they would behind a 14-byte Ethernet header.
struct TestPacket {
  std::vector<uint8_t> bytes;
  size_t ip_off = 1;
  Ipv4Hdr& ip() { return *reinterpret_cast<Ipv4Hdr*>(bytes.data() + ip_off); }
  uint8_t* l4() { return bytes.data() + ip_off + ip().ihl_bytes(); }
  size_t l4_len() { return ntoh16(ip().total_length) - ip().ihl_bytes(); }
  TcpHdr& tcp() { return *reinterpret_cast<TcpHdr*>(l4()); }
  UdpHdr& udp() { return *reinterpret_cast<UdpHdr*>(l4()); }
  size_t l4_hdr_len() { return ip().protocol == kIpProtoTcp ? tcp().header_bytes() : 8; }
  uint16_t l4_csum() { return ip().protocol == kIpProtoTcp ? tcp().checksum : udp().checksum; }
  void set_l4_csum(uint16_t c) {
    if (ip().protocol == kIpProtoTcp) {
      tcp().checksum = c;
    } else {
      udp().checksum = c;
    }
  }
  // Independent checks: the whole header / pseudo-header + segment sums to 0xffff.
  bool ip_verifies() { return ref_sum(bytes.data() + ip_off, ip().ihl_bytes()) == 0xffff; }
  bool l4_verifies() {
    std::vector<uint8_t> d(12);
    std::memcpy(d.data(), bytes.data() + ip_off + offsetof(Ipv4Hdr, src), 8);
    d[9] = ip().protocol;
    d[10] = static_cast<uint8_t>(l4_len() >> 8);
    d[11] = static_cast<uint8_t>(l4_len());
    d.insert(d.end(), l4(), l4() + l4_len());
    return ref_sum(d.data(), d.size()) == 0xffff;
  }
};

// A packet with random header fields, IPv4 options, TCP options and payload (odd lengths
// included), and correct checksums from the full computation.
TestPacket random_packet(std::mt19937_64& rng, uint8_t proto) {
  auto uni = [&rng](uint32_t lo, uint32_t hi) {
    return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
  };
  size_t ihl = 4 * uni(5, 15);
  size_t l4_hdr = proto == kIpProtoTcp ? 4 * uni(5, 15) : sizeof(UdpHdr);
  size_t payload = uni(0, 3) == 0 ? uni(0, 8) : uni(0, 1500);
  TestPacket p;
  p.ip_off = uni(0, 3);
  p.bytes.resize(p.ip_off + ihl + l4_hdr + payload);
  for (auto& b : p.bytes) b = static_cast<uint8_t>(rng());
  Ipv4Hdr& ip = p.ip();
  ip.version_ihl = static_cast<uint8_t>(0x40 | (ihl / 4));
  ip.total_length = hton16(static_cast<uint16_t>(ihl + l4_hdr + payload));
  ip.protocol = proto;
  ip.ttl = static_cast<uint8_t>(uni(2, 255));
  if (proto == kIpProtoTcp) {
    p.tcp().data_off = static_cast<uint8_t>((l4_hdr / 4) << 4 | (p.tcp().data_off & 0x0f));
  } else {
    p.udp().length = hton16(static_cast<uint16_t>(l4_hdr + payload));
  }
  ip.checksum = ipv4_header_checksum(ip);
  p.set_l4_csum(l4_checksum(ip, p.l4(), p.l4_len()));
  return p;
}

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 2ddf0, folded ddf2.
  const uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  uint16_t c = checksum_fold(checksum_add(data, sizeof(data)));
  uint8_t stored[2];
  std::memcpy(stored, &c, 2);
  EXPECT_EQ(stored[0], 0x22);  // ~ddf2 = 220d, in network order
  EXPECT_EQ(stored[1], 0x0d);
  // The same sum built in two calls (the first of even length).
  EXPECT_EQ(checksum_fold(checksum_add(data + 4, 4, checksum_add(data, 4))), c);
}

TEST(Checksum, OddLastBytePaddedWithZeroAfterIt) {
  const uint8_t one[] = {0x12};
  EXPECT_EQ(wire(checksum_fold(checksum_add(one, 1))), 0xedff);  // ~1200
  const uint8_t three[] = {0x01, 0x02, 0x03};
  EXPECT_EQ(wire(checksum_fold(checksum_add(three, 3))), static_cast<uint16_t>(~0x0402));
  EXPECT_EQ(checksum_fold(checksum_add(one, 0)), 0xffff);  // nothing summed: ~0
}

TEST(Checksum, AddMatchesReferenceForEveryLengthAndStartingSum) {
  std::mt19937_64 rng(1);
  std::vector<uint8_t> buf(300);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t off = 0; off < 4; ++off) {
    for (size_t n = 0; n + off <= buf.size(); ++n) {
      uint16_t ref = static_cast<uint16_t>(~ref_sum(buf.data() + off, n));
      ASSERT_EQ(wire(checksum_fold(checksum_add(buf.data() + off, n))), ref) << off << " " << n;
    }
  }
  // A starting accumulator near the top of its range must carry, not wrap.
  const uint8_t ff[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(checksum_fold(checksum_add(ff, 8, 0xffffffffu)), 0x0000);
  EXPECT_EQ(checksum_fold(0xffffffffu), 0x0000);
  EXPECT_EQ(checksum_fold(0x0001fffeu), 0x0000);  // fffe + 1 = ffff
  EXPECT_EQ(checksum_fold(0), 0xffff);
}

TEST(Checksum, KnownIpv4Header) {
  // 192.168.0.1 -> 192.168.0.199, UDP, TTL 64, DF, total length 115: checksum b861.
  // By hand: 4500+0073+0000+4000+4011+c0a8+0001+c0a8+00c7 = 2479c, folded 479e, ~ = b861.
  uint8_t h[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                   0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  auto& ip = *reinterpret_cast<Ipv4Hdr*>(h);
  EXPECT_EQ(wire(ip.checksum), 0xb861);
  EXPECT_EQ(ipv4_header_checksum(ip), ip.checksum);
  EXPECT_TRUE(ipv4_header_checksum_ok(ip));
  h[19] = 0xc6;
  EXPECT_FALSE(ipv4_header_checksum_ok(ip));
  EXPECT_EQ(wire(ipv4_header_checksum(ip)), 0xb862);  // the data sum went down by 1
}

TEST(Checksum, OptionlessHeaderFastPathAgreesWithTheGeneralSum) {
  // ihl 5 takes the unrolled path; it must verify exactly what the loop verifies,
  // including headers whose words sum to carries near 2^32 (all 0xff).
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    uint8_t h[20];
    for (auto& b : h) b = static_cast<uint8_t>(i < 100 ? 0xff - (rng() % 2) : rng());
    h[0] = 0x45;
    auto& ip = *reinterpret_cast<Ipv4Hdr*>(h);
    const bool general = checksum_fold(checksum_add(h, 20)) == 0;
    ASSERT_EQ(ipv4_header_checksum_ok(ip), general) << i;
    ip.checksum = ipv4_header_checksum(ip);
    ASSERT_TRUE(ipv4_header_checksum_ok(ip)) << i;
  }
}

TEST(Checksum, Ipv4HeaderWithOptionsCoversIhlBytes) {
  // IHL 6: one option word (a NOP NOP NOP EOL pad) is covered by the checksum.
  uint8_t h[24] = {0x46, 0x00, 0x00, 0x18, 0x12, 0x34, 0x00, 0x00, 0x40, 0x06, 0x00, 0x00,
                   0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x01, 0x01, 0x01, 0x00};
  auto& ip = *reinterpret_cast<Ipv4Hdr*>(h);
  const uint16_t expected = static_cast<uint16_t>(~ref_sum(h, 24));  // field still zero
  ip.checksum = ipv4_header_checksum(ip);
  EXPECT_EQ(wire(ip.checksum), expected);
  EXPECT_TRUE(ipv4_header_checksum_ok(ip));
  h[22] = 0x00;  // change inside the options only
  EXPECT_FALSE(ipv4_header_checksum_ok(ip));
}

TEST(Checksum, KnownUdpDatagram) {
  // 192.168.0.1:1024 -> 192.168.0.199:53, payload "abcd", UDP length 12. By hand:
  // pseudo-header c0a8+0001+c0a8+00c7+0011+000c, header 0400+0035+000c+0000,
  // payload 6162+6364: total 24b3c, folded 4b3e, checksum ~4b3e = b4c1.
  uint8_t pkt[32] = {0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x00,
                     0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7, 0x04, 0x00,
                     0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 'a',  'b',  'c',  'd'};
  const auto& ip = *reinterpret_cast<const Ipv4Hdr*>(pkt);
  EXPECT_EQ(wire(l4_checksum(ip, pkt + 20, 12)), 0xb4c1);
  // A wrong value already in the field is ignored: the field counts as zero.
  pkt[26] = 0xde;
  pkt[27] = 0xad;
  EXPECT_EQ(wire(l4_checksum(ip, pkt + 20, 12)), 0xb4c1);
}

TEST(Checksum, UdpComputedZeroIsSentAsAllOnes) {
  // Choose the last payload word so that the whole sum is ffff: its checksum is then 0,
  // which RFC 768 sends as ffff (0 would mean "no checksum"). TCP keeps the 0.
  std::mt19937_64 rng(7);
  for (uint8_t proto : {kIpProtoUdp, kIpProtoTcp}) {
    // An even segment whose last word is payload, so that word is one whole 16-bit word.
    TestPacket p;
    do {
      p = random_packet(rng, proto);
    } while (p.l4_len() % 2 != 0 || p.l4_len() < p.l4_hdr_len() + 2);
    uint8_t* last = p.l4() + p.l4_len() - 2;
    last[0] = last[1] = 0;
    uint16_t c = l4_checksum(p.ip(), p.l4(), p.l4_len());  // ~S with that word at 0
    std::memcpy(last, &c, 2);                              // now S + ~S = ffff
    uint16_t expect = proto == kIpProtoUdp ? 0xffff : 0x0000;
    EXPECT_EQ(l4_checksum(p.ip(), p.l4(), p.l4_len()), expect) << int{proto};
    p.set_l4_csum(expect);
    EXPECT_TRUE(p.l4_verifies());
  }
}

TEST(Checksum, AdjustBoundaryValues) {
  // No change leaves a computed checksum as it is, 0000 included; ffff ("-0") never comes
  // out of a full computation and is normalised to 0000.
  for (uint16_t v : {uint16_t{0x0000}, uint16_t{0x1234}, uint16_t{0xffff}}) {
    EXPECT_EQ(checksum_adjust16(0x0000, v, v), 0x0000);
    EXPECT_EQ(checksum_adjust16(0x1234, v, v), 0x1234);
    EXPECT_EQ(checksum_adjust16(0xffff, v, v), 0x0000);
    EXPECT_EQ(checksum_adjust32(0x0000, 0x12345678u * v, 0x12345678u * v), 0x0000);
  }
  // 0000 and ffff are the same number (zero) in one's complement: swapping them is no change.
  EXPECT_EQ(checksum_adjust16(0x1234, 0x0000, 0xffff), 0x1234);
  EXPECT_EQ(checksum_adjust16(0x1234, 0xffff, 0x0000), 0x1234);
  EXPECT_EQ(checksum_adjust32(0xabcd, 0xffffffffu, 0x00000000u), 0xabcd);
  // Wrap-around: the data sum going up by one takes the checksum down by one, past 0000 to
  // fffe (skipping -0), and back.
  EXPECT_EQ(checksum_adjust16(0x0001, 0x0000, 0x0001), 0x0000);
  EXPECT_EQ(checksum_adjust16(0x0000, 0x0000, 0x0001), 0xfffe);
  EXPECT_EQ(checksum_adjust16(0xfffe, 0x0001, 0x0000), 0x0000);
  EXPECT_EQ(checksum_adjust16(0x0000, 0xffff, 0x0000), 0x0000);
  EXPECT_EQ(checksum_adjust16(0x0000, 0x0000, 0xffff), 0x0000);
  EXPECT_EQ(checksum_adjust16(0xfffe, 0x0000, 0xfffe), 0x0000);
  EXPECT_EQ(checksum_adjust32(0x0000, 0x00000000u, 0xffffffffu), 0x0000);
  EXPECT_EQ(checksum_adjust32(0x0000, 0x00000000u, 0x00010001u), 0xfffd);
}

TEST(Checksum, AdjustEqualsFullRecomputeOfRandomData) {
  std::mt19937_64 rng(2);
  std::vector<uint8_t> buf(64);
  for (int iter = 0; iter < 100000; ++iter) {
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    // All ones sums to -0 (ffff). All zeros is left out: it alone sums to +0, a form that no
    // header with a version nibble can have, and the one case where eqn. 3 gives 0000 for a
    // full-recompute ffff.
    if (iter % 16 == 0) std::fill(buf.begin(), buf.end(), 0xff);
    uint16_t c = checksum_fold(checksum_add(buf.data(), buf.size()));
    size_t off = 2 * (rng() % 31);  // even offset; a 32-bit field fits from any of them
    if (rng() & 1) {
      uint16_t old_v, new_v = static_cast<uint16_t>(rng() % 3 == 0 ? 0 : rng());
      std::memcpy(&old_v, &buf[off], 2);
      std::memcpy(&buf[off], &new_v, 2);
      c = checksum_adjust16(c, old_v, new_v);
    } else {
      uint32_t old_v, new_v = static_cast<uint32_t>(rng() % 3 == 0 ? ~0ull : rng());
      std::memcpy(&old_v, &buf[off], 4);
      std::memcpy(&buf[off], &new_v, 4);
      c = checksum_adjust32(c, old_v, new_v);
    }
    ASSERT_EQ(c, checksum_fold(checksum_add(buf.data(), buf.size()))) << iter;
  }
}

TEST(Checksum, RandomPacketsIncrementalEqualsFullRecompute) {
  std::mt19937_64 rng(3);
  constexpr int kPackets = 100000;
  int udp_none = 0;
  for (int n = 0; n < kPackets; ++n) {
    uint8_t proto = rng() & 1 ? kIpProtoTcp : kIpProtoUdp;
    TestPacket p = random_packet(rng, proto);
    // One UDP datagram in eight carries no checksum (RFC 768) and must keep none.
    bool no_csum = proto == kIpProtoUdp && rng() % 8 == 0;
    if (no_csum) {
      p.set_l4_csum(0);
      ++udp_none;
    }
    ASSERT_TRUE(p.ip_verifies()) << n;
    ASSERT_TRUE(no_csum || p.l4_verifies()) << n;

    // A few rewrites in a row, as a packet may get (DNAT, TTL) and as errors would compound.
    for (int step = 0; step < 3; ++step) {
      // Random values, with the all-zero and all-ones words that stress -0 handling.
      uint32_t new_ip = static_cast<uint32_t>(rng());
      uint16_t new_port = static_cast<uint16_t>(rng());
      switch (rng() % 4) {
        case 0:
          new_ip = 0;
          break;
        case 1:
          new_port = 0xffff;
          new_ip = 0xffffffffu;
          break;
        default:
          break;
      }
      switch (rng() % 3) {
        case 0:
          rewrite_dst(p.ip(), p.l4(), proto, new_ip, new_port);
          ASSERT_EQ(p.ip().dst, new_ip);
          ASSERT_EQ(proto == kIpProtoTcp ? p.tcp().dst_port : p.udp().dst_port, new_port);
          break;
        case 1:
          rewrite_src(p.ip(), p.l4(), proto, new_ip, new_port);
          ASSERT_EQ(p.ip().src, new_ip);
          ASSERT_EQ(proto == kIpProtoTcp ? p.tcp().src_port : p.udp().src_port, new_port);
          break;
        default:
          if (p.ip().ttl > 1) decrement_ttl(p.ip());
          break;
      }
      ASSERT_EQ(p.ip().checksum, ipv4_header_checksum(p.ip())) << n;
      ASSERT_TRUE(ipv4_header_checksum_ok(p.ip())) << n;
      ASSERT_TRUE(p.ip_verifies()) << n;
      if (no_csum) {
        ASSERT_EQ(p.l4_csum(), 0) << n;
      } else {
        ASSERT_EQ(p.l4_csum(), l4_checksum(p.ip(), p.l4(), p.l4_len())) << n;
        ASSERT_TRUE(p.l4_verifies()) << n;
      }
    }
  }
  EXPECT_GT(udp_none, kPackets / 32);
}

TEST(Checksum, UdpZeroChecksumStaysZero) {
  std::mt19937_64 rng(4);
  TestPacket p = random_packet(rng, kIpProtoUdp);
  p.udp().checksum = 0;
  rewrite_dst(p.ip(), p.l4(), kIpProtoUdp, hton32(0x0a04010c), hton16(8080));
  EXPECT_EQ(p.udp().checksum, 0);
  rewrite_src(p.ip(), p.l4(), kIpProtoUdp, hton32(0xac100c64), hton16(80));
  EXPECT_EQ(p.udp().checksum, 0);
  EXPECT_TRUE(p.ip_verifies());
}

TEST(Checksum, UdpAdjustedToZeroIsStoredAsAllOnes) {
  // Pick the new destination port so that the rewritten datagram sums to ffff: its checksum
  // is then 0, which RFC 768 stores as ffff. With the port at 0 the checksum is ~S0, and
  // S0 + ~S0 = ffff, so ~S0 is that port (as stored).
  std::mt19937_64 rng(5);
  for (int n = 0; n < 1000; ++n) {
    TestPacket p = random_packet(rng, kIpProtoUdp);
    uint32_t new_ip = static_cast<uint32_t>(rng());
    TestPacket probe = p;
    probe.ip().dst = new_ip;
    probe.udp().dst_port = 0;
    uint16_t new_port = l4_checksum(probe.ip(), probe.l4(), probe.l4_len());

    // The plain RFC 1624 result would be 0000 here.
    uint16_t raw = checksum_adjust16(checksum_adjust32(p.udp().checksum, p.ip().dst, new_ip),
                                     p.udp().dst_port, new_port);
    ASSERT_EQ(raw, 0x0000) << n;

    rewrite_dst(p.ip(), p.l4(), kIpProtoUdp, new_ip, new_port);
    ASSERT_EQ(p.udp().checksum, 0xffff) << n;
    ASSERT_EQ(l4_checksum(p.ip(), p.l4(), p.l4_len()), 0xffff) << n;
    ASSERT_TRUE(p.l4_verifies()) << n;
  }
}

// What a NIC does with TX L4 offload: sum the segment starting from the pseudo-header sum
// left in the checksum field, then complement. It must equal the full software checksum.
TEST(Checksum, PseudoHeaderSumCompletesToTheFullChecksum) {
  std::mt19937 rng(7);
  for (int n = 0; n < 2000; ++n) {
    const bool tcp = n % 2 == 1;
    const size_t l4_len = (tcp ? sizeof(TcpHdr) : sizeof(UdpHdr)) + rng() % 200;
    std::vector<uint8_t> buf(sizeof(Ipv4Hdr) + l4_len);
    for (size_t i = sizeof(Ipv4Hdr); i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(rng());
    auto* ip = reinterpret_cast<Ipv4Hdr*>(buf.data());
    ip->version_ihl = 0x45;
    ip->total_length = hton16(static_cast<uint16_t>(buf.size()));
    ip->protocol = tcp ? kIpProtoTcp : kIpProtoUdp;
    ip->src = static_cast<uint32_t>(rng());
    ip->dst = static_cast<uint32_t>(rng());
    uint8_t* l4 = buf.data() + sizeof(Ipv4Hdr);
    auto* field = reinterpret_cast<uint16_t*>(
        l4 + (tcp ? offsetof(TcpHdr, checksum) : offsetof(UdpHdr, checksum)));
    if (!tcp) reinterpret_cast<UdpHdr*>(l4)->length = hton16(static_cast<uint16_t>(l4_len));
    *field = 0;
    const uint16_t full = l4_checksum(*ip, l4, l4_len);
    *field = ipv4_pseudo_header_sum(*ip);
    uint16_t nic = checksum_fold(checksum_add(l4, l4_len));
    if (!tcp && nic == 0) nic = 0xffff;  // RFC 768: a computed zero is sent as all ones
    EXPECT_EQ(nic, full) << "case " << n;
  }
}

}  // namespace
}  // namespace l4lb
