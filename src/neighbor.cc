#include "src/neighbor.h"

#include <rte_mbuf.h>

#include "lb/flow_key.h"

namespace l4lb {

NeighborTable::NeighborTable(uint64_t tsc_hz)
    : entries_(new Entry[kCapacity]),
      probe_interval_(tsc_hz / 5),      // 200 ms between ARP retries
      reachable_time_(tsc_hz * 60) {}   // confirm a learned MAC once a minute while in use

NeighborTable::~NeighborTable() {
  // Packets still waiting for an answer go back to their pool, not astray.
  for (uint32_t i = 0; i < kCapacity; ++i) {
    for (uint8_t h = 0; h < entries_[i].held; ++h) rte_pktmbuf_free(entries_[i].queue[h]);
  }
  delete[] entries_;
}

NeighborTable::Entry* NeighborTable::find(uint32_t ip_be) const noexcept {
  for (uint32_t i = mix64(ip_be) & (kCapacity - 1), n = 0; n < kCapacity;
       i = (i + 1) & (kCapacity - 1), ++n) {
    Entry& e = entries_[i];
    if (e.state == State::kFree) return nullptr;
    if (e.ip_be == ip_be && e.state != State::kFailed) return &e;
  }
  return nullptr;
}

NeighborTable::Entry* NeighborTable::find_or_insert(uint32_t ip_be) noexcept {
  Entry* reuse = nullptr;
  for (uint32_t i = mix64(ip_be) & (kCapacity - 1), n = 0; n < kCapacity;
       i = (i + 1) & (kCapacity - 1), ++n) {
    Entry& e = entries_[i];
    if (e.state == State::kFailed && e.ip_be == ip_be) return &e;
    if (e.state == State::kFailed && reuse == nullptr) reuse = &e;
    if (e.state == State::kFree) return reuse != nullptr ? reuse : &e;
    if (e.ip_be == ip_be) return &e;
  }
  return reuse;
}

bool NeighborTable::known(uint32_t ip_be) const noexcept { return find(ip_be) != nullptr; }

const MacAddr* NeighborTable::peek(uint32_t ip_be) const noexcept {
  const Entry* e = find(ip_be);
  return e == nullptr || e->state == State::kIncomplete ? nullptr : &e->mac;
}

NeighborTable::Lookup NeighborTable::lookup(uint32_t ip_be, uint64_t now) noexcept {
  Entry* e = find(ip_be);
  if (e == nullptr || e->state == State::kIncomplete) return {};
  Lookup r{&e->mac, false, static_cast<uint16_t>(e - entries_)};
  if (e->state == State::kReachable && now >= e->deadline) {
    e->deadline = now + probe_interval_ * 25;  // one confirmation probe each 5 s while stale
    r.refresh = true;
  }
  return r;
}

NeighborTable::Hold NeighborTable::hold(uint32_t ip_be, uint16_t port, rte_mbuf* m,
                                        uint64_t now) noexcept {
  Entry* e = find_or_insert(ip_be);
  if (e == nullptr) return Hold::kTableFull;
  if (e->state == State::kIncomplete) {
    if (e->held == kHoldPerEntry) return Hold::kHoldFull;
    e->queue[e->held++] = m;
    return Hold::kHeld;
  }
  if (n_pending_ == kMaxPending) return Hold::kTableFull;
  e->ip_be = ip_be;
  e->state = State::kIncomplete;
  e->port = port;
  e->probes = 1;
  e->deadline = now + probe_interval_;
  e->held = 1;
  e->queue[0] = m;
  pending_[n_pending_++] = static_cast<uint32_t>(e - entries_);
  return Hold::kHeldProbe;
}

uint32_t NeighborTable::resolve(Entry& e, uint32_t ip_be, const MacAddr& mac, State state,
                               uint64_t deadline, rte_mbuf** released) noexcept {
  uint32_t n = 0;
  if (e.state == State::kIncomplete) {
    for (; n < e.held; ++n) released[n] = e.queue[n];
    e.held = 0;
  }
  e.ip_be = ip_be;
  e.mac = mac;
  e.state = state;
  e.deadline = deadline;
  return n;
}

NeighborTable::Learned NeighborTable::learn(uint32_t ip_be, const MacAddr& mac, bool create,
                                           uint64_t now, rte_mbuf** released) noexcept {
  Entry* e = create ? find_or_insert(ip_be) : find(ip_be);
  if (e == nullptr || e->state == State::kStatic) return {};
  return {true, resolve(*e, ip_be, mac, State::kReachable, now + reachable_time_, released)};
}

uint32_t NeighborTable::set_static(uint32_t ip_be, const MacAddr& mac,
                                   rte_mbuf** released) noexcept {
  Entry* e = find_or_insert(ip_be);
  if (e == nullptr) return 0;
  return resolve(*e, ip_be, mac, State::kStatic, 0, released);
}

}  // namespace l4lb
