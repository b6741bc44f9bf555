// The worker's answers to hostile and unusual input: the ICMP errors it sends (time
// exceeded, fragmentation needed), the ICMP errors about flows it translates, and IPv4
// fragments, which follow their first fragment's decision. Decisions come from lb/
// (frag_table, flow_table), rewrites from nat/ (icmp_error); this file only wires them.
#include <rte_mbuf.h>

#include "nat/icmp_error.h"
#include "src/worker.h"

namespace l4lb {

void Worker::send_icmp_error(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p, uint8_t type,
                             uint8_t code, uint16_t mtu) noexcept {
  // Never about a non-first fragment (RFC 1812 4.3.2.7): it quotes no L4 header.
  if (p.frag == FragKind::kLater) {
    rte_pktmbuf_free(m);
    return;
  }
  if (settings_.icmp_errors_per_s == 0 || !icmp_errors_.take(now_tsc_)) {
    counters_.icmp_errors_rate_limited++;
    rte_pktmbuf_free(m);
    return;
  }
  const uint32_t ip_off = p.l2_len;
  const uint32_t have = rte_pktmbuf_data_len(m) - ip_off;
  const size_t need = icmp_error_size(*p.ip, p.l4_len);
  if (need > have && rte_pktmbuf_append(m, static_cast<uint16_t>(need - have)) == nullptr) {
    rte_pktmbuf_free(m);
    return;
  }
  // From the address of the port it arrived on (RFC 1812 4.3.2.4), back to the previous hop.
  const uint32_t total = make_icmp_error(*p.ip, p.l4_len, type, code, mtu, ports_[in_port].addr_be);
  const uint32_t now_have = rte_pktmbuf_data_len(m) - ip_off;
  if (now_have > total) rte_pktmbuf_trim(m, static_cast<uint16_t>(now_have - total));
  p.eth->dst = p.eth->src;
  p.eth->src = ports_[in_port].mac;
  counters_.icmp_errors_sent++;
  tx(in_port, m);
}

// The error's key is its quote reversed: the forward key when it travels towards a backend
// (a router beyond the client quotes a reply from VIP:port), the reverse key when it travels
// towards a client (a pod quotes the client's DNATed packet).
void Worker::handle_icmp_error(rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                               const Snapshot& snap) noexcept {
  if (p.ip->ttl <= 1) {
    drop(m, DropReason::kTtlExceeded);  // no error about an error (RFC 1122 3.2.2)
    return;
  }
  if (owns_address(p.ip->src) || snap.services.is_vip(p.ip->src)) {
    drop(m, DropReason::kIpv4BadSrc);  // martian (RFC 1812 5.3.7), as for TCP/UDP
    return;
  }
  auto* icmp = static_cast<uint8_t*>(p.l4);
  if (!icmp_checksum_ok(icmp, p.l4_len)) {
    drop(m, DropReason::kIcmpBadChecksum);
    return;
  }
  const FlowKey& k = p.key;
  bool to_backend;
  uint32_t ip_be;
  uint16_t port_be;
  FlowHit hit = flows_.lookup(k, hash, now_s_);
  if (hit.entry != nullptr) {
    to_backend = hit.dir == FlowDir::kForward;
    ip_be = to_backend ? hit.entry->nat.backend_ip : hit.entry->nat.vip;
    port_be = to_backend ? hit.entry->nat.backend_port : hit.entry->nat.vip_port;
  } else if (const ServicePort* sp = snap.services.find(k.dst_ip, k.proto, k.dst_port)) {
    // No entry: the backend Maglev names for the flow, as for any of its packets, for a
    // client the Service accepts.
    if (!sp->allows(k.src_ip)) {
      drop(m, DropReason::kAclDenied);
      return;
    }
    const int b = sp->pick(hash_flow(k), k.src_ip);  // not `hash`: see handle_service
    if (b < 0) {
      drop(m, DropReason::kNoBackend);
      return;
    }
    to_backend = true;
    ip_be = sp->backend_ips_be[b];
    port_be = sp->target_port_be;
  } else {
    const uint32_t i = snap.services.find_endpoint(k.src_ip, k.proto, k.src_port);
    if (i == ServiceTable::kNotFound || i == ServiceTable::kAmbiguous) {
      drop(m, snap.services.is_vip(p.ip->dst) ? DropReason::kIcmpUnsupported : DropReason::kNoFlow);
      return;
    }
    to_backend = false;
    ip_be = snap.services.ports()[i].vip_be;
    port_be = snap.services.ports()[i].port_be;
  }
  if (to_backend) {
    translate_icmp_quote(icmp, p.l4_len, p.quote, QuotedEnd::kQuotedSrc, ip_be, port_be);
    counters_.icmp_errors_translated++;
    nat_and_send<false>(m, p, NatSide::kDestination, ip_be, 0, snap);
    return;
  }
  // The backend's own error leaves from the VIP; a router's between l4lb and the backend
  // keeps the router's address.
  const uint32_t backend = k.src_ip;
  translate_icmp_quote(icmp, p.l4_len, p.quote, QuotedEnd::kQuotedDst, ip_be, port_be);
  counters_.icmp_errors_translated++;
  nat_and_send<false>(m, p, NatSide::kSource, p.ip->src == backend ? ip_be : p.ip->src, 0, snap);
}

uint16_t Worker::frag_owner(const ParsedPacket& p) const noexcept {
  const uint64_t h =
      mix64((uint64_t{p.ip->src} << 32 | p.ip->dst) ^ (uint64_t{p.ip->id} << 8 | p.proto));
  return static_cast<uint16_t>(((h & 0xffffffff) * settings_.workers) >> 32);
}

namespace {
FragKey frag_key(const ParsedPacket& p) { return FragKey{p.ip->src, p.ip->dst, p.ip->id, p.proto}; }
}  // namespace

void Worker::handle_later_fragment(rte_mbuf* m, const ParsedPacket& p,
                                   const Snapshot& snap) noexcept {
  FragDecision d;
  const FragTable::Verdict v = frags_.later(frag_key(p), now_s_, m, &d);
  for (uint32_t i = 0; i < frags_.reclaimed_count; ++i) {
    drop(static_cast<rte_mbuf*>(frags_.reclaimed[i]), DropReason::kFragTimeout);
  }
  switch (v) {
    case FragTable::Verdict::kForward:
      counters_.frag_forwarded++;
      nat_and_send<false>(m, p, d.rewrite_dst ? NatSide::kDestination : NatSide::kSource, d.ip, 0,
                          snap);
      break;
    case FragTable::Verdict::kHeld:
      counters_.frag_held++;
      break;
    case FragTable::Verdict::kTableFull:
      drop(m, DropReason::kFragTableFull);
      break;
    case FragTable::Verdict::kHoldFull:
      drop(m, DropReason::kFragHoldFull);
      break;
  }
}

void Worker::first_fragment_sent(const ParsedPacket& p, NatSide side, uint32_t ip_be) noexcept {
  const FragDecision d{side == NatSide::kDestination, ip_be};
  void* released[FragTable::kHoldPerEntry];
  const int n = frags_.first(frag_key(p), d, now_s_, released);
  for (uint32_t i = 0; i < frags_.reclaimed_count; ++i) {
    drop(static_cast<rte_mbuf*>(frags_.reclaimed[i]), DropReason::kFragTimeout);
  }
  if (n < 0) {
    counters_.frag_untracked++;
    return;
  }
  counters_.frag_first++;
  // Sent once the first fragment is on its way (handle_ipv4 calls send_released_fragments).
  for (int i = 0; i < n; ++i)
    frag_released_[frag_released_count_++] = static_cast<rte_mbuf*>(released[i]);
  frag_released_decision_ = d;
}

void Worker::send_released_fragments(const Snapshot& snap) noexcept {
  const uint32_t n = frag_released_count_;
  frag_released_count_ = 0;
  const FragDecision d = frag_released_decision_;
  for (uint32_t i = 0; i < n; ++i) {
    rte_mbuf* m = frag_released_[i];
    // Parsed when it arrived; parsed again now that its turn came (rare: out-of-order only).
    const ParsedPacket p = parse_frame(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), {});
    if (p.kind != PacketKind::kIpv4 || p.frag != FragKind::kLater) {
      drop(m, DropReason::kFragTimeout);  // cannot happen: it parsed the same way before
      continue;
    }
    counters_.frag_forwarded++;
    nat_and_send<false>(m, p, d.rewrite_dst ? NatSide::kDestination : NatSide::kSource, d.ip, 0,
                        snap);
  }
}

}  // namespace l4lb
