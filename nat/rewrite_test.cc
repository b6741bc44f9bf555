#include "nat/rewrite.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "nat/checksum.h"
#include "nat/headers.h"

namespace l4lb {
namespace {

constexpr uint32_t kClient = 0xcb007107;  // 203.0.113.7
constexpr uint16_t kClientPort = 40000;
constexpr uint32_t kVip = 0xac100c64;  // 172.16.12.100
constexpr uint16_t kVipPort = 80;
constexpr uint32_t kPod = 0x0a04010c;  // 10.4.1.12
constexpr uint16_t kPodPort = 8080;

// Ethernet-sized offset so that the IPv4 header sits where it does in a frame (unaligned).
constexpr size_t kIpOff = 14;

// A minimal IPv4 + TCP/UDP packet with a small payload and checksums as a host would
// compute them. Addresses and ports in host order.
struct Packet {
  std::vector<uint8_t> bytes;

  Packet(uint8_t proto, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
         uint8_t ttl = 64) {
    const char payload[] = "GET / HTTP/1.0\r\n\r";  // 17 bytes: an odd segment length
    size_t l4_hdr = proto == kIpProtoTcp ? sizeof(TcpHdr) : sizeof(UdpHdr);
    size_t l4_len = l4_hdr + sizeof(payload) - 1;
    bytes.assign(kIpOff + sizeof(Ipv4Hdr) + l4_len, 0);
    Ipv4Hdr& h = ip();
    h.version_ihl = 0x45;
    h.total_length = hton16(static_cast<uint16_t>(sizeof(Ipv4Hdr) + l4_len));
    h.id = hton16(0x1c46);
    h.frag_off = hton16(kIpv4FlagDf);
    h.ttl = ttl;
    h.protocol = proto;
    h.src = hton32(src);
    h.dst = hton32(dst);
    std::memcpy(l4() + l4_hdr, payload, sizeof(payload) - 1);
    if (proto == kIpProtoTcp) {
      TcpHdr& t = tcp();
      t.src_port = hton16(sport);
      t.dst_port = hton16(dport);
      t.seq = hton32(0x01020304);
      t.data_off = 5 << 4;
      t.flags = kTcpSyn;
      t.window = hton16(64240);
      t.checksum = l4_checksum(h, l4(), l4_len);
    } else {
      UdpHdr& u = udp();
      u.src_port = hton16(sport);
      u.dst_port = hton16(dport);
      u.length = hton16(static_cast<uint16_t>(l4_len));
      u.checksum = l4_checksum(h, l4(), l4_len);
    }
    h.checksum = ipv4_header_checksum(h);
  }

