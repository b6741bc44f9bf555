// Per-worker connection table: each flow is one entry found by its forward key (client ->
// VIP:port) and by its reverse key (backend -> client). Owned by exactly one worker lcore:
// worker-safe for that worker only (no locks, no atomics, no allocation after construction).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <utility>

#include "lb/flow_key.h"
#include "nat/headers.h"

namespace l4lb {

// Largest table one worker may own. Index slots hold (entry index << 1 | direction) in 32
// bits; this bound leaves that far from overflow. The constructor clamps to it; the config
// loader should reject more.
constexpr uint32_t kMaxFlowCapacity = 1u << 26;

// TCP state as seen from the middle (both directions pass through l4lb):
//   insert, SYN without ACK                       -> kSynSent
//   insert, FIN or RST                            -> kClosing
//   insert, anything else (mid-flow pickup after
//     a restart or from another instance)         -> kEstablished
//   kSynSent,    reverse SYN+ACK                  -> kSynAckSeen
//   kSynAckSeen, forward ACK without SYN          -> kEstablished
//   any state,   FIN or RST from either side      -> kClosing (final)
// kClosing never goes back; a new forward SYN on it is port reuse (is_reopen()): the caller
// removes the entry and inserts a fresh one. Every protocol other than TCP is inserted as
// kUdp and has no state machine.
enum class FlowState : uint8_t { kSynSent, kSynAckSeen, kEstablished, kClosing, kUdp };
enum class FlowDir : uint8_t { kForward, kReverse };

// Idle timeouts: an entry stays alive while now - last_seen <= the timeout of its state.
struct FlowTimeouts {
  uint32_t tcp_established_s = 3600;
  uint32_t tcp_transitory_s = 30;  // SYN sent / SYN-ACK seen / FIN or RST seen
  uint32_t udp_s = 60;
};

// Where a flow is pinned; self-contained so flows survive config changes.
struct FlowNat {
  uint32_t vip;              // network order
  uint32_t backend_ip;       // network order
  uint16_t vip_port;         // network order
  uint16_t backend_port;     // network order
  uint32_t service_port_id;  // opaque id of the Service port, for counters
};

// One cache line, so the second (and last) miss of a lookup brings in the whole flow.
struct alignas(64) FlowEntry {
  FlowKey fwd;  // client -> VIP:port
  FlowNat nat;
  uint32_t created_s;
  uint32_t last_seen_s;
  FlowState state;
  // The owning worker's forwarding decision for each direction ([FlowDir]), cached so
  // later packets skip the Service, ACL and route lookups. Opaque here: valid while
  // route_epoch equals the worker's configuration epoch (0 = none; insert() clears it).
  uint8_t route_port[2];
  uint16_t route_neighbor[2];  // the next hop's neighbour-cache slot, a hint
  uint32_t route_epoch[2];
  uint32_t route_next_hop[2];
  // The key the backend's replies carry.
  FlowKey reverse_key() const noexcept {
    return FlowKey{nat.backend_ip, fwd.src_ip, nat.backend_port, fwd.src_port, fwd.proto};
  }
};
static_assert(sizeof(FlowEntry) == 64);

struct FlowHit {
  FlowEntry* entry = nullptr;
  FlowDir dir = FlowDir::kForward;
};

// A client SYN on a closing entry: the client reuses the port for a new connection, which
// may need a different backend, so the caller removes the entry and inserts a new one.
inline bool is_reopen(const FlowEntry& e, FlowDir dir, uint8_t tcp_flags) noexcept {
  return e.state == FlowState::kClosing && dir == FlowDir::kForward &&
         (tcp_flags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) == kTcpSyn;
}

// Layout, chosen for a burst of lookups at millions of entries where every cache miss costs
// hundreds of nanoseconds:
//  - an index of 64-byte buckets, each with 8 slots of {32-bit signature, entry ref}; a key
//    may sit in one of two buckets (partial-key cuckoo hashing, Fan et al., "Cuckoo Filter",
//    CoNEXT 2014, section 3.1: the second bucket is derived from the first and the
//    signature alone, so a slot can move without reading its entry). A key goes to its
//    primary bucket when there is room; a bucket whose keys were ever pushed to their other
//    bucket carries an overflow flag, and only then does a lookup read the second bucket.
//    Below ~50% load nearly every lookup, hit or miss, costs one bucket line.
//  - the entries: `capacity` 64-byte FlowEntry, one per flow, free ones on a list.
// Both keys of a flow point at the same entry; the slot's low bit says which key it is.
// Keys are hashed by hash_flow_key(): the primary bucket comes from the client's end alone,
// so a flow's two keys share it (insert, the reverse-key check and removal touch one
// bucket line, not two), the signature from the whole key.
//
// A burst is best looked up in three passes, each over all its packets:
//   for each: prefetch(h)        the candidate buckets start loading
//   for each: prefetch_entry(h)  buckets are in; entries with a matching signature start
//   for each: lookup(k, h, now)  everything is in cache
// The entry address depends on the bucket's content, so without the middle pass each lookup
// waits out one full miss on its entry; the CPU already overlaps the bucket loads itself
// when the hashes are known ahead. Measured at 1M entries, 75% hits, on a busy 2-core EPYC
// VM (one dependent miss 300-500 ns): a bare loop of lookups 95 -> 64 ns each; with ~85 ns of
// other work per packet 440-590 -> 130-175 ns. prefetch() alone gained nothing measurable.
class FlowTable {
 public:
  // Allocates and touches all memory (entries, index) here; nothing allocates afterwards.
  // Capacity is clamped to kMaxFlowCapacity. Large tables ask for transparent huge pages.
  FlowTable(uint32_t capacity, FlowTimeouts timeouts);
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;
  // A moved-from table may only be destroyed or assigned to.
  FlowTable(FlowTable&&) noexcept = default;
  FlowTable& operator=(FlowTable&&) noexcept = default;
  ~FlowTable() = default;

