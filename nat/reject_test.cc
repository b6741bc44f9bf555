#include "nat/reject.h"

#include <gtest/gtest.h>

#include <vector>

#include "nat/checksum.h"

namespace l4lb {
namespace {

constexpr uint32_t kClient = 0xcb007101, kVip = 0xac100c64;

std::vector<uint8_t> tcp_packet(uint8_t flags, uint32_t seq, uint32_t ack, size_t payload) {
  std::vector<uint8_t> b(20 + 20 + payload + 64, 0);
  auto& ip = *reinterpret_cast<Ipv4Hdr*>(b.data());
  ip.version_ihl = 0x45;
  ip.total_length = hton16(static_cast<uint16_t>(40 + payload));
  ip.ttl = 50;
  ip.protocol = kIpProtoTcp;
  ip.src = hton32(kClient);
  ip.dst = hton32(kVip);
  auto& tcp = *reinterpret_cast<TcpHdr*>(b.data() + 20);
  tcp.src_port = hton16(40000);
  tcp.dst_port = hton16(80);
  tcp.seq = hton32(seq);
  tcp.ack = hton32(ack);
  tcp.data_off = 5 << 4;
  tcp.flags = flags;
  return b;
}

void expect_valid(const Ipv4Hdr& ip, const uint8_t* l4, size_t l4_len) {
  EXPECT_TRUE(ipv4_header_checksum_ok(ip));
  EXPECT_EQ(ip.src, hton32(kVip));
  EXPECT_EQ(ip.dst, hton32(kClient));
  EXPECT_EQ(ip.ttl, 64);
  if (ip.protocol == kIpProtoTcp) {
    Ipv4Hdr copy = ip;
    std::vector<uint8_t> seg(l4, l4 + l4_len);
    auto* t = reinterpret_cast<TcpHdr*>(seg.data());
    const uint16_t sent = t->checksum;
    t->checksum = 0;
    EXPECT_EQ(l4_checksum(copy, seg.data(), l4_len), sent);
  }
}

TEST(Reject, ResetForASynAcknowledgesIt) {
  auto b = tcp_packet(kTcpSyn, 1000, 0, 0);
  auto& ip = *reinterpret_cast<Ipv4Hdr*>(b.data());
  ASSERT_EQ(make_tcp_reset(ip, 20), 40);
  const auto& rst = *reinterpret_cast<TcpHdr*>(b.data() + 20);
  EXPECT_EQ(rst.flags, kTcpRst | kTcpAck);
  EXPECT_EQ(ntoh32(rst.seq), 0u);
  EXPECT_EQ(ntoh32(rst.ack), 1001u);
  EXPECT_EQ(rst.src_port, hton16(80));
  EXPECT_EQ(rst.dst_port, hton16(40000));
  EXPECT_EQ(ntoh16(ip.total_length), 40);
  expect_valid(ip, b.data() + 20, 20);
}

TEST(Reject, ResetForAnAckTakesItsSequenceFromTheAck) {
  auto b = tcp_packet(kTcpAck | kTcpPsh, 5000, 777, 100);
  auto& ip = *reinterpret_cast<Ipv4Hdr*>(b.data());
  ASSERT_EQ(make_tcp_reset(ip, 120), 40);
  const auto& rst = *reinterpret_cast<TcpHdr*>(b.data() + 20);
  EXPECT_EQ(rst.flags, kTcpRst);
  EXPECT_EQ(ntoh32(rst.seq), 777u);
  expect_valid(ip, b.data() + 20, 20);
}

TEST(Reject, ResetCountsPayloadAndFin) {
  auto b = tcp_packet(kTcpFin, 10, 0, 30);
  auto& ip = *reinterpret_cast<Ipv4Hdr*>(b.data());
  make_tcp_reset(ip, 50);
  EXPECT_EQ(ntoh32(reinterpret_cast<TcpHdr*>(b.data() + 20)->ack), 41u);
}

TEST(Reject, PortUnreachableQuotesTheHeaderAndEightBytes) {
  std::vector<uint8_t> b(20 + 8 + 12 + 28, 0);
  auto& ip = *reinterpret_cast<Ipv4Hdr*>(b.data());
  ip.version_ihl = 0x45;
  ip.total_length = hton16(40);
  ip.ttl = 9;
  ip.protocol = kIpProtoUdp;
  ip.src = hton32(kClient);
  ip.dst = hton32(kVip);
  for (size_t i = 20; i < 40; ++i) b[i] = static_cast<uint8_t>(i);
  ip.checksum = ipv4_header_checksum(ip);
  const std::vector<uint8_t> original(b.begin(), b.begin() + 28);
  ASSERT_EQ(icmp_unreachable_size(ip, 20), 56u);
  ASSERT_EQ(make_icmp_port_unreachable(ip, 20), 56);
  expect_valid(ip, nullptr, 0);
  EXPECT_EQ(ip.protocol, kIpProtoIcmp);
  const auto& icmp = *reinterpret_cast<IcmpHdr*>(b.data() + 20);
  EXPECT_EQ(icmp.type, 3);
  EXPECT_EQ(icmp.code, 3);
  EXPECT_EQ(checksum_fold(checksum_add(b.data() + 20, 36)), 0);  // sums to all ones
  EXPECT_TRUE(std::equal(original.begin(), original.end(), b.begin() + 28));
}

}  // namespace
}  // namespace l4lb
