// libFuzzer target: arbitrary bytes as one received Ethernet frame, through what a worker
// does with it that needs no DPDK: parse, classify (service table, flow table), NAT rewrite.
// Checks invariants with asserts of its own (abort = finding) on top of ASan/UBSan.
//
// Input layout: the whole input is the frame. When the input is at least 14 + 12 bytes
// long, its last 12 bytes also name the addresses and ports of the second, adversarial
// rewrite {dst ip, dst port, src ip, src port} (network order), so the fuzzer steers them;
// for a valid frame those bytes are Ethernet padding past the IPv4 total length.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "lb/flow_key.h"
#include "lb/flow_table.h"
#include "lb/parse.h"
#include "lb/service_table.h"
#include "nat/checksum.h"
#include "nat/headers.h"
#include "nat/rewrite.h"

using namespace l4lb;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_packet invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond)           \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (0)

constexpr uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d;
}

// The services of pmd-tests/golden_test.py, plus two Services sharing an endpoint
// (find_endpoint -> kAmbiguous). Small Maglev tables: the build is per process, not per input.
const ServiceTable& services() {
  static const ServiceTable table = [] {
    std::vector<ServiceSpec> specs(4);
    specs[0].name = "frontend";
    specs[0].vip = ip4(172, 16, 12, 100);
    specs[0].ports = {
        ServicePortSpec{.name = "http", .proto = kIpProtoTcp, .port = 80, .target_port = 8080}};
    specs[0].source_ranges = {Ipv4Prefix{ip4(203, 0, 113, 0), 24},
                              Ipv4Prefix{ip4(10, 0, 0, 0), 24}};
    specs[0].backends = {BackendSpec{.ip = ip4(10, 4, 1, 11)}, BackendSpec{.ip = ip4(10, 4, 1, 12)},
                         BackendSpec{.ip = ip4(10, 4, 1, 13), .weight = 2}};
    specs[1].name = "dns";
    specs[1].vip = ip4(172, 16, 12, 101);
    specs[1].ports = {
        ServicePortSpec{.name = "dns", .proto = kIpProtoUdp, .port = 53, .target_port = 5353}};
    specs[1].client_ip_affinity = true;
    specs[1].backends = {BackendSpec{.ip = ip4(10, 4, 1, 21)},
                         BackendSpec{.ip = ip4(10, 4, 1, 22)}};
    specs[2].name = "empty";
    specs[2].vip = ip4(172, 16, 12, 102);
    specs[2].ports = {
        ServicePortSpec{.name = "http", .proto = kIpProtoTcp, .port = 80, .target_port = 8080}};
    specs[3].name = "shared";
    specs[3].vip = ip4(172, 16, 12, 103);
    specs[3].ports = {
        ServicePortSpec{.name = "a", .proto = kIpProtoTcp, .port = 80, .target_port = 8080},
        ServicePortSpec{.name = "b", .proto = kIpProtoUdp, .port = 53, .target_port = 5353}};
    specs[3].backends = {BackendSpec{.ip = ip4(10, 4, 1, 11)}, BackendSpec{.ip = ip4(10, 4, 1, 21)},
                         BackendSpec{.ip = ip4(10, 4, 1, 30), .weight = 0}};
    return ServiceTable(specs, 251);
  }();
  return table;
}

uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The L4 checksum as stored, and whether it equals a full recompute (the only state from
// which RFC 1624 eqn. 3 promises a bit-exact result). For UDP a stored 0 means "none".
struct L4Sum {
  uint16_t stored;
  bool valid;
};
L4Sum l4_sum(const Ipv4Hdr& ip, const void* l4, uint16_t l4_len, uint8_t proto) {
  if (proto != kIpProtoTcp && proto != kIpProtoUdp) return {0, false};
  const auto* b = static_cast<const uint8_t*>(l4);
  uint16_t stored = load16(b + (proto == kIpProtoTcp ? 16 : 6));
  if (proto == kIpProtoUdp && stored == 0) return {0, false};
  return {stored, stored == l4_checksum(ip, l4, l4_len)};
}

// After a rewrite: the IPv4 header checksum is exact if it was, the L4 checksum is exact if
// it was, and a UDP "no checksum" stays 0.
void check_sums(const Ipv4Hdr& ip, const void* l4, uint16_t l4_len, uint8_t proto, bool ip_ok,
                const L4Sum& before) {
  if (ip_ok) {
    CHECK(ipv4_header_checksum_ok(ip));
    CHECK(ip.checksum == ipv4_header_checksum(ip));
  }
  L4Sum after = l4_sum(ip, l4, l4_len, proto);
  if (before.valid) CHECK(after.valid);
  if (proto == kIpProtoUdp && before.stored == 0) CHECK(after.stored == 0);
  if (proto == kIpProtoUdp && before.stored != 0) CHECK(after.stored != 0);
}

// Views of a ParsedPacket lie inside [data, data + len) with their fixed parts.
void check_bounds(const ParsedPacket& p, const uint8_t* data, uint32_t len) {
  auto inside = [&](const void* at, size_t n) {
    const auto* a = static_cast<const uint8_t*>(at);
    return a >= data && a + n <= data + len;
  };
  CHECK(p.kind == PacketKind::kDrop || p.kind == PacketKind::kArp || p.kind == PacketKind::kIpv4);
  if (p.kind == PacketKind::kDrop) {
    CHECK(static_cast<size_t>(p.drop) < kDropReasonCount);
    CHECK(!drop_reason_label(p.drop).empty());
    return;
  }
  CHECK(p.eth == reinterpret_cast<const EthHdr*>(data));
  CHECK(p.l2_len == sizeof(EthHdr) || p.l2_len == sizeof(EthHdr) + sizeof(VlanHdr));
  CHECK(!p.eth->src.is_multicast());
  if (p.kind == PacketKind::kArp) {
    CHECK(inside(p.arp, sizeof(ArpHdr)));
    return;
  }
  CHECK(p.ip == reinterpret_cast<const Ipv4Hdr*>(data + p.l2_len));
  const unsigned ihl = p.ip->ihl_bytes();
  CHECK(ihl >= sizeof(Ipv4Hdr));
  CHECK(p.l2_len + uint32_t{ntoh16(p.ip->total_length)} <= len);
  CHECK(p.l4_len == ntoh16(p.ip->total_length) - ihl);
  CHECK(p.proto == p.ip->protocol);
  const uint16_t frag_off = ntoh16(p.ip->frag_off);
  if (p.frag == FragKind::kLater) {
    // A non-first TCP/UDP fragment: no L4 header, no ports.
    CHECK(p.proto == kIpProtoTcp || p.proto == kIpProtoUdp);
    CHECK(p.l4 == nullptr && (frag_off & kIpv4FragOffsetMask) != 0);
    CHECK(!(p.proto == kIpProtoTcp && (frag_off & kIpv4FragOffsetMask) == 1));
    CHECK(p.key == (FlowKey{p.ip->src, p.ip->dst, 0, 0, p.proto}));
    return;
  }
  CHECK(p.l4 == data + p.l2_len + ihl);
  CHECK(inside(p.l4, p.l4_len));
  CHECK((frag_off & kIpv4FragOffsetMask) == 0);
  CHECK((p.frag == FragKind::kFirst) == ((frag_off & kIpv4FlagMf) != 0));
  if (p.proto == kIpProtoTcp) {
    const auto* tcp = static_cast<const TcpHdr*>(p.l4);
    CHECK(tcp->header_bytes() >= sizeof(TcpHdr) && tcp->header_bytes() <= p.l4_len);
    CHECK(p.tcp_flags == tcp->flags);
    CHECK(p.key == (FlowKey{p.ip->src, p.ip->dst, tcp->src_port, tcp->dst_port, kIpProtoTcp}));
  } else if (p.proto == kIpProtoUdp) {
    const auto* udp = static_cast<const UdpHdr*>(p.l4);
    // A first fragment's UDP length covers the whole datagram.
    CHECK(ntoh16(udp->length) >= sizeof(UdpHdr) &&
          (ntoh16(udp->length) <= p.l4_len || p.frag == FragKind::kFirst));
    CHECK(p.key == (FlowKey{p.ip->src, p.ip->dst, udp->src_port, udp->dst_port, kIpProtoUdp}));
  } else {
    CHECK(p.proto == kIpProtoIcmp && p.l4_len >= sizeof(IcmpHdr));
    if (p.icmp_error) {
      // The quoted header and its 8 bytes of ports lie inside the ICMP payload.
      const auto* icmp = static_cast<const uint8_t*>(p.l4);
      const auto* q = reinterpret_cast<const uint8_t*>(p.quote.ip);
      CHECK(q == icmp + sizeof(IcmpHdr) && p.quote.l4 == q + p.quote.ip->ihl_bytes());
      CHECK(p.quote.l4_have >= 8 && p.quote.l4 + p.quote.l4_have == icmp + p.l4_len);
      const auto* ports = reinterpret_cast<const UdpHdr*>(p.quote.l4);
      CHECK(p.key == (FlowKey{p.quote.ip->dst, p.quote.ip->src, ports->dst_port,
                              ports->src_port, p.quote.ip->protocol}));
    }
  }
}

// One rewrite chain on a private, exact-size copy of the frame: DNAT, reverse NAT, TTL.
void rewrite_copy(const uint8_t* data, uint32_t len, const ParsedPacket& orig, uint32_t dst_ip,
                  uint16_t dst_port, uint32_t src_ip, uint16_t src_port, bool realistic) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[len]);
  std::memcpy(copy.get(), data, len);
  ParsedPacket p = parse_frame(copy.get(), len, ParseOptions{.verify_ipv4_checksum = false});
  CHECK(p.kind == PacketKind::kIpv4 && p.proto == orig.proto && p.l4_len == orig.l4_len);
  Ipv4Hdr& ip = *p.ip;
  const bool ip_ok = ipv4_header_checksum_ok(ip);
  L4Sum before = l4_sum(ip, p.l4, p.l4_len, p.proto);

  rewrite_dst(ip, p.l4, p.proto, dst_ip, dst_port);
  CHECK(ip.dst == dst_ip);
  check_sums(ip, p.l4, p.l4_len, p.proto, ip_ok, before);
  rewrite_src(ip, p.l4, p.proto, src_ip, src_port);
  CHECK(ip.src == src_ip);
  check_sums(ip, p.l4, p.l4_len, p.proto, ip_ok, before);
  const uint8_t ttl = ip.ttl;
  if (ttl > 1) {
    decrement_ttl(ip);
    CHECK(ip.ttl == ttl - 1);
    check_sums(ip, p.l4, p.l4_len, p.proto, ip_ok, before);
  }
  const FlowKey k = p.proto == kIpProtoTcp || p.proto == kIpProtoUdp
                        ? FlowKey{src_ip, dst_ip, src_port, dst_port, p.proto}
                        : FlowKey{};
  // Only the rewritten fields (and the two checksums) changed.
  const uint8_t* l4 = static_cast<const uint8_t*>(p.l4);
  if (p.proto == kIpProtoTcp || p.proto == kIpProtoUdp) {
    CHECK(load16(l4) == src_port && load16(l4 + 2) == dst_port);
  }
  const size_t ip_off = p.l2_len;
  const size_t l4_off = ip_off + ip.ihl_bytes();
  const size_t l4_csum = l4_off + (p.proto == kIpProtoTcp ? 16 : 6);
  for (size_t i = 0; i < len; ++i) {
    const bool changed_ok =
        (i >= ip_off + 8 && i < ip_off + 9) ||    // ttl
        (i >= ip_off + 10 && i < ip_off + 20) ||  // checksum, src, dst
        ((p.proto == kIpProtoTcp || p.proto == kIpProtoUdp) &&
         ((i >= l4_off && i < l4_off + 4) || (i >= l4_csum && i < l4_csum + 2)));
    if (!changed_ok) CHECK(copy[i] == data[i]);
  }
  // A DNAT to a real backend (and reverse NAT to a real VIP) leaves a frame that parses the
  // same way, with the new 5-tuple.
  if (realistic) {
    ParsedPacket again = parse_frame(copy.get(), len, ParseOptions{.verify_ipv4_checksum = ip_ok});
    CHECK(again.kind == PacketKind::kIpv4 && again.l4_len == p.l4_len);
    if (p.proto == kIpProtoTcp || p.proto == kIpProtoUdp) CHECK(again.key == k);
  }
}