  // hash = hash_flow_key(key, its client end) of the key as the packet carries it (every
  // hash this class takes is one). First pass over a burst.
  // The primary bucket only: the alternate is read only where the primary's overflow flag
  // says a key may have been pushed there (rare below ~50% load), and every prefetch of a
  // line that is not needed takes a miss slot from one that is (established-1m: pass 1b
  // 28-31 -> 6 ns per packet with the overflow flags, bench --stages).
  void prefetch(uint64_t hash) const noexcept { __builtin_prefetch(&buckets_[primary_bucket(hash)]); }
  // Second pass over a burst, after prefetch(): reads the primary bucket (in cache by now;
  // the alternate too if the primary overflowed) and prefetches the first entry whose
  // signature matches. False when no slot has the key's signature: the key is certainly
  // absent (a new flow).
  bool prefetch_entry(uint64_t hash) const noexcept;
  // Keys inserted since the last clear_recent(), as a 64-bit filter of their hashes: a key
  // that prefetch_entry() found absent stays absent unless maybe_inserted() says otherwise.
  void clear_recent() noexcept { recent_ = 0; }
  bool maybe_inserted(uint64_t hash) const noexcept { return (recent_ >> (hash & 63)) & 1; }
  // Finds the entry by either key. An entry past its timeout counts as a miss and is removed.
  // Inline for the common case, the slot prefetch_entry() found for this hash.
  FlowHit lookup(const FlowKey& key, uint64_t hash, uint32_t now_s) noexcept {
    const Hint& hint = hints_[hash & (kHints - 1)];
    if (hint.hash == hash && hint.ref != kNoSlot && holds(hint.ref, key)) {
      FlowEntry* e = &entries_[hint.ref >> 1];
      if (!expired(*e, now_s)) return {e, static_cast<FlowDir>(hint.ref & 1)};
    }
    return lookup_slow(key, hash, now_s);
  }
  // The entry for either key, expired or not; changes nothing (for the packet tracer).
  FlowHit peek(const FlowKey& key, uint64_t hash) const noexcept;
  // Inserts a new flow under both keys (fwd_hash: hash_flow_key(fwd, ClientEnd::kSource));
  // tcp_flags are the first packet's (ignored unless fwd.proto is TCP). When the table is
  // full, or both candidate buckets of a key stay full after trying to make room, it evicts
  // one un-established entry (expired first, then the least recently seen half-open or
  // closing TCP flow) found in the new keys' candidate buckets, so a SYN flood displaces
  // only its own kind and never an established flow or a UDP flow (counted in
  // evictions()). Returns nullptr, changing nothing but such an eviction, when no room was
  // found that way or when the reverse key belongs to another live flow. The caller
  // guarantees the forward key is not present (it just missed).
  FlowEntry* insert(const FlowKey& fwd, uint64_t fwd_hash, const FlowNat& nat, uint8_t tcp_flags,
                    uint32_t now_s) noexcept;
  // Per packet after a hit: refreshes last_seen and advances the TCP state machine.
  void update(FlowEntry* e, FlowDir dir, uint8_t tcp_flags, uint32_t now_s) noexcept;
  // e must be live (from lookup, insert or for_each); it is free afterwards.
  void remove(FlowEntry* e) noexcept;
  // Incremental expiry off the per-packet path: scans the next `budget` entry slots of the
  // used span (clock hand, wraps; at most one full turn per call) and removes expired ones.
  // Returns how many.
  uint32_t expire(uint32_t now_s, uint32_t budget) noexcept;
  // Entry slots [0, used_span()) are every slot that ever held a flow: free entries are
  // reused last-freed first, and a never-used slot is taken only when no used one is free,
  // so a table sized for a peak sweeps only what its traffic has reached (expire()).
  uint32_t used_span() const noexcept { return used_span_; }
  // e must be live. Age is taken modulo 2^32 as a signed number (RFC 1982 serial
  // arithmetic), so the clock may wrap and a last_seen slightly ahead of now (a caller's
  // stale clock) is not expiry.
  bool expired(const FlowEntry& e, uint32_t now_s) const noexcept {
    return static_cast<int32_t>(now_s - e.last_seen_s) >
           static_cast<int32_t>(timeout_by_state_[static_cast<uint8_t>(e.state)]);
  }
  uint32_t size() const noexcept { return size_; }
  uint32_t capacity() const noexcept { return capacity_; }
  // Entries insert() evicted to make room (never established or UDP ones).
  uint64_t evictions() const noexcept { return evictions_; }

