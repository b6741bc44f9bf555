#include "lb/parse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nat/checksum.h"

namespace l4lb {
namespace {

// Builds Ethernet [+VLAN] / IPv4 / L4 frames; fields can be spoiled after building.
struct Frame {
  std::vector<uint8_t> bytes;
  size_t ip_off = 14;

  static Frame ipv4(uint8_t proto, size_t l4_len, bool vlan = false) {
    Frame f;
    f.ip_off = vlan ? 18 : 14;
    f.bytes.assign(f.ip_off + 20 + l4_len, 0);
    auto* eth = reinterpret_cast<EthHdr*>(f.bytes.data());
    eth->dst = MacAddr{{2, 0, 0, 0, 0, 1}};
    eth->src = MacAddr{{2, 0, 0, 0, 0, 2}};
    if (vlan) {
      eth->ether_type = hton16(kEtherTypeVlan);
      auto* tag = reinterpret_cast<VlanHdr*>(f.bytes.data() + 14);
      tag->tci = hton16(100);
      tag->ether_type = hton16(kEtherTypeIpv4);
    } else {
      eth->ether_type = hton16(kEtherTypeIpv4);
    }
    Ipv4Hdr& ip = f.ip();
    ip.version_ihl = 0x45;
    ip.total_length = hton16(static_cast<uint16_t>(20 + l4_len));
    ip.ttl = 64;
    ip.protocol = proto;
    ip.src = hton32(0xcb007101);  // 203.0.113.1
    ip.dst = hton32(0xac100c64);  // 172.16.12.100
    if (proto == kIpProtoTcp && l4_len >= 20) {
      auto* tcp = reinterpret_cast<TcpHdr*>(f.l4());
      tcp->src_port = hton16(40000);
      tcp->dst_port = hton16(80);
      tcp->data_off = 5 << 4;
      tcp->flags = kTcpSyn;
    } else if (proto == kIpProtoUdp && l4_len >= 8) {
      auto* udp = reinterpret_cast<UdpHdr*>(f.l4());
      udp->src_port = hton16(40000);
      udp->dst_port = hton16(53);
      udp->length = hton16(static_cast<uint16_t>(l4_len));
    }
    f.fix_checksum();
    return f;
  }
  Ipv4Hdr& ip() { return *reinterpret_cast<Ipv4Hdr*>(bytes.data() + ip_off); }
  uint8_t* l4() { return bytes.data() + ip_off + 20; }
  void fix_checksum() {
    ip().checksum = 0;
    ip().checksum = ipv4_header_checksum(ip());
  }
  ParsedPacket parse(bool verify = true) {
    return parse_frame(bytes.data(), static_cast<uint32_t>(bytes.size()), ParseOptions{verify});
  }
};

TEST(Parse, TcpFrame) {
  Frame f = Frame::ipv4(kIpProtoTcp, 20);
  ParsedPacket p = f.parse();
  ASSERT_EQ(p.kind, PacketKind::kIpv4);
  EXPECT_EQ(p.proto, kIpProtoTcp);
  EXPECT_EQ(p.l2_len, 14);
  EXPECT_EQ(p.l4_len, 20);
  EXPECT_EQ(p.tcp_flags, kTcpSyn);
  EXPECT_EQ(p.key.src_ip, hton32(0xcb007101));
  EXPECT_EQ(p.key.dst_port, hton16(80));
  EXPECT_EQ(p.key.proto, kIpProtoTcp);
}

TEST(Parse, UdpFrameBehindVlanTag) {
  Frame f = Frame::ipv4(kIpProtoUdp, 12, /*vlan=*/true);
  ParsedPacket p = f.parse();
  ASSERT_EQ(p.kind, PacketKind::kIpv4);
  EXPECT_EQ(p.l2_len, 18);
  EXPECT_EQ(p.key.dst_port, hton16(53));
}

TEST(Parse, EthernetPaddingPastTotalLengthIsFine) {
  Frame f = Frame::ipv4(kIpProtoUdp, 8);
  f.bytes.resize(60, 0);
  EXPECT_EQ(f.parse().kind, PacketKind::kIpv4);
  EXPECT_EQ(f.parse().l4_len, 8);
}

TEST(Parse, ArpFrame) {
  std::vector<uint8_t> b(42, 0);
  auto* eth = reinterpret_cast<EthHdr*>(b.data());
  eth->ether_type = hton16(kEtherTypeArp);
  eth->src = MacAddr{{2, 0, 0, 0, 0, 2}};
  auto* arp = reinterpret_cast<ArpHdr*>(b.data() + 14);
  arp->htype = hton16(1);
  arp->ptype = hton16(kEtherTypeIpv4);
  arp->hlen = 6;
  arp->plen = 4;
  EXPECT_EQ(parse_frame(b.data(), 42, {}).kind, PacketKind::kArp);
  EXPECT_EQ(parse_frame(b.data(), 41, {}).drop, DropReason::kArpMalformed);
  arp->plen = 16;
  EXPECT_EQ(parse_frame(b.data(), 42, {}).drop, DropReason::kArpMalformed);
}

// Every truncation of a valid frame is dropped with a reason, never read past.
TEST(Parse, EveryTruncationIsDropped) {
  for (uint8_t proto : {kIpProtoTcp, kIpProtoUdp, kIpProtoIcmp}) {
    for (bool vlan : {false, true}) {
      Frame f = Frame::ipv4(proto, proto == kIpProtoTcp ? 20 : 8, vlan);
      for (size_t len = 0; len < f.bytes.size(); ++len) {
        // A fresh heap copy of exactly `len` bytes lets ASan catch any over-read.
        std::vector<uint8_t> cut(f.bytes.begin(), f.bytes.begin() + static_cast<long>(len));
        ParsedPacket p = parse_frame(cut.data(), static_cast<uint32_t>(len), {});
        EXPECT_EQ(p.kind, PacketKind::kDrop) << "proto " << int(proto) << " len " << len;
      }
    }
  }
}

struct Spoil {
  const char* name;
  uint8_t proto;
  void (*apply)(Frame&);
  DropReason expect;
};

TEST(Parse, MalformedHeadersDropWithTheirReason) {
  const Spoil cases[] = {
      {"version 6", kIpProtoTcp, [](Frame& f) { f.ip().version_ihl = 0x65; }, DropReason::kIpv4BadVersion},
      {"ihl 4", kIpProtoTcp, [](Frame& f) { f.ip().version_ihl = 0x44; }, DropReason::kIpv4BadIhl},
      {"ihl past frame", kIpProtoTcp, [](Frame& f) { f.ip().version_ihl = 0x4f; }, DropReason::kIpv4BadIhl},
      {"total length past frame", kIpProtoTcp, [](Frame& f) { f.ip().total_length = hton16(1000); f.fix_checksum(); }, DropReason::kIpv4BadTotalLength},
      {"total length under header", kIpProtoTcp, [](Frame& f) { f.ip().total_length = hton16(19); f.fix_checksum(); }, DropReason::kIpv4BadTotalLength},
      {"bad checksum", kIpProtoTcp, [](Frame& f) { f.ip().checksum ^= 1; }, DropReason::kIpv4BadChecksum},
      {"multicast source", kIpProtoTcp, [](Frame& f) { f.ip().src = hton32(0xe0000001); f.fix_checksum(); }, DropReason::kIpv4BadSrc},
      {"loopback source", kIpProtoTcp, [](Frame& f) { f.ip().src = hton32(0x7f000001); f.fix_checksum(); }, DropReason::kIpv4BadSrc},
      {"icmp fragment", kIpProtoIcmp, [](Frame& f) { f.ip().frag_off = hton16(kIpv4FlagMf); f.fix_checksum(); }, DropReason::kIpv4Fragment},
      {"gre later fragment", 47, [](Frame& f) { f.ip().frag_off = hton16(10); f.fix_checksum(); }, DropReason::kIpv4Fragment},
      {"tcp fragment at offset 8", kIpProtoTcp, [](Frame& f) { f.ip().frag_off = hton16(1); f.fix_checksum(); }, DropReason::kFragmentOverlap},
      {"first fragment udp length under header", kIpProtoUdp, [](Frame& f) { f.ip().frag_off = hton16(kIpv4FlagMf); f.fix_checksum(); reinterpret_cast<UdpHdr*>(f.l4())->length = hton16(7); }, DropReason::kUdpBadLength},
      {"first fragment tcp header cut", kIpProtoTcp, [](Frame& f) { f.ip().frag_off = hton16(kIpv4FlagMf); f.ip().total_length = hton16(36); f.fix_checksum(); }, DropReason::kL4Truncated},
      {"tcp offset 4", kIpProtoTcp, [](Frame& f) { reinterpret_cast<TcpHdr*>(f.l4())->data_off = 4 << 4; }, DropReason::kTcpBadDataOffset},
      {"tcp offset past segment", kIpProtoTcp, [](Frame& f) { reinterpret_cast<TcpHdr*>(f.l4())->data_off = 6 << 4; }, DropReason::kTcpBadDataOffset},
      {"udp length past payload", kIpProtoUdp, [](Frame& f) { reinterpret_cast<UdpHdr*>(f.l4())->length = hton16(9); }, DropReason::kUdpBadLength},
      {"udp length under header", kIpProtoUdp, [](Frame& f) { reinterpret_cast<UdpHdr*>(f.l4())->length = hton16(7); }, DropReason::kUdpBadLength},
      {"gre", 47, [](Frame&) {}, DropReason::kUnsupportedProto},
      {"multicast source mac", kIpProtoTcp, [](Frame& f) { f.bytes[6] = 1; }, DropReason::kBadSrcMac},
      {"stacked vlan", kIpProtoTcp, [](Frame& f) { reinterpret_cast<VlanHdr*>(f.bytes.data() + 14)->ether_type = hton16(kEtherTypeVlan); }, DropReason::kVlanStacked},
      {"ipv6", kIpProtoTcp, [](Frame& f) { reinterpret_cast<EthHdr*>(f.bytes.data())->ether_type = hton16(kEtherTypeIpv6); }, DropReason::kIpv6},
      {"lldp", kIpProtoTcp, [](Frame& f) { reinterpret_cast<EthHdr*>(f.bytes.data())->ether_type = hton16(0x88cc); }, DropReason::kUnsupportedEtherType},
  };
  for (const Spoil& c : cases) {
    Frame f = Frame::ipv4(c.proto, c.proto == kIpProtoTcp ? 20 : 8);
    if (std::string_view(c.name) == "stacked vlan") f = Frame::ipv4(c.proto, 20, true);
    c.apply(f);
    ParsedPacket p = f.parse();
    EXPECT_EQ(p.kind, PacketKind::kDrop) << c.name;
    EXPECT_EQ(drop_reason_label(p.drop), drop_reason_label(c.expect)) << c.name;
  }
}

// A first fragment has its ports (its UDP length covers the whole datagram); a later one has
// none: only its addresses and protocol are known.
TEST(Parse, FragmentsOfTcpAndUdpAreParsed) {
  Frame first = Frame::ipv4(kIpProtoUdp, 8);
  first.ip().frag_off = hton16(kIpv4FlagMf);
  reinterpret_cast<UdpHdr*>(first.l4())->length = hton16(4008);
  first.fix_checksum();
  ParsedPacket p = first.parse();
  ASSERT_EQ(p.kind, PacketKind::kIpv4);
  EXPECT_EQ(p.frag, FragKind::kFirst);
  EXPECT_EQ(p.key.dst_port, hton16(53));

  Frame later = Frame::ipv4(kIpProtoUdp, 8);
  later.ip().frag_off = hton16(185);  // offset 1480, last fragment
  later.fix_checksum();
  p = later.parse();
  ASSERT_EQ(p.kind, PacketKind::kIpv4);
  EXPECT_EQ(p.frag, FragKind::kLater);
  EXPECT_EQ(p.l4, nullptr);
  EXPECT_EQ(p.key.src_port, 0);
  EXPECT_EQ(p.key.dst_port, 0);
  EXPECT_EQ(p.key.src_ip, later.ip().src);

  Frame whole = Frame::ipv4(kIpProtoTcp, 20);
  whole.ip().frag_off = hton16(kIpv4FlagDf);
  whole.fix_checksum();
  EXPECT_EQ(whole.parse().frag, FragKind::kNone);
}

// An ICMP error quoting a TCP/UDP packet carries that packet's 5-tuple, reversed.
TEST(Parse, IcmpErrorKeyIsTheQuoteReversed) {
  Frame f = Frame::ipv4(kIpProtoIcmp, 8 + 20 + 8);
  uint8_t* icmp = f.l4();
  icmp[0] = 3;  // port unreachable
  icmp[1] = 3;
  auto* q = reinterpret_cast<Ipv4Hdr*>(icmp + 8);
  q->version_ihl = 0x45;
  q->protocol = kIpProtoUdp;
  q->src = hton32(0x0a000002);
  q->dst = hton32(0x0a04010c);
  auto* u = reinterpret_cast<UdpHdr*>(icmp + 28);
  u->src_port = hton16(40000);
  u->dst_port = hton16(5353);
  ParsedPacket p = f.parse();
  ASSERT_EQ(p.kind, PacketKind::kIpv4);
  ASSERT_TRUE(p.icmp_error);
  EXPECT_EQ(p.key, (FlowKey{q->dst, q->src, u->dst_port, u->src_port, kIpProtoUdp}));
  icmp[0] = 8;  // an echo request quotes nothing
  EXPECT_FALSE(f.parse().icmp_error);
  icmp[0] = 11;
  q->protocol = kIpProtoIcmp;  // a quote of ICMP has no flow
  EXPECT_FALSE(f.parse().icmp_error);
}

TEST(Parse, ChecksumNotVerifiedWhenTheNicDidIt) {
  Frame f = Frame::ipv4(kIpProtoTcp, 20);
  f.ip().checksum ^= 1;
  EXPECT_EQ(f.parse(/*verify=*/false).kind, PacketKind::kIpv4);
}

TEST(Parse, IpOptionsShiftTheL4Header) {
  Frame f = Frame::ipv4(kIpProtoTcp, 24);
  // Turn the first 4 bytes after the header into a NOP option block and move TCP after it.
  std::vector<uint8_t> tcp(f.l4(), f.l4() + 20);
  std::fill(f.l4(), f.l4() + 4, 1);
  std::copy(tcp.begin(), tcp.end(), f.l4() + 4);
  f.ip().version_ihl = 0x46;
  f.fix_checksum();
  ParsedPacket p = f.parse();
  ASSERT_EQ(p.kind, PacketKind::kIpv4);
  EXPECT_EQ(p.l4_len, 20);
  EXPECT_EQ(p.key.dst_port, hton16(80));
}

// Everything a ParsedPacket says, for comparing two parses of one frame.
void expect_same(const ParsedPacket& a, const ParsedPacket& b, const std::string& where) {
  SCOPED_TRACE(where);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.drop, b.drop);
  EXPECT_EQ(a.proto, b.proto);
  EXPECT_EQ(a.tcp_flags, b.tcp_flags);
  EXPECT_EQ(a.l2_len, b.l2_len);
  EXPECT_EQ(a.l4_len, b.l4_len);
  EXPECT_EQ(a.eth, b.eth);
  EXPECT_EQ(a.arp, b.arp);
  EXPECT_EQ(a.ip, b.ip);
  EXPECT_EQ(a.l4, b.l4);
  EXPECT_TRUE(a.key == b.key);
  EXPECT_EQ(a.frag, b.frag);
  EXPECT_EQ(a.icmp_error, b.icmp_error);
  EXPECT_EQ(a.quote.ip, b.quote.ip);
  EXPECT_EQ(a.quote.l4, b.quote.l4);
  EXPECT_EQ(a.quote.l4_have, b.quote.l4_have);
}

// The inline fast path must say exactly what the general parser says, for the frames it
// takes and the ones it hands on: every byte of the headers of valid TCP and UDP frames
// set to values that matter (0, 1, 0x45, 0x50, 0xff, ...), with and without checksum
// verification, and every truncation. The output struct starts dirty each time (the data
// path reuses it).
TEST(Parse, FastPathAgreesWithTheGeneralParser) {
  const uint8_t values[] = {0x00, 0x01, 0x02, 0x05, 0x06, 0x08, 0x11, 0x14, 0x20,
                            0x3f, 0x40, 0x45, 0x46, 0x4f, 0x50, 0x7f, 0x80, 0xe0, 0xff};
  size_t fast_taken = 0;
  for (uint8_t proto : {kIpProtoTcp, kIpProtoUdp}) {
    const Frame base = Frame::ipv4(proto, proto == kIpProtoTcp ? 26 : 14);
    const size_t header_bytes = 14 + 20 + (proto == kIpProtoTcp ? 20 : 8);
    for (size_t at = 0; at <= header_bytes; ++at) {
      for (uint8_t v : values) {
        for (bool fix : {false, true}) {
          for (bool verify : {false, true}) {
            Frame f = base;
            if (at < header_bytes) f.bytes[at] = v;
            // Repair the checksum only over a header the frame holds (a mutated IHL may
            // claim up to 60 bytes).
            if (fix && f.ip_off + f.ip().ihl_bytes() <= f.bytes.size()) f.fix_checksum();
            for (uint32_t len : {static_cast<uint32_t>(f.bytes.size()), static_cast<uint32_t>(at)}) {
              ParsedPacket fast;
              fast.kind = PacketKind::kArp;  // dirty, as a reused slot is
              fast.quote.l4_have = 99;
              fast.tcp_flags = 0xff;
              ParsedPacket full;
              parse_frame_into(f.bytes.data(), len, ParseOptions{verify}, fast);
              parse_frame_full(f.bytes.data(), len, ParseOptions{verify}, full);
              expect_same(fast, full,
                          "proto " + std::to_string(proto) + " byte " + std::to_string(at) +
                              " = " + std::to_string(v) + " len " + std::to_string(len) +
                              (fix ? " checksum fixed" : "") + (verify ? " verified" : ""));
              fast_taken += full.kind == PacketKind::kIpv4;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(fast_taken, 1000u);  // the comparison covered accepted frames, not only drops
}

}  // namespace
}  // namespace l4lb
