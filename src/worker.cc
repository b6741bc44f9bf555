#include "src/worker.h"

#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <thread>

#include "nat/checksum.h"
#include "nat/reject.h"
#include "nat/rewrite.h"

namespace l4lb {

namespace {

// The expiry hand sweeps the flow table once per half of its shortest timeout (so an entry
// is gone at most 1.5 timeouts after its last packet; lookups treat it as gone at once),
// never faster than 4 times a second, at most this many slots a poll.
constexpr uint32_t kExpireMaxPerPoll = 1024;

uint64_t expiry_period_tsc(const FlowTimeouts& t, uint64_t tsc_hz) {
  const uint32_t shortest = std::min({t.tcp_established_s, t.tcp_transitory_s, t.udp_s});
  return std::max(tsc_hz / 4, tsc_hz * shortest / 2);
}
// Fragment table per worker: datagrams in flight at once, fragments held before their first,
// seconds a datagram waits for its next fragment (RFC 791's reassembly timer is 15 s; a
// datagram's fragments arrive within milliseconds unless lost).
constexpr uint32_t kIcmpErrorBurst = 10;

// The port's link as last reported; no syscall for the ports this is asked of (memif).
bool link_up(uint16_t port_id) noexcept {
  rte_eth_link link{};
  return rte_eth_link_get_nowait(port_id, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

}  // namespace

Worker::Worker(const WorkerSettings& settings, const std::vector<PortInfo>& ports,
               const SnapshotPublisher& publisher, const std::atomic<bool>& stop,
               const std::vector<rte_ring*>& handoff)
    : settings_(settings),
      ports_(ports),
      publisher_(publisher),
      stop_(stop),
      flows_(settings.flow_capacity, settings.timeouts),
      expiry_pace_(expiry_period_tsc(settings.timeouts, rte_get_tsc_hz()), kExpireMaxPerPoll),
      frags_(settings.frag_datagrams, settings.frag_held, settings.frag_timeout_s),
      icmp_errors_(settings.icmp_errors_per_s, kIcmpErrorBurst, rte_get_tsc_hz()),
      owner_hash_(settings.workers),
      neighbors_(rte_get_tsc_hz()),
      tsc_hz_(rte_get_tsc_hz()),
      start_tsc_(rte_rdtsc()) {
  const uint16_t n = settings_.workers, me = settings_.queue;
  handoff_out_.assign(n, nullptr);
  handoff_in_.assign(n, nullptr);
  staged_.resize(n);
  for (uint16_t w = 0; n > 1 && w < n; ++w) {
    if (w == me) continue;
    handoff_out_[w] = handoff[me * n + w];
    handoff_in_[w] = handoff[w * n + me];
  }
  for (uint16_t i = 0; i < ports_.size(); ++i) port_index_[ports_[i].port_id] = i;
  for (const PortInfo& p : ports_) awaiting_link_.push_back(p.poll_after_link_up);
  svc_counters_.resize(CounterSlots::kMaxServicePorts);
  backend_counters_.resize(CounterSlots::kMaxBackends);
  flows_.set_remove_hook(
      [](void* ctx, const FlowEntry& e) {
        static_cast<Worker*>(ctx)->backend_counters_[e.nat.service_port_id].ended_flows++;
      },
      this);
  tx_contexts_.reserve(ports_.size());
  for (uint16_t i = 0; i < ports_.size(); ++i) {
    auto* buf = static_cast<rte_eth_dev_tx_buffer*>(rte_zmalloc_socket(
        "l4lb_txbuf", RTE_ETH_TX_BUFFER_SIZE(kBurst), 0, ports_[i].socket));
    if (buf == nullptr) throw std::runtime_error("cannot allocate TX buffer");
    rte_eth_tx_buffer_init(buf, kBurst);
    tx_contexts_.push_back(TxContext{this, i});
    rte_eth_tx_buffer_set_err_callback(buf, &Worker::tx_failed, &tx_contexts_.back());
    tx_buffers_.push_back(buf);
  }
}

Worker::~Worker() {
  for (auto* b : tx_buffers_) rte_free(b);
}

void Worker::tx_failed(rte_mbuf** pkts, uint16_t unsent, void* ctx) {
  auto* c = static_cast<TxContext*>(ctx);
  auto& port = c->worker->counters_.ports[c->port];
  for (uint16_t i = 0; i < unsent; ++i) {
    port.tx_packets--;
    port.tx_bytes -= rte_pktmbuf_pkt_len(pkts[i]);
    c->worker->counters_.drops[static_cast<size_t>(DropReason::kTxFull)]++;
    rte_pktmbuf_free(pkts[i]);
  }
}

int Worker::run() noexcept {
  rte_rcu_qsbr* qsbr = publisher_.qsbr();
  rte_rcu_qsbr_thread_register(qsbr, settings_.rcu_id);
  rte_rcu_qsbr_thread_online(qsbr, settings_.rcu_id);
  uint64_t next_tick = 0;
  const uint64_t tick_interval = tsc_hz_ / 100;
  rte_mbuf* pkts[kBurst];

  while (!stop_.load(std::memory_order_relaxed)) {
    const Snapshot* snap = publisher_.current();
    if (snap->generation != generation_) apply_snapshot(*snap);
    if (const uint64_t cap = capture_tap_->state.load(std::memory_order_acquire);
        cap != capture_state_) [[unlikely]] {
      capture_refresh(cap);
    }
    now_tsc_ = rte_rdtsc();
    now_s_ = static_cast<uint32_t>((now_tsc_ - start_tsc_) / tsc_hz_);
    if constexpr (kStageCycles) {
      stage_poll_ = {};
      stage_last_ = now_tsc_;
    }

    uint32_t received = 0;
    for (uint16_t p = 0; p < ports_.size(); ++p) {
      if (awaiting_link_[p]) [[unlikely]] {
        if (!link_up(ports_[p].port_id)) continue;
        awaiting_link_[p] = 0;
      }
      uint16_t n = rte_eth_rx_burst(ports_[p].port_id, settings_.queue, pkts, kBurst);
      stage_mark(&StageCycles::rx);
      if (n == 0) continue;
      received += n;
      process_burst(p, pkts, n, *snap);
    }
    received += poll_kernel();
    stage_mark(&StageCycles::rest);
    for (rte_ring* ring : handoff_in_) {
      if (ring == nullptr) continue;
      uint16_t n = static_cast<uint16_t>(rte_ring_dequeue_burst(ring, reinterpret_cast<void**>(pkts), kBurst, nullptr));
      stage_mark(&StageCycles::rx);
      if (n == 0) continue;
      received += n;
      counters_.handoff_received += n;
      process_burst(kFromRing, pkts, n, *snap);
    }
    flush_handoffs();
    for (uint16_t p = 0; p < ports_.size(); ++p) {
      rte_eth_tx_buffer_flush(ports_[p].port_id, settings_.queue, tx_buffers_[p]);
    }
    stage_mark(&StageCycles::flush);
    counters_.flows_expired +=
        flows_.expire(now_s_, expiry_pace_.due(now_tsc_, flows_.used_span()));
    counters_.flows_evicted = flows_.evictions();
    frags_.expire(now_s_, 8, [this](void* m) {
      drop(static_cast<rte_mbuf*>(m), DropReason::kFragTimeout);
    });
    stage_mark(&StageCycles::expire);
    // Cycles per packet for benchmarks: the whole iteration, expiry and TX included.
    const uint64_t spent = rte_rdtsc() - now_tsc_;
    if (received != 0) {
      if constexpr (kStageCycles) {
        stage_mark(&StageCycles::rest);
#define L4LB_X(name, help) counters_.stages.name += stage_poll_.name;
        L4LB_STAGES(L4LB_X)
#undef L4LB_X
      }
      counters_.busy_cycles += spent;
      counters_.busy_polls++;
    } else {
      counters_.idle_cycles += spent;
      counters_.empty_polls++;
    }
    if (now_tsc_ >= next_tick) {
      next_tick = now_tsc_ + tick_interval;
      refresh_log_level();
      neighbors_.tick(
          now_tsc_, [this](uint32_t ip_be, uint16_t port) { send_arp_request(port, ip_be); },
          [this](rte_mbuf* m) { drop(m, DropReason::kNeighborTimeout); });
    }
    flow_entries_ = flows_.size();
    if (FlowListJob* job = flow_slot_.load(std::memory_order_acquire)) [[unlikely]] {
      step_flow_list(*job);
    }
    if (TraceJob* job = trace_slot_.load(std::memory_order_acquire)) [[unlikely]] {
      if (trace_slot_.compare_exchange_strong(job, nullptr)) {
        run_trace(*job);
        job->done.store(true, std::memory_order_release);
      }
    }
    rte_rcu_qsbr_quiescent(qsbr, settings_.rcu_id);
  }
  for (uint16_t p = 0; p < ports_.size(); ++p) {
    rte_eth_tx_buffer_flush(ports_[p].port_id, settings_.queue, tx_buffers_[p]);
  }
  rte_rcu_qsbr_thread_offline(qsbr, settings_.rcu_id);
  rte_rcu_qsbr_thread_unregister(qsbr, settings_.rcu_id);
  return 0;
}

void Worker::apply_snapshot(const Snapshot& snap) noexcept {
  generation_ = snap.generation;
  if (++epoch_ == 0) epoch_ = 1;  // 0 marks a flow without a cached decision
  rte_mbuf* released[NeighborTable::kHoldPerEntry];
  for (const auto& n : snap.neighbors) {
    uint32_t count = neighbors_.set_static(n.ip_be, n.mac, released);
    release(count, released, n.mac);
  }
}

void Worker::process_burst(uint16_t in_port, rte_mbuf** pkts, uint16_t n,
                           const Snapshot& snap) noexcept {
  ParsedPacket* const parsed = parsed_;  // reused: a local array would be zeroed per burst
  uint64_t hashes[kBurst];
  uint16_t owners[kBurst];
  const bool from_ring = in_port == kFromRing;
  const uint16_t me = settings_.queue;
  const bool shared = settings_.workers > 1;
  if (capture_on_) [[unlikely]] capture_rx(in_port, pkts, n, snap);
  if (from_ring) {
    // Another core wrote these mbufs and frames last: start every mbuf's miss at once,
    // then every frame's (its address is in the mbuf), instead of one packet ahead.
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(pkts[i]);
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  }
  // Pass 1: parse and hash the whole burst and prefetch the flow-table buckets, so the
  // cache misses of a large table overlap instead of stalling one packet at a time.
  uint64_t rx_bytes = 0;
  for (uint16_t i = 0; i < n; ++i) {
    if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
    rte_mbuf* m = pkts[i];
    rx_bytes += rte_pktmbuf_pkt_len(m);
    ParseOptions opts;
    opts.verify_ipv4_checksum =
        (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) != RTE_MBUF_F_RX_IP_CKSUM_GOOD;
    // Multi-segment frames would need gathering; l4lb configures single-segment RX.
    parse_frame_into(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), opts, parsed[i]);
    owners[i] = me;
    hashes[i] = 0;
    const ParsedPacket& pi = parsed[i];
    if (pi.kind != PacketKind::kIpv4 || (pi.proto == kIpProtoIcmp && !pi.icmp_error)) continue;
    const ClientEnd client = client_end(pi.key, snap);  // one VIP test for both uses
    if (shared && !from_ring) {
      owners[i] = pi.frag == FragKind::kNone ? owner_of(pi, client) : frag_owner(pi);
    }
    if (owners[i] != me || pi.frag == FragKind::kLater) continue;
    hashes[i] = hash_flow_key(pi.key, client);
    flows_.prefetch(hashes[i]);
  }
  if (!from_ring) {  // a handed-off packet was counted by the worker that received it
    counters_.ports[in_port].rx_packets += n;
    counters_.ports[in_port].rx_bytes += rx_bytes;
  }
  stage_mark(&StageCycles::look_ahead);
  // Pass 1b: the buckets have arrived (or are on their way); fetch the entries they name.
  uint32_t certain_miss = 0;  // bit i: no slot has packet i's signature (a new flow)
  for (uint16_t i = 0; i < n; ++i) {
    if (hashes[i] != 0 && !flows_.prefetch_entry(hashes[i])) certain_miss |= 1u << i;
  }
  flows_.clear_recent();  // an insert by an earlier packet of the burst may add a later one's key
  // A new flow's insert writes its reverse key (backend -> client) too: into the same
  // bucket as its forward key (hash_flow_key: both carry the client's end), which pass 1
  // already prefetched.
  stage_mark(&StageCycles::entries);
  // Pass 2: decide and act.
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const ParsedPacket& p = parsed[i];
    if (p.kind == PacketKind::kDrop) {
      drop(m, p.drop);
      continue;
    }
    const uint16_t port_index = from_ring ? port_index_[m->port] : in_port;
    const MacAddr& dst = p.eth->dst;
    if (!(dst == ports_[port_index].mac) && !(p.kind == PacketKind::kArp && dst.is_broadcast())) {
      drop(m, dst.is_multicast() ? DropReason::kMulticast : DropReason::kNotOurMac);
      continue;
    }
    if (owners[i] != me) {
      stage_handoff(owners[i], m);
    } else if (p.kind == PacketKind::kArp) {
      if (from_ring) {
        // Another worker answered it; this copy only teaches our neighbour table.
        learn_arp(port_index, p);
        rte_pktmbuf_free(m);
        continue;
      }
      if (shared) share_arp(m, port_index);
      handle_arp(port_index, m, p, snap);
    } else if (hashes[i] == 0 || !forward_cached(m, p, hashes[i], (certain_miss >> i) & 1)) {
      handle_ipv4<false>(port_index, m, p, hashes[i], snap);
      have_known_hit_ = false;
    }
  }
  stage_mark(&StageCycles::decide);
}

bool Worker::forward_cached(rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                            bool certain_miss) noexcept {
  // Per-packet conditions the full path would treat differently; everything else it checks
  // (martian addresses, Service, ACL, backend still listed, route) depends only on the key
  // and the configuration, which the epoch stands for.
  if (p.frag != FragKind::kNone || p.icmp_error || p.l2_len != sizeof(EthHdr) || p.ip->ttl <= 1) {
    return false;
  }
  const FlowHit hit = certain_miss && !flows_.maybe_inserted(hash)
                          ? FlowHit{}
                          : flows_.lookup(p.key, hash, now_s_);
  known_hit_ = hit;
  known_hash_ = hash;
  have_known_hit_ = true;
  FlowEntry* e = hit.entry;
  if (e == nullptr) return false;
  const auto d = static_cast<unsigned>(hit.dir);
  if (e->route_epoch[d] != epoch_) return false;
  // Only packets that leave the TCP state as it is (update() would just refresh last_seen).
  if (e->state != FlowState::kUdp &&
      (e->state != FlowState::kEstablished || (p.tcp_flags & (kTcpSyn | kTcpFin | kTcpRst)) != 0)) {
    return false;
  }
  const uint16_t out_port = e->route_port[d];
  const PortInfo& out = ports_[out_port];
  if (ntoh16(p.ip->total_length) > out.mtu) return false;
  const uint32_t next = e->route_next_hop[d];
  NeighborTable::Lookup n{neighbors_.resolved_at(e->route_neighbor[d], next, now_tsc_)};
  if (n.mac == nullptr) {
    n = neighbors_.lookup(next, now_tsc_);
    if (n.mac == nullptr) return false;
    e->route_neighbor[d] = n.slot;
  }
  e->last_seen_s = now_s_;
  BackendCounters& bc = backend_counters_[e->nat.service_port_id];
  const bool forward = hit.dir == FlowDir::kForward;
  (forward ? bc.to_packets : bc.from_packets)++;
  (forward ? bc.to_bytes : bc.from_bytes) += rte_pktmbuf_pkt_len(m);
  (forward ? counters_.nat_forward : counters_.nat_reverse)++;
  // DNAT to the backend, or reverse NAT of its reply back to the VIP.
  const uint32_t ip_be = forward ? e->nat.backend_ip : e->nat.vip;
  const uint16_t port_be = forward ? e->nat.backend_port : e->nat.vip_port;
  if (out.tx_csum_offload) [[unlikely]] {
    write_nat(m, p, forward ? NatSide::kDestination : NatSide::kSource, ip_be, port_be, out);
  } else if (forward) {
    forward_dst(*p.ip, p.l4, p.proto, ip_be, port_be);
  } else {
    forward_src(*p.ip, p.l4, p.proto, ip_be, port_be);
  }
  if (n.refresh) send_arp_request(out_port, next);
  send_resolved<false>(out_port, m, *n.mac);
  return true;
}

uint16_t Worker::owner_of(const ParsedPacket& p, ClientEnd client) const noexcept {
  const bool request = client == ClientEnd::kSource;
  const uint32_t client_ip = request ? p.key.src_ip : p.key.dst_ip;
  const uint16_t client_port = request ? p.key.src_port : p.key.dst_port;
  // key, not proto: an ICMP error goes where the flow it quotes lives.
  return owner_hash_.owner(client_ip, client_port);
}

void Worker::stage_handoff(uint16_t to, rte_mbuf* m) noexcept {
  HandoffBuffer& b = staged_[to];
  b.pkts[b.count++] = m;
  if (b.count == kBurst) flush_handoffs();
}

void Worker::flush_handoffs() noexcept {
  for (uint16_t to = 0; to < staged_.size(); ++to) {
    HandoffBuffer& b = staged_[to];
    if (b.count == 0) continue;
    unsigned sent = rte_ring_enqueue_burst(handoff_out_[to], reinterpret_cast<void**>(b.pkts),
                                           b.count, nullptr);
    counters_.handoff_sent += sent;
    for (unsigned i = sent; i < b.count; ++i) drop(b.pkts[i], DropReason::kHandoffFull);
    b.count = 0;
  }
}

void Worker::share_arp(rte_mbuf* m, uint16_t in_port) noexcept {
  // Every worker keeps its own neighbour table, and ARP lands on one queue: give the
  // others a copy to learn from (ARP is rare; the copy costs nothing on the fast path).
  for (uint16_t to = 0; to < staged_.size(); ++to) {
    if (handoff_out_[to] == nullptr) continue;
    rte_mbuf* copy = rte_pktmbuf_copy(m, ports_[in_port].pool, 0, UINT32_MAX);
    if (copy == nullptr) continue;  // pool exhausted: that worker learns on its own ARP
    copy->port = ports_[in_port].port_id;
    stage_handoff(to, copy);
  }
}

bool Worker::owns_address(uint32_t ip_be) const noexcept {
  for (const auto& port : ports_) {
    if (port.addr_be == ip_be) return true;
  }
  return false;
}

void Worker::learn_arp(uint16_t in_port, const ParsedPacket& p, bool create) noexcept {
  const ArpHdr& arp = *p.arp;
  const uint32_t sender = arp.spa;
  // RFC 826: update a known sender; add it only when the packet was for us. Only
  // on-link senders are neighbours.
  if (sender == 0 || !ports_[in_port].in_subnet(sender) || arp.sha.is_multicast()) return;
  rte_mbuf* released[NeighborTable::kHoldPerEntry];
  NeighborTable::Learned l = neighbors_.learn(sender, arp.sha, create, now_tsc_, released);
  counters_.arp_learned += l.updated;
  release(l.released, released, arp.sha);
}

void Worker::handle_arp(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p,
                        const Snapshot& snap) noexcept {
  ArpHdr& arp = *p.arp;
  const PortInfo& port = ports_[in_port];
  const uint32_t target = arp.tpa;
  const uint32_t sender = arp.spa;
  const bool for_us = target == port.addr_be || snap.services.is_vip(target);
  learn_arp(in_port, p, for_us);
  const uint16_t op = ntoh16(arp.oper);
  if (!for_us) {
    drop(m, DropReason::kArpNotForUs);
    return;
  }
  if (op != kArpRequest) {
    // A reply for us: learned above; the kernel twin may be waiting for it too.
    if (port.has_tap && target == port.addr_be) {
      to_kernel(in_port, m);
    } else {
      rte_pktmbuf_free(m);
    }
    return;
  }
  // Answer in place (VIPs and port addresses alike resolve to this port's MAC).
  p.eth->dst = arp.sha;
  p.eth->src = port.mac;
  arp.oper = hton16(kArpReply);
  arp.tha = arp.sha;
  arp.tpa = sender;
  arp.sha = port.mac;
  arp.spa = target;
  counters_.arp_requests_answered++;
  tx(in_port, m);
}

template <bool kTrace>
void Worker::handle_ipv4(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                         const Snapshot& snap) noexcept {
  const uint32_t dst = p.ip->dst;
  if (p.proto == kIpProtoIcmp && ports_[in_port].has_tap && dst == ports_[in_port].addr_be) {
    finish_kernel<kTrace>(in_port, m);  // the host's own ICMP: ping, errors for its probes
    return;
  }
  if (p.proto == kIpProtoIcmp) {
    auto* icmp = static_cast<IcmpHdr*>(p.l4);
    const bool owned = owns_address(dst) || snap.services.is_vip(dst);
    if (p.icmp_error) {
      if constexpr (kTrace) {
        finish_drop<kTrace>(m, DropReason::kIcmpUnsupported);  // the tracer sends none
      } else {
        handle_icmp_error(m, p, hash, snap);
      }
    } else if (owned && icmp->type == kIcmpEchoRequest && icmp->code == 0) {
      if (!settings_.answer_vip_pings && !owns_address(dst)) {
        finish_drop<kTrace>(m, DropReason::kVipPingDisabled);
        return;
      }
      finish_echo<kTrace>(in_port, m, p);
    } else {
      finish_drop<kTrace>(m, owned ? DropReason::kIcmpUnsupported : DropReason::kNoFlow);
    }
    return;
  }
  if (owns_address(p.ip->src) || snap.services.is_vip(p.ip->src)) {
    // Martian: nobody else may use l4lb's own addresses as a source (RFC 1812 5.3.7).
    finish_drop<kTrace>(m, DropReason::kIpv4BadSrc);
    return;
  }
  if (owns_address(dst)) {
    if (ports_[in_port].has_tap && dst == ports_[in_port].addr_be) {
      finish_kernel<kTrace>(in_port, m);
    } else {
      finish_drop<kTrace>(m, DropReason::kHostUnsupported);
    }
    return;
  }
  if (p.ip->ttl <= 1) {
    if constexpr (kTrace) {
      finish_drop<kTrace>(m, DropReason::kTtlExceeded);
    } else {
      // RFC 1812 5.3.1: the router answers with time exceeded (rate limited).
      counters_.drops[static_cast<size_t>(DropReason::kTtlExceeded)]++;
      send_icmp_error(in_port, m, p, kIcmpTimeExceeded, kIcmpCodeTtlExceeded, 0);
    }
    return;
  }
  if (p.frag == FragKind::kLater) {
    if constexpr (kTrace) {
      finish_drop<kTrace>(m, DropReason::kIpv4Fragment);  // the tracer sends none
    } else {
      handle_later_fragment(m, p, snap);
    }
    return;
  }
  if (const ServicePort* sp = snap.services.find(dst, p.proto, p.key.dst_port)) {
    if constexpr (kTrace) trace_->add(TraceStep::kServicePort, static_cast<uint32_t>(sp - snap.services.ports().data()));
    handle_service<kTrace>(in_port, *sp, m, p, hash, snap);
  } else if (snap.services.is_vip(dst)) {
    if constexpr (kTrace) trace_->add(TraceStep::kNoServicePort);
    finish_drop<kTrace>(m, DropReason::kNoServicePort);
  } else {
    handle_reply<kTrace>(m, p, hash, snap);
  }
  if constexpr (!kTrace) {
    if (frag_released_count_ != 0) send_released_fragments(snap);
  }
}

template <bool kTrace>
void Worker::handle_service(uint16_t in_port, const ServicePort& sp, rte_mbuf* m, const ParsedPacket& p,
                            uint64_t hash, const Snapshot& snap) noexcept {
  if constexpr (kTrace) {
    trace_->add(TraceStep::kAcl, sp.allows(p.ip->src),
                sp.acl ? static_cast<uint32_t>(sp.acl->match(p.ip->src)) : ~0u);
  }
  if (!sp.allows(p.ip->src)) {
    if constexpr (!kTrace) svc_counters_[sp.counter_id].acl_denied++;
    finish_drop<kTrace>(m, DropReason::kAclDenied);
    return;
  }
  FlowHit hit = lookup_flow<kTrace>(p.key, hash);
  if (hit.entry != nullptr && is_reopen(*hit.entry, hit.dir, p.tcp_flags)) {
    if constexpr (kTrace) {
      trace_->add(TraceStep::kFlowReopen);
    } else {
      flows_.remove(hit.entry);
      counters_.flows_reopened++;
    }
    hit.entry = nullptr;
  }
  if (hit.entry != nullptr && hit.dir == FlowDir::kForward &&
      !sp.has_backend(hit.entry->nat.backend_ip, hit.entry->nat.backend_port)) {
    // Its backend left the Service (drained backends stay listed with weight 0): the
    // connection is gone anyway; a fresh pick keeps the client's retries working.
    if constexpr (kTrace) {
      trace_->add(TraceStep::kFlowRepick);
    } else {
      flows_.remove(hit.entry);
      counters_.flows_repicked++;
    }
    hit.entry = nullptr;
  }
  FlowNat nat;
  FlowEntry* decided = nullptr;  // where the route chosen below is cached
  if (hit.entry != nullptr && hit.dir == FlowDir::kForward) {
    decided = hit.entry;
    if constexpr (kTrace) {
      trace_->add(TraceStep::kFlowHit, hit.entry->nat.backend_ip, hit.entry->nat.backend_port,
                  static_cast<uint32_t>(hit.entry->state), now_s_ - hit.entry->created_s);
    } else {
      flows_.update(hit.entry, hit.dir, p.tcp_flags, now_s_);
    }
    nat = hit.entry->nat;
  } else {
    // Maglev picks from hash_flow(), the hash every instance computes alike; the flow
    // table's hash (`hash`) is this process's own (lb/flow_key.h).
    const uint64_t pick_hash = hash_flow(p.key);
    int b = sp.pick(pick_hash, p.ip->src);
    if constexpr (kTrace) {
      trace_->add(TraceStep::kFlowMiss);
      const uint64_t h = sp.client_ip_affinity ? hash_client_ip(p.ip->src) : pick_hash;
      if (b >= 0) {
        trace_->add(TraceStep::kMaglev, sp.maglev->size() ? sp.maglev->slot_of(h) : 0,
                    static_cast<uint32_t>(b), sp.backend_ips_be[b]);
      } else {
        trace_->add(TraceStep::kNoBackend);
      }
    }
    if (b < 0) {
      if constexpr (!kTrace) svc_counters_[sp.counter_id].no_backend++;
      if (sp.reject_when_empty) {
        finish_reject<kTrace>(in_port, m, p);
      } else {
        finish_drop<kTrace>(m, DropReason::kNoBackend);
      }
      return;
    }
    // The flow carries its backend's counter slot, valid whatever snapshot comes later.
    nat = FlowNat{sp.vip_be, sp.backend_ips_be[b], sp.port_be, sp.target_port_be,
                  sp.backend_counter_ids[b]};
    if constexpr (!kTrace) {
      FlowEntry* e = flows_.insert(p.key, hash, nat, p.tcp_flags, now_s_);
      if (e == nullptr) {
        // The backend already has a flow with this client IP and port (the client reused
        // the port for another VIP whose Service shares the endpoint): to the backend it
        // is the same 4-tuple, so the new connection supersedes the old one, whose replies
        // would otherwise come back from the wrong VIP.
        const FlowKey reply{nat.backend_ip, p.key.src_ip, nat.backend_port, p.key.src_port,
                            p.proto};
        FlowHit old = flows_.lookup(reply, hash_flow_key(reply, ClientEnd::kDestination), now_s_);
        if (old.entry != nullptr) {
          flows_.remove(old.entry);
          counters_.flows_superseded++;
          e = flows_.insert(p.key, hash, nat, p.tcp_flags, now_s_);
        }
      }
      decided = e;
      if (e != nullptr) {
        counters_.flows_created++;
        backend_counters_[nat.service_port_id].new_flows++;
      } else {
        // Full table: Maglev still names the same backend for every packet of the flow.
        counters_.flow_insert_failed++;
      }
    }
  }
  if constexpr (!kTrace) {
    BackendCounters& bc = backend_counters_[nat.service_port_id];
    bc.to_packets++;
    bc.to_bytes += rte_pktmbuf_pkt_len(m);
    counters_.nat_forward++;
  }
  nat_and_send<kTrace>(m, p, NatSide::kDestination, nat.backend_ip, nat.backend_port, snap,
                       decided);
}

template <bool kTrace>
void Worker::handle_reply(rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                          const Snapshot& snap) noexcept {
  FlowHit hit = lookup_flow<kTrace>(p.key, hash);
  uint32_t vip_be;
  uint16_t vip_port_be;
  if (hit.entry != nullptr && hit.dir == FlowDir::kReverse &&
      snap.services.find(hit.entry->nat.vip, p.proto, hit.entry->nat.vip_port) == nullptr) {
    // The Service port this flow belonged to was removed: its flows end here.
    if constexpr (!kTrace) {
      flows_.remove(hit.entry);
      counters_.flows_orphaned++;
    }
    finish_drop<kTrace>(m, DropReason::kNoFlow);
    return;
  }
  if (hit.entry != nullptr && hit.dir == FlowDir::kReverse) {
    vip_be = hit.entry->nat.vip;
    vip_port_be = hit.entry->nat.vip_port;
    if constexpr (kTrace) {
      trace_->add(TraceStep::kFlowReplyHit, vip_be, vip_port_be,
                  static_cast<uint32_t>(hit.entry->state), now_s_ - hit.entry->created_s);
    } else {
      flows_.update(hit.entry, hit.dir, p.tcp_flags, now_s_);
      BackendCounters& bc = backend_counters_[hit.entry->nat.service_port_id];
      bc.from_packets++;
      bc.from_bytes += rte_pktmbuf_pkt_len(m);
      counters_.nat_reverse++;
    }
  } else {
    if constexpr (kTrace) trace_->add(TraceStep::kFlowMiss);
    if (hit.entry != nullptr) {  // a client packet of a flow whose VIP is gone
      if constexpr (!kTrace) {
        flows_.remove(hit.entry);
        counters_.flows_orphaned++;
      }
    }
    // No flow entry (expired, restarted, or another instance made it): an endpoint of
    // exactly one Service port still says which VIP the reply must come from.
    uint32_t i = snap.services.find_endpoint(p.ip->src, p.proto, p.key.src_port);
    if (i == ServiceTable::kNotFound || i == ServiceTable::kAmbiguous) {
      finish_drop<kTrace>(m, DropReason::kNoFlow);
      return;
    }
    const ServicePort& sp = snap.services.ports()[i];
    vip_be = sp.vip_be;
    vip_port_be = sp.port_be;
    if constexpr (kTrace) {
      trace_->add(TraceStep::kStatelessReply, i);
    } else {
      svc_counters_[sp.counter_id].stateless_reply_packets++;
      svc_counters_[sp.counter_id].stateless_reply_bytes += rte_pktmbuf_pkt_len(m);
      counters_.nat_reverse_stateless++;
    }
  }
  nat_and_send<kTrace>(m, p, NatSide::kSource, vip_be, vip_port_be, snap,
                       hit.entry != nullptr && hit.dir == FlowDir::kReverse ? hit.entry : nullptr,
                       FlowDir::kReverse);
}

void Worker::reject(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p) noexcept {
  if (p.proto == kIpProtoTcp && (p.tcp_flags & kTcpRst)) {
    drop(m, DropReason::kNoBackend);  // a reset is never answered (RFC 793)
    return;
  }
  const uint32_t ip_off = p.l2_len;
  const uint32_t have = rte_pktmbuf_data_len(m) - ip_off;
  uint32_t total;
  if (p.proto == kIpProtoTcp) {
    total = make_tcp_reset(*p.ip, p.l4_len);
  } else {
    const size_t need = icmp_unreachable_size(*p.ip, p.l4_len);
    if (need > have && rte_pktmbuf_append(m, static_cast<uint16_t>(need - have)) == nullptr) {
      drop(m, DropReason::kNoBackend);
      return;
    }
    total = make_icmp_port_unreachable(*p.ip, p.l4_len);
  }
  const uint32_t now_have = rte_pktmbuf_data_len(m) - ip_off;
  if (now_have > total) rte_pktmbuf_trim(m, static_cast<uint16_t>(now_have - total));
  p.eth->dst = p.eth->src;
  p.eth->src = ports_[in_port].mac;
  counters_.rejected++;
  tx(in_port, m);
}

void Worker::answer_echo(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p) noexcept {
  auto* icmp = static_cast<IcmpHdr*>(p.l4);
  Ipv4Hdr& ip = *p.ip;
  const uint32_t requester = ip.src;
  ip.src = ip.dst;
  ip.dst = requester;
  ip.ttl = 64;
  ip.checksum = 0;
  ip.checksum = ipv4_header_checksum(ip);
  uint16_t old_word = hton16(static_cast<uint16_t>(icmp->type << 8 | icmp->code));
  icmp->type = kIcmpEchoReply;
  icmp->checksum = checksum_adjust16(icmp->checksum, old_word, hton16(icmp->code));
  p.eth->dst = p.eth->src;
  p.eth->src = ports_[in_port].mac;
  counters_.icmp_echo_replies++;
  tx(in_port, m);
}

template <bool kTrace>
void Worker::nat_and_send(rte_mbuf* m, const ParsedPacket& p, NatSide side, uint32_t ip_be,
                          uint16_t port_be, const Snapshot& snap, FlowEntry* decided,
                          FlowDir dir) noexcept {
  Ipv4Hdr& ip = *p.ip;
  // Route on the address the packet will carry, so the egress port (and whether it
  // offloads checksums) is known before rewriting.
  const uint32_t dst = side == NatSide::kDestination ? ip_be : ip.dst;
  const NextHop* nh = snap.routes->lookup(dst);
  if (nh == nullptr) {
    if constexpr (kTrace) trace_->add(TraceStep::kNoRoute);
    finish_drop<kTrace>(m, DropReason::kNoRoute);
    return;
  }
  if constexpr (kTrace) trace_->add(TraceStep::kRoute, nh->port, nh->gateway_be, dst);
  const PortInfo& out = ports_[nh->port];
  if (ntoh16(ip.total_length) > out.mtu) {
    // l4lb does not fragment. With DF the sender learns the MTU (RFC 1191); never about an
    // ICMP error (RFC 1122 3.2.2).
    if ((ip.frag_off & hton16(kIpv4FlagDf)) == 0 || p.proto == kIpProtoIcmp) {
      finish_drop<kTrace>(m, DropReason::kMtuExceeded);
    } else if constexpr (kTrace) {
      finish_drop<kTrace>(m, DropReason::kFragNeeded);
    } else {
      counters_.drops[static_cast<size_t>(DropReason::kFragNeeded)]++;
      send_icmp_error(port_index_[m->port], m, p, kIcmpDestUnreachable, kIcmpCodeFragNeeded,
                      out.mtu);
    }
    return;
  }
  if constexpr (!kTrace) {
    if (p.frag == FragKind::kFirst) first_fragment_sent(p, side, ip_be);
  }
  if constexpr (kTrace) {
    trace_->add(TraceStep::kNat, ip_be, port_be, side == NatSide::kDestination);
  }
  write_nat(m, p, side, ip_be, port_be, out);
  if (p.l2_len > sizeof(EthHdr)) {
    // Ports are untagged: drop the 802.1Q tag by sliding the MAC addresses over it.
    uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
    std::memmove(data + sizeof(VlanHdr), data, 2 * sizeof(MacAddr));
    rte_pktmbuf_adj(m, sizeof(VlanHdr));
    rte_pktmbuf_mtod(m, EthHdr*)->ether_type = hton16(kEtherTypeIpv4);
    m->l2_len = sizeof(EthHdr);
  }
  const uint32_t next = nh->gateway_be != 0 ? nh->gateway_be : dst;
  if constexpr (!kTrace) {
    if (decided != nullptr && nh->port <= UINT8_MAX) {
      const auto d = static_cast<unsigned>(dir);
      decided->route_port[d] = static_cast<uint8_t>(nh->port);
      decided->route_next_hop[d] = next;
      decided->route_epoch[d] = epoch_;
    }
  }
  if constexpr (kTrace) {
    const MacAddr* mac = neighbors_.peek(next);
    trace_->add(TraceStep::kNeighbor, next, mac != nullptr);
    if (mac == nullptr) {
      trace_->verdict = TraceVerdict::kHold;
      trace_->out_port = nh->port;
      rte_pktmbuf_free(m);
      return;
    }
    send_resolved<kTrace>(nh->port, m, *mac);
    return;
  }
  NeighborTable::Lookup n = neighbors_.lookup(next, now_tsc_);
  if (n.mac != nullptr) {
    if (n.refresh) send_arp_request(nh->port, next);
    send_resolved<false>(nh->port, m, *n.mac);
    return;
  }
  m->port = nh->port;  // where release() sends it once the next hop answers
  switch (neighbors_.hold(next, nh->port, m, now_tsc_)) {
    case NeighborTable::Hold::kHeldProbe:
      send_arp_request(nh->port, next);
      [[fallthrough]];
    case NeighborTable::Hold::kHeld:
      counters_.neighbor_held++;
      break;
    case NeighborTable::Hold::kHoldFull:
      drop(m, DropReason::kNeighborHoldFull);
      break;
    case NeighborTable::Hold::kTableFull:
      drop(m, DropReason::kNeighborTableFull);
      break;
  }
}

void Worker::write_nat(rte_mbuf* m, const ParsedPacket& p, NatSide side, uint32_t ip_be,
                       uint16_t port_be, const PortInfo& out) noexcept {
  Ipv4Hdr& ip = *p.ip;
  // Not for fragments: the NIC would sum this fragment alone, not the datagram; nor ICMP.
  if (out.tx_csum_offload && p.frag == FragKind::kNone && p.proto != kIpProtoIcmp) {
    // The NIC computes both checksums: write the fields and leave it the pseudo-header
    // sum it expects in the L4 checksum field.
    // Offsets into the L4 header: ports sit alike in TCP and UDP; the checksum does not.
    auto* l4 = static_cast<uint8_t*>(p.l4);
    const size_t port_off = side == NatSide::kDestination ? offsetof(UdpHdr, dst_port)
                                                          : offsetof(UdpHdr, src_port);
    const size_t csum_off =
        p.proto == kIpProtoTcp ? offsetof(TcpHdr, checksum) : offsetof(UdpHdr, checksum);
    if (side == NatSide::kDestination) {
      ip.dst = ip_be;
    } else {
      ip.src = ip_be;
    }
    std::memcpy(l4 + port_off, &port_be, sizeof port_be);
    ip.ttl--;
    ip.checksum = 0;
    const uint16_t pseudo = ipv4_pseudo_header_sum(ip);
    std::memcpy(l4 + csum_off, &pseudo, sizeof pseudo);
    m->l2_len = p.l2_len;
    m->l3_len = ip.ihl_bytes();
    m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM |
                   (p.proto == kIpProtoTcp ? RTE_MBUF_F_TX_TCP_CKSUM : RTE_MBUF_F_TX_UDP_CKSUM);
  } else {
    // A non-first fragment has no L4 header: only its IP header changes.
    const uint8_t l4_proto = p.frag == FragKind::kLater ? 0 : p.proto;
    if (side == NatSide::kDestination) {
      rewrite_dst(ip, p.l4, l4_proto, ip_be, port_be);
    } else {
      rewrite_src(ip, p.l4, l4_proto, ip_be, port_be);
    }
    decrement_ttl(ip);
  }
}

template <bool kTrace>
void Worker::send_resolved(uint16_t out_port, rte_mbuf* m, const MacAddr& dst) noexcept {
  auto* eth = rte_pktmbuf_mtod(m, EthHdr*);
  eth->dst = dst;
  eth->src = ports_[out_port].mac;
  if constexpr (kTrace) {
    finish_trace(TraceVerdict::kForward, out_port, m);
  } else {
    tx(out_port, m);
  }
}

void Worker::release(uint32_t n, rte_mbuf** held, const MacAddr& mac) noexcept {
  for (uint32_t i = 0; i < n; ++i) {
    // Held packets remember their egress port in the mbuf's port field (set by hold()).
    send_resolved<false>(held[i]->port, held[i], mac);
    counters_.neighbor_released++;
  }
}

void Worker::send_arp_request(uint16_t out_port, uint32_t target_be) noexcept {
  const PortInfo& port = ports_[out_port];
  rte_mbuf* m = rte_pktmbuf_alloc(port.pool);
  if (m == nullptr) return;  // pool exhausted: the retry timer asks again
  auto* eth = reinterpret_cast<EthHdr*>(rte_pktmbuf_append(m, sizeof(EthHdr) + sizeof(ArpHdr)));
  std::memset(eth->dst.b, 0xff, sizeof eth->dst.b);
  eth->src = port.mac;
  eth->ether_type = hton16(kEtherTypeArp);
  auto* arp = reinterpret_cast<ArpHdr*>(eth + 1);
  arp->htype = hton16(1);
  arp->ptype = hton16(kEtherTypeIpv4);
  arp->hlen = 6;
  arp->plen = 4;
  arp->oper = hton16(kArpRequest);
  arp->sha = port.mac;
  arp->spa = port.addr_be;
  arp->tha = MacAddr{};
  arp->tpa = target_be;
  counters_.arp_requests_sent++;
  tx(out_port, m);
}

void Worker::tx(uint16_t port, rte_mbuf* m) noexcept {
  auto& pc = counters_.ports[port];
  pc.tx_packets++;
  pc.tx_bytes += rte_pktmbuf_pkt_len(m);
  rte_eth_tx_buffer(ports_[port].port_id, settings_.queue, tx_buffers_[port], m);
}

void Worker::to_kernel(uint16_t port, rte_mbuf* m) noexcept {
  if (rte_eth_tx_burst(ports_[port].tap_port_id, settings_.queue, &m, 1) == 1) {
    counters_.to_kernel++;
  } else {
    drop(m, DropReason::kTxFull);
  }
}

uint32_t Worker::poll_kernel() noexcept {
  uint32_t total = 0;
  rte_mbuf* pkts[kBurst];
  for (uint16_t p = 0; p < ports_.size(); ++p) {
    if (!ports_[p].has_tap) continue;
    // The kernel resolved its next hop itself (its ARP goes out and answers come back
    // through to_kernel), and the twin shares the port's MAC: frames leave as they are.
    const uint16_t n = rte_eth_rx_burst(ports_[p].tap_port_id, settings_.queue, pkts, kBurst);
    for (uint16_t i = 0; i < n; ++i) tx(p, pkts[i]);
    counters_.from_kernel += n;
    total += n;
  }
  return total;
}

template <bool kTrace>
FlowHit Worker::lookup_flow(const FlowKey& key, uint64_t hash) noexcept {
  if constexpr (kTrace) {
    // Read-only: an expired entry is a miss, but it is not removed.
    FlowHit hit = flows_.peek(key, hash);
    if (hit.entry != nullptr && flows_.expired(*hit.entry, now_s_)) return {};
    return hit;
  } else {
    if (have_known_hit_ && known_hash_ == hash) {  // forward_cached() looked it up already
      have_known_hit_ = false;
      return known_hit_;
    }
    return flows_.lookup(key, hash, now_s_);
  }
}

template <bool kTrace>
void Worker::finish_drop(rte_mbuf* m, DropReason reason) noexcept {
  if constexpr (kTrace) {
    trace_->drop = reason;
    finish_trace(TraceVerdict::kDrop, 0, m);
  } else {
    drop(m, reason);
  }
}

template <bool kTrace>
void Worker::finish_kernel(uint16_t port, rte_mbuf* m) noexcept {
  if constexpr (kTrace) {
    finish_trace(TraceVerdict::kToKernel, port, m);
  } else {
    to_kernel(port, m);
  }
}

template <bool kTrace>
void Worker::finish_echo(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p) noexcept {
  if constexpr (kTrace) {
    finish_trace(TraceVerdict::kEchoReply, in_port, m);
  } else {
    answer_echo(in_port, m, p);
  }
}

template <bool kTrace>
void Worker::finish_reject(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p) noexcept {
  if constexpr (kTrace) {
    finish_trace(TraceVerdict::kReject, in_port, m);
  } else {
    reject(in_port, m, p);
  }
}

void Worker::finish_trace(TraceVerdict verdict, uint16_t port, rte_mbuf* m) noexcept {
  trace_->verdict = verdict;
  trace_->out_port = port;
  const uint16_t len = std::min<uint16_t>(rte_pktmbuf_data_len(m), sizeof trace_->frame);
  std::memcpy(trace_->frame, rte_pktmbuf_mtod(m, const uint8_t*), len);
  trace_->frame_len = len;
  rte_pktmbuf_free(m);
}

void Worker::run_trace(TraceJob& job) noexcept {
  const TraceRequest& r = job.request;
  trace_ = &job.log;
  const PortInfo& port = ports_[r.in_port < ports_.size() ? r.in_port : 0];
  rte_mbuf* m = rte_pktmbuf_alloc(port.pool);
  if (m == nullptr) {
    trace_->verdict = TraceVerdict::kNone;
    trace_ = nullptr;
    return;
  }
  // A synthetic frame as the client would send it, parsed by the same parser.
  const bool tcp = r.proto == kIpProtoTcp;
  const uint16_t l4 = tcp ? sizeof(TcpHdr) : sizeof(UdpHdr);
  auto* eth = reinterpret_cast<EthHdr*>(rte_pktmbuf_append(m, sizeof(EthHdr) + sizeof(Ipv4Hdr) + l4));
  std::memset(eth, 0, sizeof(EthHdr) + sizeof(Ipv4Hdr) + l4);
  eth->dst = port.mac;
  eth->src = MacAddr{{0x02, 0, 0, 0, 0, 0x01}};
  eth->ether_type = hton16(kEtherTypeIpv4);
  auto* ip = reinterpret_cast<Ipv4Hdr*>(eth + 1);
  ip->version_ihl = 0x45;
  ip->total_length = hton16(static_cast<uint16_t>(sizeof(Ipv4Hdr) + l4));
  ip->ttl = 64;
  ip->protocol = r.proto;
  ip->src = r.src_be;
  ip->dst = r.dst_be;
  ip->checksum = ipv4_header_checksum(*ip);
  if (tcp) {
    auto* t = reinterpret_cast<TcpHdr*>(ip + 1);
    t->src_port = r.sport_be;
    t->dst_port = r.dport_be;
    t->data_off = 5 << 4;
    t->flags = r.tcp_flags;
  } else {
    auto* u = reinterpret_cast<UdpHdr*>(ip + 1);
    u->src_port = r.sport_be;
    u->dst_port = r.dport_be;
    u->length = hton16(l4);
  }
  const Snapshot& snap = *publisher_.current();
  ParsedPacket p = parse_frame(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), {});
  trace_->add(TraceStep::kParsed, p.proto);
  if (p.kind != PacketKind::kIpv4) {
    finish_drop<true>(m, p.drop);
  } else {
    const ClientEnd client = client_end(p.key, snap);
    if (settings_.workers > 1) trace_->add(TraceStep::kOwner, owner_of(p, client));
    handle_ipv4<true>(static_cast<uint16_t>(&port - ports_.data()), m, p,
                      hash_flow_key(p.key, client), snap);
  }
  trace_ = nullptr;
}