  // Live (not freed) entries in slot order, including ones past their timeout that expiry
  // has not reached yet (filter with expired()). Stops when f returns false. Reads without
  // synchronisation: run it on the owning worker, or while that worker is stopped.
  template <class F>
  void for_each(F&& f) const {
    for (uint32_t i = 0; i < capacity_; ++i) {
      const FlowEntry& e = entries_[i];
      if (e.state != kFreeState && !f(e)) return;
    }
  }

  // The same over entry slots [begin, end) only, for incremental listing.
  template <class F>
  void for_each_in(uint32_t begin, uint32_t end, F&& f) const {
    for (uint32_t i = begin; i < end && i < capacity_; ++i) {
      const FlowEntry& e = entries_[i];
      if (e.state != kFreeState && !f(e)) return;
    }
  }

  // Diagnostics and tests: the index size and the two buckets a key hash may live in.
  uint32_t index_buckets() const noexcept { return bucket_mask_ + 1; }
  // Buckets with the overflow flag (a lookup there reads the second bucket too); scans the
  // whole index.
  uint32_t overflowed_buckets() const noexcept {
    uint32_t n = 0;
    for (uint32_t b = 0; b <= bucket_mask_; ++b) n += buckets_[b].overflowed();
    return n;
  }
  // Index slots in use; 2 * size() unless a removal left a slot behind. Scans the index.
  uint32_t index_slots_used() const noexcept {
    uint32_t n = 0;
    for (uint32_t b = 0; b <= bucket_mask_; ++b) {
      for (uint32_t s = 0; s < kSlotsPerBucket; ++s) n += buckets_[b].sig[s] != 0;
    }
    return n;
  }
  std::pair<uint32_t, uint32_t> candidate_buckets(uint64_t hash) const noexcept {
    const uint32_t b1 = primary_bucket(hash);
    return {b1, alt_bucket(b1, signature(hash))};
  }

  // Called once for every entry that leaves the table (timeout, remove(), reuse), before
  // it is freed: per flow, never per packet. For per-backend active-flow counts.
  using RemoveHook = void (*)(void* ctx, const FlowEntry& e);
  void set_remove_hook(RemoveHook hook, void* ctx) noexcept {
    on_remove_ = hook;
    on_remove_ctx_ = ctx;
  }

 private:
  static constexpr uint32_t kSlotsPerBucket = 8;
  static constexpr uint32_t kNoSlot = ~uint32_t{0};   // find result: key not in the index
  static constexpr uint32_t kNoEntry = ~uint32_t{0};  // end of the free list
  // Marks a free entry; not a FlowState a live entry can have.
  static constexpr FlowState kFreeState = static_cast<FlowState>(0xff);

  // Bit 31 of ref[0]: the bucket's overflow flag. Refs stay below 2^27 (kMaxFlowCapacity).
  static constexpr uint32_t kOverflow = 1u << 31;
  struct alignas(64) Bucket {
    uint32_t sig[kSlotsPerBucket];  // 0 = free slot (no key's signature is 0)
    // entry index << 1 | FlowDir, stale in a free slot; read and write through ref_at/put.
    uint32_t ref[kSlotsPerBucket];
    uint32_t ref_at(uint32_t s) const noexcept { return ref[s] & ~kOverflow; }
    void put(uint32_t s, uint32_t sg, uint32_t r) noexcept {
      sig[s] = sg;
      ref[s] = (ref[s] & kOverflow) | r;
    }
    // Set when a key that has this bucket as a candidate is placed in or moved to its other
    // bucket; never cleared. Clear: every key whose primary bucket this is sits here.
    bool overflowed() const noexcept { return (ref[0] & kOverflow) != 0; }
    void mark_overflowed() noexcept { ref[0] |= kOverflow; }
  };
  static_assert(sizeof(Bucket) == 64);
  static_assert((uint64_t{kMaxFlowCapacity} << 1) <= kOverflow);