  Ipv4Hdr& ip() { return *reinterpret_cast<Ipv4Hdr*>(bytes.data() + kIpOff); }
  uint8_t* l4() { return bytes.data() + kIpOff + sizeof(Ipv4Hdr); }
  size_t l4_len() { return bytes.size() - kIpOff - sizeof(Ipv4Hdr); }
  TcpHdr& tcp() { return *reinterpret_cast<TcpHdr*>(l4()); }
  UdpHdr& udp() { return *reinterpret_cast<UdpHdr*>(l4()); }
  uint16_t sport() {
    return ntoh16(ip().protocol == kIpProtoTcp ? tcp().src_port : udp().src_port);
  }
  uint16_t dport() {
    return ntoh16(ip().protocol == kIpProtoTcp ? tcp().dst_port : udp().dst_port);
  }
  uint16_t l4_csum() { return ip().protocol == kIpProtoTcp ? tcp().checksum : udp().checksum; }
};

// Both checksums are what a full recompute gives (and hence verify).
void expect_checksums_valid(Packet& p) {
  EXPECT_TRUE(ipv4_header_checksum_ok(p.ip()));
  EXPECT_EQ(p.ip().checksum, ipv4_header_checksum(p.ip()));
  EXPECT_EQ(p.l4_csum(), l4_checksum(p.ip(), p.l4(), p.l4_len()));
}

class RewriteTest : public ::testing::TestWithParam<uint8_t> {};

TEST_P(RewriteTest, DnatThenReverseNatOfTheReply) {
  const uint8_t proto = GetParam();

  // Client -> VIP:80 becomes client -> pod:8080; the client's source is kept (passthrough).
  Packet fwd(proto, kClient, kClientPort, kVip, kVipPort);
  expect_checksums_valid(fwd);
  rewrite_dst(fwd.ip(), fwd.l4(), proto, hton32(kPod), hton16(kPodPort));
  EXPECT_EQ(ntoh32(fwd.ip().src), kClient);
  EXPECT_EQ(fwd.sport(), kClientPort);
  EXPECT_EQ(ntoh32(fwd.ip().dst), kPod);
  EXPECT_EQ(fwd.dport(), kPodPort);
  expect_checksums_valid(fwd);
  // The packet is the one the client would have sent to the pod directly.
  Packet direct(proto, kClient, kClientPort, kPod, kPodPort);
  EXPECT_EQ(fwd.bytes, direct.bytes);

  // Pod:8080 -> client becomes VIP:80 -> client, which is what the client expects.
  Packet reply(proto, kPod, kPodPort, kClient, kClientPort);
  rewrite_src(reply.ip(), reply.l4(), proto, hton32(kVip), hton16(kVipPort));
  EXPECT_EQ(ntoh32(reply.ip().src), kVip);
  EXPECT_EQ(reply.sport(), kVipPort);
  EXPECT_EQ(ntoh32(reply.ip().dst), kClient);
  EXPECT_EQ(reply.dport(), kClientPort);
  expect_checksums_valid(reply);
  Packet expected(proto, kVip, kVipPort, kClient, kClientPort);
  EXPECT_EQ(reply.bytes, expected.bytes);
}

TEST_P(RewriteTest, RewriteIsUndoneByTheInverseRewrite) {
  const uint8_t proto = GetParam();
  Packet p(proto, kClient, kClientPort, kVip, kVipPort);
  const std::vector<uint8_t> original = p.bytes;
  rewrite_dst(p.ip(), p.l4(), proto, hton32(kPod), hton16(kPodPort));
  rewrite_src(p.ip(), p.l4(), proto, hton32(0x0a000001), hton16(1));
  rewrite_src(p.ip(), p.l4(), proto, hton32(kClient), hton16(kClientPort));
  rewrite_dst(p.ip(), p.l4(), proto, hton32(kVip), hton16(kVipPort));
  EXPECT_EQ(p.bytes, original);
}

TEST_P(RewriteTest, SameAddressAndPortChangesNothing) {
  const uint8_t proto = GetParam();
  Packet p(proto, kClient, kClientPort, kVip, kVipPort);
  const std::vector<uint8_t> original = p.bytes;
  rewrite_dst(p.ip(), p.l4(), proto, hton32(kVip), hton16(kVipPort));
  rewrite_src(p.ip(), p.l4(), proto, hton32(kClient), hton16(kClientPort));
  EXPECT_EQ(p.bytes, original);
}

INSTANTIATE_TEST_SUITE_P(TcpAndUdp, RewriteTest, ::testing::Values(kIpProtoTcp, kIpProtoUdp),
                         [](const auto& info) {
                           return info.param == kIpProtoTcp ? "Tcp" : "Udp";
                         });

TEST(Rewrite, UdpWithoutChecksumKeepsNone) {
  Packet p(kIpProtoUdp, kClient, kClientPort, kVip, kVipPort);
  p.udp().checksum = 0;  // RFC 768: the sender computed none
  rewrite_dst(p.ip(), p.l4(), kIpProtoUdp, hton32(kPod), hton16(kPodPort));
  EXPECT_EQ(p.udp().checksum, 0);
  EXPECT_TRUE(ipv4_header_checksum_ok(p.ip()));
  rewrite_src(p.ip(), p.l4(), kIpProtoUdp, hton32(kVip), hton16(kVipPort));
  EXPECT_EQ(p.udp().checksum, 0);
  EXPECT_TRUE(ipv4_header_checksum_ok(p.ip()));
}

TEST(Rewrite, OtherProtocolsOnlyChangeTheIpHeader) {
  Packet p(kIpProtoUdp, kClient, kClientPort, kVip, kVipPort);
  p.ip().protocol = kIpProtoIcmp;
  p.ip().checksum = ipv4_header_checksum(p.ip());
  const std::vector<uint8_t> l4(p.l4(), p.l4() + p.l4_len());
  rewrite_dst(p.ip(), p.l4(), kIpProtoIcmp, hton32(kPod), hton16(kPodPort));
  EXPECT_EQ(ntoh32(p.ip().dst), kPod);
  EXPECT_TRUE(ipv4_header_checksum_ok(p.ip()));
  EXPECT_EQ(std::vector<uint8_t>(p.l4(), p.l4() + p.l4_len()), l4);
}

TEST(Rewrite, DecrementTtlFrom64) {
  Packet p(kIpProtoTcp, kClient, kClientPort, kVip, kVipPort, 64);
  decrement_ttl(p.ip());
  EXPECT_EQ(p.ip().ttl, 63);
  EXPECT_EQ(p.ip().protocol, kIpProtoTcp);  // the other byte of the word is untouched
  expect_checksums_valid(p);
  EXPECT_EQ(p.bytes, Packet(kIpProtoTcp, kClient, kClientPort, kVip, kVipPort, 63).bytes);
}

TEST(Rewrite, DecrementTtlFrom2) {
  Packet p(kIpProtoUdp, kClient, kClientPort, kVip, kVipPort, 2);
  decrement_ttl(p.ip());
  EXPECT_EQ(p.ip().ttl, 1);
  EXPECT_EQ(p.ip().protocol, kIpProtoUdp);
  expect_checksums_valid(p);
  EXPECT_EQ(p.bytes, Packet(kIpProtoUdp, kClient, kClientPort, kVip, kVipPort, 1).bytes);
}

TEST(Rewrite, DecrementTtlAcrossTheWholeRange) {
  // From 255 down to 1: the header stays valid at every step, through every checksum value
  // the ttl word can push it to.
  Packet p(kIpProtoTcp, kClient, kClientPort, kVip, kVipPort, 255);
  for (int ttl = 255; ttl > 1; --ttl) {
    decrement_ttl(p.ip());
    ASSERT_EQ(p.ip().ttl, ttl - 1);
    ASSERT_EQ(p.ip().checksum, ipv4_header_checksum(p.ip())) << ttl;
  }
}

}  // namespace
}  // namespace l4lb