// The flow table with the packet's key: lookup, insert, update, both directions, full table.
void flows(const ParsedPacket& p, const FlowNat& nat) {
  FlowTable table(16, FlowTimeouts{});  // clamped/rounded as the table likes; tiny on purpose
  constexpr uint32_t kNow = 1000;
  const FlowKey fwd = p.key;
  const uint64_t h = hash_flow_key(fwd, ClientEnd::kSource);  // fwd: this packet's key
  table.prefetch(h);
  table.prefetch_entry(h);
  CHECK(table.lookup(fwd, h, kNow).entry == nullptr);
  FlowEntry* e = table.insert(fwd, h, nat, p.tcp_flags, kNow);
  const FlowKey rev{nat.backend_ip, fwd.src_ip, nat.backend_port, fwd.src_port, fwd.proto};
  if (e != nullptr) {
    CHECK(table.size() == 1);
    FlowHit hit = table.lookup(fwd, h, kNow);
    CHECK(hit.entry == e);
    if (!(rev == fwd)) {
      CHECK(hit.dir == FlowDir::kForward);
      FlowHit back = table.lookup(rev, hash_flow_key(rev, ClientEnd::kDestination), kNow);
      CHECK(back.entry == e && back.dir == FlowDir::kReverse);
      table.update(e, FlowDir::kReverse, static_cast<uint8_t>(p.tcp_flags ^ kTcpAck), kNow + 1);
    }
    table.update(e, FlowDir::kForward, p.tcp_flags, kNow + 1);
    CHECK(!table.expired(*e, kNow + 1));
  }
  // Fill the table with neighbours of this key (source port varied), then expire them all.
  uint32_t inserted = e != nullptr ? 1 : 0;
  for (uint16_t i = 1; i < 48; ++i) {
    FlowKey k = fwd;
    k.src_port = static_cast<uint16_t>(k.src_port + i);
    const uint64_t hk = hash_flow_key(k, ClientEnd::kSource);
    if (table.lookup(k, hk, kNow).entry != nullptr) continue;
    FlowNat n = nat;
    n.backend_port = static_cast<uint16_t>(n.backend_port + i);
    if (table.insert(k, hk, n, p.tcp_flags, kNow) != nullptr) ++inserted;
    // A full table makes room by evicting half-open entries (never established ones).
    CHECK(table.size() + table.evictions() == inserted && table.size() <= table.capacity());
  }
  uint32_t expired = 0;
  for (uint32_t turn = 0; turn < 4 && table.size() > 0; ++turn) {
    expired += table.expire(kNow + 700000, table.capacity());
  }
  CHECK(table.size() == 0 && expired + table.evictions() == inserted);
  CHECK(table.lookup(fwd, h, kNow + 700000).entry == nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size > 16384) return 0;  // past any MTU l4lb accepts (9216) and the mbuf l4lb parses
  const auto len = static_cast<uint32_t>(size);
  // An exact-size heap copy, so ASan reports any read past the frame.
  std::unique_ptr<uint8_t[]> frame(new uint8_t[len]);
  if (len != 0) std::memcpy(frame.get(), input, len);

  for (bool verify : {true, false}) {
    ParsedPacket p = parse_frame(frame.get(), len, ParseOptions{.verify_ipv4_checksum = verify});
    check_bounds(p, frame.get(), len);
    CHECK(len == 0 || std::memcmp(frame.get(), input, len) == 0);  // the parser never writes
    if (verify && p.kind == PacketKind::kIpv4) CHECK(ipv4_header_checksum_ok(*p.ip));
    // The inline fast path and the general parser agree on every frame.
    ParsedPacket full;
    parse_frame_full(frame.get(), len, ParseOptions{.verify_ipv4_checksum = verify}, full);
    CHECK(p.kind == full.kind && p.drop == full.drop && p.proto == full.proto &&
          p.tcp_flags == full.tcp_flags && p.l2_len == full.l2_len && p.l4_len == full.l4_len &&
          p.eth == full.eth && p.arp == full.arp && p.ip == full.ip && p.l4 == full.l4 &&
          p.key == full.key && p.frag == full.frag && p.icmp_error == full.icmp_error &&
          p.quote.ip == full.quote.ip && p.quote.l4 == full.quote.l4 &&
          p.quote.l4_have == full.quote.l4_have);
  }
  ParsedPacket p = parse_frame(frame.get(), len, ParseOptions{});
  if (p.kind != PacketKind::kIpv4) return 0;

  const ServiceTable& st = services();
  // A non-first fragment has no L4 header to rewrite (the worker rewrites its IP only).
  const bool tcp_udp =
      (p.proto == kIpProtoTcp || p.proto == kIpProtoUdp) && p.frag != FragKind::kLater;
  const bool vip = st.is_vip(p.ip->dst);
  if (tcp_udp) {
    const ServicePort* sp = st.find(p.key.dst_ip, p.proto, p.key.dst_port);
    if (sp != nullptr) {
      CHECK(vip && sp->vip_be == p.key.dst_ip && sp->proto == p.proto &&
            sp->port_be == p.key.dst_port);
      const uint64_t h = hash_flow(p.key);
      const bool allowed = sp->allows(p.key.src_ip);
      const int b = sp->pick(h, p.key.src_ip);
      CHECK(b >= -1 && b < static_cast<int>(sp->backend_ips_be.size()));
      if (allowed && b >= 0) {
        const FlowNat nat{sp->vip_be, sp->backend_ips_be[b], sp->port_be, sp->target_port_be, 0};
        // Client -> VIP: DNAT to the backend, src kept (passthrough).
        rewrite_copy(frame.get(), len, p, nat.backend_ip, nat.backend_port, p.key.src_ip,
                     p.key.src_port, true);
        flows(p, nat);
      }
    } else {
      const uint32_t i = st.find_endpoint(p.key.src_ip, p.proto, p.key.src_port);
      if (i != ServiceTable::kNotFound && i != ServiceTable::kAmbiguous) {
        CHECK(i < st.size());
        const ServicePort& rp = st.ports()[i];
        // Backend -> client: reverse NAT, source back to VIP:port.
        rewrite_copy(frame.get(), len, p, p.key.dst_ip, p.key.dst_port, rp.vip_be, rp.port_be,
                     true);
      }
    }
  }
  // Adversarial values from the input's tail (see the top of the file).
  if (size >= sizeof(EthHdr) + 12 && p.frag != FragKind::kLater) {
    const uint8_t* t = input + size - 12;
    rewrite_copy(frame.get(), len, p, load32(t), load16(t + 4), load32(t + 6), load16(t + 10),
                 false);
    if (tcp_udp) {
      flows(p, FlowNat{p.key.dst_ip, load32(t), p.key.dst_port, load16(t + 4), 0});
    }
  }
  return 0;
}
