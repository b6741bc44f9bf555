// The worker's side of live capture (src/capture.h): classify a burst's packets as the
// forwarding code will see them, copy the matching ones into this worker's channel. Runs
// only while a capture is on; a full channel costs a counter, never a delayed packet.
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "src/worker.h"

namespace l4lb {

void Worker::capture_refresh(uint64_t state) noexcept {
  capture_state_ = state;
  capture_n_ = 0;
  capture_drop_mask_ = 0;
  capture_on_ = false;
  drop_watch_mask_ = drop_log_mask_;
  if ((state & 1) == 0) return;
  const CaptureFilter& f = capture_tap_->filter;
  capture_channel_ = &capture_tap_->channels[settings_.queue];
  capture_drop_mask_ = f.reasons;
  drop_watch_mask_ = drop_log_mask_ | capture_drop_mask_;
  // Drops are matched at the drop point; classifying the burst is needed only when the
  // filter asks about the packet's Service, protocol or direction.
  capture_on_ =
      f.reasons == 0 || f.by_service || f.proto != 0 || f.direction != CaptureDirection::kBoth;
}

void Worker::capture_rx(uint16_t in_port, rte_mbuf** pkts, uint16_t n,
                        const Snapshot& snap) noexcept {
  const CaptureFilter& f = capture_tap_->filter;
  const bool on_receipt = f.reasons == 0;
  const bool from_ring = in_port == kFromRing;
  capture_n_ = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    CaptureClass c;
    const ParsedPacket p = parse_frame(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), {});
    const uint16_t port = from_ring ? port_index_[m->port] : in_port;
    const bool for_us = p.kind == PacketKind::kIpv4 && p.eth->dst == ports_[port].mac;
    if (for_us && p.proto != kIpProtoIcmp) {
      // The owner captures a packet handed over to it, so each is captured once.
      if (settings_.workers > 1 && !from_ring &&
          owner_of(p, client_end(p.key, snap)) != settings_.queue) {
        continue;
      }
      c.proto = p.proto;
      if (const ServicePort* sp = snap.services.find(p.ip->dst, p.proto, p.key.dst_port)) {
        c.service_port = sp->counter_id;
        c.direction = CaptureDirection::kToBackend;
      } else {
        // A reply: its flow entry names the VIP; without one, its endpoint may.
        const ServicePort* sp2 = nullptr;
        const FlowHit hit = flows_.peek(p.key, hash_flow_key(p.key, client_end(p.key, snap)));
        if (hit.entry != nullptr && hit.dir == FlowDir::kReverse) {
          sp2 = snap.services.find(hit.entry->nat.vip, p.proto, hit.entry->nat.vip_port);
        } else {
          const uint32_t e = snap.services.find_endpoint(p.ip->src, p.proto, p.key.src_port);
          if (e != ServiceTable::kNotFound && e != ServiceTable::kAmbiguous) {
            sp2 = &snap.services.ports()[e];
          }
        }
        if (sp2 != nullptr) {
          c.service_port = sp2->counter_id;
          c.direction = CaptureDirection::kFromBackend;
        }
      }
    }
    if (on_receipt) {
      if (c.service_port != CaptureClass::kNoServicePort && f.matches(c)) {
        capture_copy(m, static_cast<uint8_t>(kDropReasonCount));
      }
    } else {
      capture_pkts_[capture_n_] = m;
      capture_class_[capture_n_++] = c;
    }
  }
}

void Worker::capture_drop(rte_mbuf* m, DropReason reason) noexcept {
  CaptureClass c;  // unknown unless the packet arrived in the burst being processed
  for (uint16_t i = 0; i < capture_n_; ++i) {
    if (capture_pkts_[i] == m) {
      c = capture_class_[i];
      capture_pkts_[i] = nullptr;
      break;
    }
  }
  if (capture_tap_->filter.matches(c)) capture_copy(m, static_cast<uint8_t>(reason));
}

void Worker::capture_copy(rte_mbuf* m, uint8_t reason) noexcept {
  void* slot = nullptr;
  if (rte_ring_sc_dequeue(capture_channel_->free, &slot) != 0) {
    counters_.capture_dropped++;
    return;
  }
  auto* r = static_cast<CaptureRecord*>(slot);
  const uint32_t wire = rte_pktmbuf_pkt_len(m);
  const uint32_t len = std::min<uint32_t>(wire, capture_tap_->filter.snaplen);
  const void* data = rte_pktmbuf_read(m, 0, len, r->data);
  if (data != nullptr && data != r->data) std::memcpy(r->data, data, len);
  r->tsc = now_tsc_;
  r->wire_len = wire;
  r->len = static_cast<uint16_t>(data != nullptr ? len : 0);
  r->reason = reason;
  // As many records as slots: the full ring always has room for one taken from free.
  rte_ring_sp_enqueue(capture_channel_->full, r);
  counters_.capture_packets++;
}

}  // namespace l4lb