namespace l4lb {
namespace {

// The fast lane's combined rewrite writes the same bytes as the two-step one, for both ends,
// both protocols, UDP with and without checksum, and many addresses, ports and TTLs.
TEST(Rewrite, ForwardIsRewriteThenDecrementTtl) {
  uint32_t x = 0x2545f491;
  auto next = [&x] {  // xorshift32: varied, reproducible values
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  for (int i = 0; i < 20000; ++i) {
    const uint8_t proto = i % 2 == 0 ? kIpProtoTcp : kIpProtoUdp;
    const bool dst = i % 4 < 2;
    const uint32_t src = next(), dstip = next(), new_ip = next();
    const uint16_t sport = static_cast<uint16_t>(next()), dport = static_cast<uint16_t>(next());
    const uint16_t new_port = static_cast<uint16_t>(next());
    const uint8_t ttl = static_cast<uint8_t>(2 + next() % 254);
    Packet a(proto, src, sport, dstip, dport, ttl);
    if (proto == kIpProtoUdp && i % 8 == 1) {
      a.udp().checksum = 0;  // no checksum: stays none
      a.ip().checksum = ipv4_header_checksum(a.ip());
    }
    Packet b = a;
    if (dst) {
      rewrite_dst(a.ip(), a.l4(), proto, hton32(new_ip), hton16(new_port));
      forward_dst(b.ip(), b.l4(), proto, hton32(new_ip), hton16(new_port));
    } else {
      rewrite_src(a.ip(), a.l4(), proto, hton32(new_ip), hton16(new_port));
      forward_src(b.ip(), b.l4(), proto, hton32(new_ip), hton16(new_port));
    }
    decrement_ttl(a.ip());
    ASSERT_TRUE(ipv4_header_checksum_ok(b.ip())) << i;
    // Identical but for the header checksum field, whose zero may be written either way.
    b.ip().checksum = a.ip().checksum;
    ASSERT_EQ(a.bytes, b.bytes) << i;
  }
}

}  // namespace
}  // namespace l4lb
