#include "nat/icmp_error.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "nat/checksum.h"
#include "nat/rewrite.h"

namespace l4lb {
namespace {

constexpr uint32_t kClient = hton32(0xcb007107);  // 203.0.113.7
constexpr uint32_t kVip = hton32(0xac100c64);     // 172.16.12.100
constexpr uint32_t kPod = hton32(0x0a04010c);     // 10.4.1.12
constexpr uint32_t kRouter = hton32(0x0a000001);  // 10.0.0.1

// An IPv4 datagram with checksums as its sender computes them, in room for an ICMP error.
std::vector<uint8_t> datagram(uint8_t proto, uint32_t src, uint16_t sport, uint32_t dst,
                              uint16_t dport, size_t payload = 21) {
  const size_t l4 = (proto == kIpProtoTcp ? sizeof(TcpHdr) : sizeof(UdpHdr)) + payload;
  std::vector<uint8_t> b(sizeof(Ipv4Hdr) + l4 + 64, 0);
  auto& ip = *reinterpret_cast<Ipv4Hdr*>(b.data());
  ip.version_ihl = 0x45;
  ip.total_length = hton16(static_cast<uint16_t>(sizeof(Ipv4Hdr) + l4));
  ip.id = hton16(0x4242);
  ip.frag_off = hton16(kIpv4FlagDf);
  ip.ttl = 63;
  ip.protocol = proto;
  ip.src = src;
  ip.dst = dst;
  ip.checksum = ipv4_header_checksum(ip);
  uint8_t* p = b.data() + sizeof(Ipv4Hdr);
  for (size_t i = 0; i < payload; ++i) p[l4 - payload + i] = static_cast<uint8_t>(i * 7 + 1);
  if (proto == kIpProtoTcp) {
    auto& t = *reinterpret_cast<TcpHdr*>(p);
    t.src_port = hton16(sport);
    t.dst_port = hton16(dport);
    t.seq = hton32(1000);
    t.data_off = 5 << 4;
    t.flags = kTcpAck;
    t.checksum = l4_checksum(ip, p, static_cast<uint16_t>(l4));
  } else {
    auto& u = *reinterpret_cast<UdpHdr*>(p);
    u.src_port = hton16(sport);
    u.dst_port = hton16(dport);
    u.length = hton16(static_cast<uint16_t>(l4));
    u.checksum = l4_checksum(ip, p, static_cast<uint16_t>(l4));
  }
  return b;
}

Ipv4Hdr& ip_of(std::vector<uint8_t>& b) { return *reinterpret_cast<Ipv4Hdr*>(b.data()); }
uint16_t l4_len_of(std::vector<uint8_t>& b) {
  return static_cast<uint16_t>(ntoh16(ip_of(b).total_length) - ip_of(b).ihl_bytes());
}
uint8_t* icmp_of(std::vector<uint8_t>& b) { return b.data() + sizeof(Ipv4Hdr); }

TEST(IcmpError, TimeExceededQuotesHeaderAndEightBytes) {
  auto b = datagram(kIpProtoUdp, kClient, 40000, kVip, 53);
  const std::vector<uint8_t> orig(b.begin(), b.begin() + 28);
  const size_t need = icmp_error_size(ip_of(b), l4_len_of(b));
  EXPECT_EQ(need, 20u + 8 + 20 + 8);
  const uint16_t total =
      make_icmp_error(ip_of(b), l4_len_of(b), kIcmpTimeExceeded, kIcmpCodeTtlExceeded, 0, kRouter);
  EXPECT_EQ(total, need);
  const Ipv4Hdr& ip = ip_of(b);
  EXPECT_TRUE(ipv4_header_checksum_ok(ip));
  EXPECT_EQ(ip.src, kRouter);
  EXPECT_EQ(ip.dst, kClient);
  EXPECT_EQ(ip.protocol, kIpProtoIcmp);
  EXPECT_EQ(ntoh16(ip.total_length), total);
  EXPECT_TRUE(icmp_checksum_ok(icmp_of(b), static_cast<uint16_t>(total - 20)));
  EXPECT_EQ(icmp_of(b)[0], kIcmpTimeExceeded);
  EXPECT_EQ(icmp_of(b)[1], 0);
  EXPECT_EQ(0, std::memcmp(icmp_of(b) + 8, orig.data(), orig.size()));
}

TEST(IcmpError, FragNeededCarriesNextHopMtu) {
  auto b = datagram(kIpProtoTcp, kClient, 40000, kVip, 80, 1500);
  const uint16_t total = make_icmp_error(ip_of(b), l4_len_of(b), kIcmpDestUnreachable,
                                         kIcmpCodeFragNeeded, 1500, kRouter);
  EXPECT_EQ(total, 56);
  const uint8_t* icmp = icmp_of(b);
  EXPECT_EQ(icmp[0], 3);
  EXPECT_EQ(icmp[1], 4);
  EXPECT_EQ(icmp[4], 0);  // unused
  EXPECT_EQ(icmp[5], 0);
  EXPECT_EQ(icmp[6] << 8 | icmp[7], 1500);
  EXPECT_TRUE(icmp_checksum_ok(icmp, total - 20));
}

// The full path of a port unreachable from a pod: the client's datagram to VIP:53 is DNATed
// to pod:5353, the pod quotes it, l4lb translates the quote back: the client must see exactly
// the header it sent, with every checksum valid.
TEST(IcmpError, QuoteOfADnatedDatagramIsTranslatedBackExactly) {
  for (uint8_t proto : {kIpProtoUdp, kIpProtoTcp}) {
    for (size_t extra_quote : {size_t{0}, size_t{40}}) {  // 8 bytes, or most of the datagram
      auto b = datagram(proto, kClient, 40000, kVip, 53);
      const std::vector<uint8_t> sent(b.begin(), b.begin() + ntoh16(ip_of(b).total_length));
      rewrite_dst(ip_of(b), b.data() + 20, proto, kPod, hton16(5353));
      decrement_ttl(ip_of(b));
      // The pod's error, built here by hand when it quotes more than 8 bytes.
      const uint16_t l4 = l4_len_of(b);
      std::vector<uint8_t> err(20 + 8 + 20 + l4, 0);
      const size_t quoted = 20 + std::min<size_t>(l4, 8 + extra_quote);
      std::memcpy(err.data() + 28, b.data(), quoted);
      err.resize(28 + quoted);
      auto& oip = ip_of(err);
      oip.version_ihl = 0x45;
      oip.total_length = hton16(static_cast<uint16_t>(err.size()));
      oip.ttl = 64;
      oip.protocol = kIpProtoIcmp;
      oip.src = kPod;
      oip.dst = kClient;
      oip.checksum = ipv4_header_checksum(oip);
      err[20] = kIcmpDestUnreachable;
      err[21] = kIcmpCodePortUnreachable;
      const uint16_t icmp_len = static_cast<uint16_t>(err.size() - 20);
      const uint16_t c = checksum_fold(checksum_add(err.data() + 20, icmp_len));
      std::memcpy(err.data() + 22, &c, 2);
      ASSERT_TRUE(icmp_checksum_ok(err.data() + 20, icmp_len));

      IcmpQuote q;
      ASSERT_TRUE(parse_icmp_quote(err.data() + 20, icmp_len, &q));
      EXPECT_EQ(q.ip->dst, kPod);
      EXPECT_EQ(q.l4_have, quoted - 20);
      translate_icmp_quote(err.data() + 20, icmp_len, q, QuotedEnd::kQuotedDst, kVip, hton16(53));
      EXPECT_TRUE(icmp_checksum_ok(err.data() + 20, icmp_len));
      EXPECT_TRUE(ipv4_header_checksum_ok(*q.ip));
      // The quote is what the client sent, but for TTL (and the header checksum with it),
      // and for TCP's checksum when only 8 bytes were quoted (it was not there).
      std::vector<uint8_t> want(sent.begin(), sent.begin() + static_cast<long>(quoted));
      std::vector<uint8_t> got(err.begin() + 28, err.end());
      EXPECT_EQ(got[8], want[8] - 1);
      got[8] = want[8];
      got[10] = want[10];
      got[11] = want[11];
      EXPECT_EQ(got, want) << int(proto) << " quote " << quoted;
    }
  }
}

// The other direction: a router beyond the client quotes a reply l4lb sent from VIP:80; the
// translated quote names pod:8080, as the pod sent it.
TEST(IcmpError, QuoteOfAReverseNatedReplyGoesBackToThePod) {
  auto b = datagram(kIpProtoTcp, kPod, 8080, kClient, 40000, 100);
  const std::vector<uint8_t> sent(b.begin(), b.begin() + 48);
  rewrite_src(ip_of(b), b.data() + 20, kIpProtoTcp, kVip, hton16(80));
  const uint16_t total = make_icmp_error(ip_of(b), l4_len_of(b), kIcmpDestUnreachable,
                                         kIcmpCodeFragNeeded, 1400, kRouter);
  IcmpQuote q;
  ASSERT_TRUE(parse_icmp_quote(icmp_of(b), total - 20, &q));
  EXPECT_EQ(q.ip->src, kVip);
  translate_icmp_quote(icmp_of(b), total - 20, q, QuotedEnd::kQuotedSrc, kPod, hton16(8080));
  EXPECT_TRUE(icmp_checksum_ok(icmp_of(b), total - 20));
  EXPECT_TRUE(ipv4_header_checksum_ok(*q.ip));
  EXPECT_EQ(0, std::memcmp(q.ip, sent.data(), 28));
}

TEST(IcmpError, UdpQuoteWithoutChecksumKeepsZero) {
  auto b = datagram(kIpProtoUdp, kClient, 40000, kPod, 5353);
  reinterpret_cast<UdpHdr*>(b.data() + 20)->checksum = 0;
  const uint16_t total = make_icmp_error(ip_of(b), l4_len_of(b), kIcmpDestUnreachable,
                                         kIcmpCodePortUnreachable, 0, kPod);
  IcmpQuote q;
  ASSERT_TRUE(parse_icmp_quote(icmp_of(b), total - 20, &q));
  translate_icmp_quote(icmp_of(b), total - 20, q, QuotedEnd::kQuotedDst, kVip, hton16(53));
  EXPECT_EQ(reinterpret_cast<UdpHdr*>(q.l4)->checksum, 0);
  EXPECT_EQ(reinterpret_cast<UdpHdr*>(q.l4)->dst_port, hton16(53));
  EXPECT_TRUE(icmp_checksum_ok(icmp_of(b), total - 20));
}

TEST(IcmpError, QuotesThatCannotBeTranslatedAreRefused) {
  auto good = datagram(kIpProtoUdp, kClient, 40000, kPod, 5353);
  const uint16_t total = make_icmp_error(ip_of(good), l4_len_of(good), kIcmpDestUnreachable,
                                         kIcmpCodePortUnreachable, 0, kPod);
  IcmpQuote q;
  ASSERT_TRUE(parse_icmp_quote(icmp_of(good), total - 20, &q));
  EXPECT_FALSE(parse_icmp_quote(icmp_of(good), total - 21, &q));  // 7 bytes of ports
  EXPECT_FALSE(parse_icmp_quote(icmp_of(good), 8 + 19, &q));      // header cut
  auto mutate = [&](size_t at, uint8_t v) {
    auto b = good;
    b[28 + at] = v;
    return parse_icmp_quote(icmp_of(b), total - 20, &q);
  };
  EXPECT_FALSE(mutate(0, 0x44));  // IHL 4
  EXPECT_FALSE(mutate(0, 0x65));  // version 6
  EXPECT_FALSE(mutate(0, 0x46));  // IHL 6: the ports are past the quote
  EXPECT_FALSE(mutate(9, kIpProtoIcmp));
  EXPECT_FALSE(mutate(7, 0x10));  // fragment offset 16: no ports quoted
  EXPECT_TRUE(mutate(6, 0x20));   // a first fragment (MF) has its ports
}

}  // namespace
}  // namespace l4lb