bool Worker::trace(TraceJob& job) noexcept {
  TraceJob* expected = nullptr;
  if (!trace_slot_.compare_exchange_strong(expected, &job)) return false;  // one at a time
  // The worker takes it within one loop; wait for it (this is the API thread).
  for (int spins = 0; !job.done.load(std::memory_order_acquire); ++spins) {
    if (spins > 2000000 && trace_slot_.compare_exchange_strong(expected = &job, nullptr)) {
      return false;  // the worker is not running
    }
    std::this_thread::yield();
  }
  return true;
}

void Worker::step_flow_list(FlowListJob& job) noexcept {
  // A slice per loop iteration: a large table never stalls RX for long.
  constexpr uint32_t kSlice = 4096;
  const uint32_t end = std::min(job.cursor + kSlice, flows_.capacity());
  flows_.for_each_in(job.cursor, end, [&](const FlowEntry& e) {
    if (job.flows.size() >= job.limit) return false;
    if (!flows_.expired(e, now_s_)) job.flows.push_back(e);  // capacity reserved: no allocation
    return true;
  });
  job.cursor = end;
  if (end == flows_.capacity() || job.flows.size() >= job.limit) {
    job.now_s = now_s_;
    flow_slot_.store(nullptr, std::memory_order_relaxed);
    job.done.store(true, std::memory_order_release);
  }
}

bool Worker::list_flows(FlowListJob& job) noexcept {
  FlowListJob* expected = nullptr;
  if (!flow_slot_.compare_exchange_strong(expected, &job)) return false;
  for (int spins = 0; !job.done.load(std::memory_order_acquire); ++spins) {
    if (spins > 20000000 && job.cursor == 0 &&
        flow_slot_.compare_exchange_strong(expected = &job, nullptr)) {
      return false;  // the worker never started it
    }
    std::this_thread::yield();
  }
  return true;
}

void Worker::drop(rte_mbuf* m, DropReason reason) noexcept {
  if ((drop_watch_mask_ >> static_cast<unsigned>(reason)) & 1) [[unlikely]] drop_slow(m, reason);
  counters_.drops[static_cast<size_t>(reason)]++;
  rte_pktmbuf_free(m);
}

}  // namespace l4lb

namespace l4lb {
// Used by worker_guard.cc (ICMP errors and fragments take the same way out).
template void Worker::nat_and_send<false>(rte_mbuf*, const ParsedPacket&, NatSide, uint32_t,
                                          uint16_t, const Snapshot&, FlowEntry*,
                                          FlowDir) noexcept;
}  // namespace l4lb
