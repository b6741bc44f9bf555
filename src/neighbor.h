// IPv4 neighbour (ARP) cache of one worker: resolved MACs, static entries from the
// config, and a small hold queue per unresolved next hop. Owned by one worker; no locks.
#pragma once

#include <cstdint>

#include "nat/headers.h"

struct rte_mbuf;

namespace l4lb {

class NeighborTable {
 public:
  static constexpr uint32_t kCapacity = 4096;     // power of two
  static constexpr uint32_t kHoldPerEntry = 8;
  static constexpr uint32_t kMaxPending = 256;
  static constexpr uint32_t kMaxProbes = 3;

  struct Lookup {
    const MacAddr* mac = nullptr;  // null: unresolved
    bool refresh = false;          // resolved but old: send an ARP request to confirm
    uint16_t slot = 0;             // where it sits, for resolved_at() (when mac is set)
  };
  enum class Hold : uint8_t { kHeld, kHeldProbe, kHoldFull, kTableFull };

  explicit NeighborTable(uint64_t tsc_hz);
  ~NeighborTable();
  NeighborTable(const NeighborTable&) = delete;
  NeighborTable& operator=(const NeighborTable&) = delete;

  Lookup lookup(uint32_t ip_be, uint64_t now) noexcept;
  // lookup() without the hash probe when the caller remembers the slot an earlier lookup()
  // gave: the MAC if that slot still holds ip_be, resolved and not due for a refresh; else
  // nullptr, and the caller asks lookup() (which also sends the refresh when one is due).
  const MacAddr* resolved_at(uint16_t slot, uint32_t ip_be, uint64_t now) const noexcept {
    const Entry& e = entries_[slot & (kCapacity - 1)];
    const bool ok = e.ip_be == ip_be &&
                    (e.state == State::kStatic || (e.state == State::kReachable && now < e.deadline));
    return ok ? &e.mac : nullptr;
  }
  // Queues m until ip_be answers; kHeldProbe: the caller sends the first ARP request now.
  Hold hold(uint32_t ip_be, uint16_t port, rte_mbuf* m, uint64_t now) noexcept;
  // Records ip -> mac. With create == false only an existing entry is updated (RFC 826:
  // merge if present, add only when the ARP was for us). Packets that were waiting are
  // written to released[] (up to kHoldPerEntry).
  struct Learned {
    bool updated = false;   // an entry now holds this MAC (static entries never change)
    uint32_t released = 0;  // packets written to released[]
  };
  Learned learn(uint32_t ip_be, const MacAddr& mac, bool create, uint64_t now,
                rte_mbuf** released) noexcept;
  // Static entries (from the config) never expire and ignore ARP; releases held packets too.
  uint32_t set_static(uint32_t ip_be, const MacAddr& mac, rte_mbuf** released) noexcept;
  bool known(uint32_t ip_be) const noexcept;
  // The MAC if resolved (reachable or static); changes nothing (for the packet tracer).
  const MacAddr* peek(uint32_t ip_be) const noexcept;

  // Retries ARP for unresolved entries and gives up after kMaxProbes, handing their held
  // packets to drop(). probe(ip_be, port) sends one ARP request.
  template <class Probe, class Drop>
  void tick(uint64_t now, Probe&& probe, Drop&& drop) noexcept;

 private:
  enum class State : uint8_t { kFree, kFailed, kIncomplete, kReachable, kStatic };
  struct Entry {
    uint32_t ip_be = 0;
    MacAddr mac{};
    State state = State::kFree;
    uint8_t held = 0;
    uint8_t probes = 0;
    uint16_t port = 0;
    uint64_t deadline = 0;  // incomplete: next probe; reachable: when to confirm again
    rte_mbuf* queue[kHoldPerEntry] = {};
  };

  Entry* find(uint32_t ip_be) const noexcept;
  Entry* find_or_insert(uint32_t ip_be) noexcept;
  uint32_t resolve(Entry& e, uint32_t ip_be, const MacAddr& mac, State state, uint64_t deadline,
                   rte_mbuf** released) noexcept;

  Entry* entries_;
  uint32_t pending_[kMaxPending];
  uint32_t n_pending_ = 0;
  uint64_t probe_interval_;
  uint64_t reachable_time_;
};

template <class Probe, class Drop>
void NeighborTable::tick(uint64_t now, Probe&& probe, Drop&& drop) noexcept {
  uint32_t kept = 0;
  for (uint32_t i = 0; i < n_pending_; ++i) {
    Entry& e = entries_[pending_[i]];
    if (e.state != State::kIncomplete) continue;  // answered meanwhile
    if (now < e.deadline) {
      pending_[kept++] = pending_[i];
      continue;
    }
    if (e.probes >= kMaxProbes) {
      for (uint8_t h = 0; h < e.held; ++h) drop(e.queue[h]);
      e.held = 0;
      e.state = State::kFailed;
      continue;
    }
    ++e.probes;
    e.deadline = now + probe_interval_;
    probe(e.ip_be, e.port);
    pending_[kept++] = pending_[i];
  }
  n_pending_ = kept;
}

}  // namespace l4lb