  struct FreeDeleter {
    void operator()(void* p) const noexcept { std::free(p); }
  };

  // The bucket index comes from the low bits of the hash, the signature from the high 32, so
  // the two are independent. Low bit forced on: 0 marks a free slot.
  static uint32_t signature(uint64_t hash) noexcept {
    return static_cast<uint32_t>(hash >> 32) | 1u;
  }
  uint32_t primary_bucket(uint64_t hash) const noexcept {
    return static_cast<uint32_t>(hash) & bucket_mask_;
  }
  // An involution: alt_bucket(alt_bucket(b, s), s) == b, so either bucket finds the other.
  uint32_t alt_bucket(uint32_t bucket, uint32_t sig) const noexcept {
    uint32_t x = sig * 0x9e3779b1u;  // spread the signature before masking (fmix32 steps)
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    return bucket ^ (x & bucket_mask_);
  }

  // lookup() without a usable hint: scans the primary bucket, and the alternate if the
  // primary overflowed.
  FlowHit lookup_slow(const FlowKey& key, uint64_t hash, uint32_t now_s) noexcept;
  // Bit s set where slot s holds `sig`.
  static unsigned match_mask(const Bucket& b, uint32_t sig) noexcept;
  // Slot ref of `key` within one bucket, or kNoSlot.
  uint32_t find_in(const Bucket& b, uint32_t sig, const FlowKey& key) const noexcept;
  // Slot ref of `key` in either candidate bucket, or kNoSlot.
  uint32_t find_ref(const FlowKey& key, uint64_t hash) const noexcept;
  // Puts one key (by its hash) into the index, moving other slots to their alternate bucket
  // if both candidates are full. False, with nothing changed, if no room was found.
  bool index_add(uint64_t hash, uint32_t ref) noexcept;
  // Clears the one slot holding `ref` among the key's two candidate buckets.
  void index_del(uint64_t hash, uint32_t ref) noexcept;
  // Bit s set where slot s is in use and refers to `ref` (each ref is in one slot only).
  static unsigned ref_mask(const Bucket& b, uint32_t ref) noexcept;
  // Frees a slot in b1 or b2 by moving a chain of keys each to its other bucket; returns
  // where. False, with nothing moved, if no short chain ends in a free slot.
  bool make_room(uint32_t b1, uint32_t b2, uint32_t* bucket, uint32_t* slot) noexcept;
  // Removes the best victim among the entries referenced from the candidate buckets of the
  // two hashes: an expired entry, else the least recently seen kSynSent, kSynAckSeen or
  // kClosing one. False when there is none.
  bool evict_unestablished(uint64_t hash_a, uint64_t hash_b, uint32_t now_s) noexcept;

  // What prefetch_entry() found, for lookup() of the same key later in the burst: the
  // slot ref whose signature matched. A hint is only a guess (the entry may since have been
  // freed or reused): lookup() trusts it only if the entry is live and holds the key in
  // that direction, which makes it the right answer (cuckoo moves change where a ref sits,
  // never the ref). Saves lookup() scanning the buckets again.
  struct Hint {
    uint64_t hash = 0;
    uint32_t ref = kNoSlot;
  };
  // Direct-mapped by hash: 256 slots leave ~6 % of a 32-packet burst colliding (64 left ~22 %,
  // each a second bucket scan).
  static constexpr uint32_t kHints = 256;
  mutable std::array<Hint, kHints> hints_{};
  bool holds(uint32_t ref, const FlowKey& key) const noexcept {
    const FlowEntry& e = entries_[ref >> 1];
    return e.state != kFreeState && ((ref & 1) == 0 ? e.fwd == key : e.reverse_key() == key);
  }

  std::unique_ptr<FlowEntry[], FreeDeleter> entries_;
  std::unique_ptr<Bucket[], FreeDeleter> buckets_;
  uint32_t bucket_mask_ = 0;
  uint32_t capacity_ = 0;
  uint32_t size_ = 0;
  // Free entries form a list threaded through their created_s (unused while free), so the
  // list costs no memory and popping touches only the line insert writes anyway.
  RemoveHook on_remove_ = nullptr;
  void* on_remove_ctx_ = nullptr;
  uint32_t free_head_ = kNoEntry;
  uint32_t hand_ = 0;  // expire()'s next slot, below used_span_ (or 0)
  uint32_t used_span_ = 0;
  uint64_t evictions_ = 0;
  uint64_t recent_ = 0;  // bit (hash & 63) of every key inserted since clear_recent()
  std::array<uint32_t, 5> timeout_by_state_{};
};

}  // namespace l4lb
