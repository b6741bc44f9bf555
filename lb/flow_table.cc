#include "lb/flow_table.h"

#include <sys/mman.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <new>

namespace l4lb {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Index sizing: two keys per entry, and a full table keeps the index at most 90% loaded.
// Two choices of 4-slot buckets with cuckoo moves already reach ~95% (Fan et al.), 8-slot
// ones more, so a full table still inserts (the tests fill one whose index ends at 90%).
// Rounding up to a power of two (the bucket is a mask of the hash) leaves 45% to 90%.
uint32_t bucket_count_for(uint32_t capacity) {
  const uint64_t slots = (uint64_t{capacity} * 2 * 10 + 8) / 9;
  const uint64_t buckets = std::max<uint64_t>(1, (slots + 7) / 8);
  return static_cast<uint32_t>(std::bit_ceil(buckets));
}

// Zeroed, committed memory: touching every page here keeps page faults off the data path.
// Tables of a huge page or more are aligned to one and asked to use transparent huge pages
// (best effort; madvise failing only costs TLB misses).
void* alloc_table(size_t bytes) {
  const size_t align = bytes >= kHugePage ? kHugePage : 64;
  bytes = std::max(align, (bytes + align - 1) / align * align);
  void* p = std::aligned_alloc(align, bytes);
  if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (align == kHugePage) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  std::memset(p, 0, bytes);
  return p;
}

}  // namespace

FlowTable::FlowTable(uint32_t capacity, FlowTimeouts timeouts)
    : capacity_(std::min(capacity, kMaxFlowCapacity)) {
  const uint32_t nbuckets = bucket_count_for(capacity_);
  bucket_mask_ = nbuckets - 1;
  buckets_.reset(static_cast<Bucket*>(alloc_table(size_t{nbuckets} * sizeof(Bucket))));
  auto* mem = static_cast<FlowEntry*>(alloc_table(size_t{capacity_} * sizeof(FlowEntry)));
  for (uint32_t i = 0; i < capacity_; ++i) {
    FlowEntry* e = new (&mem[i]) FlowEntry{};
    e->state = kFreeState;
    e->created_s = i + 1 < capacity_ ? i + 1 : kNoEntry;
  }
  entries_.reset(mem);
  free_head_ = capacity_ > 0 ? 0 : kNoEntry;

  timeout_by_state_[static_cast<uint8_t>(FlowState::kSynSent)] = timeouts.tcp_transitory_s;
  timeout_by_state_[static_cast<uint8_t>(FlowState::kSynAckSeen)] = timeouts.tcp_transitory_s;
  timeout_by_state_[static_cast<uint8_t>(FlowState::kEstablished)] = timeouts.tcp_established_s;
  timeout_by_state_[static_cast<uint8_t>(FlowState::kClosing)] = timeouts.tcp_transitory_s;
  timeout_by_state_[static_cast<uint8_t>(FlowState::kUdp)] = timeouts.udp_s;
}

namespace {

// Bit s set where (v[s] & keep) == want, for the 8 slots of a bucket array.
unsigned lanes_equal(const uint32_t* v, uint32_t want, uint32_t keep) noexcept {
#ifdef __SSE2__
  // Two compares instead of eight; in-cache lookups measured ~20% faster than the loop,
  // which GCC 12 at -O2 does not vectorise.
  const __m128i w = _mm_set1_epi32(static_cast<int>(want));
  const __m128i k = _mm_set1_epi32(static_cast<int>(keep));
  const auto* p = reinterpret_cast<const __m128i*>(v);
  const __m128i lo = _mm_cmpeq_epi32(_mm_and_si128(_mm_load_si128(p), k), w);
  const __m128i hi = _mm_cmpeq_epi32(_mm_and_si128(_mm_load_si128(p + 1), k), w);
  return static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(lo))) |
         static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(hi))) << 4;
#else
  unsigned match = 0;
  for (uint32_t s = 0; s < 8; ++s) match |= unsigned{(v[s] & keep) == want} << s;
  return match;
#endif
}

}  // namespace

unsigned FlowTable::match_mask(const Bucket& b, uint32_t sig) noexcept {
  static_assert(kSlotsPerBucket == 8);
  return lanes_equal(b.sig, sig, ~0u);
}

unsigned FlowTable::ref_mask(const Bucket& b, uint32_t ref) noexcept {
  // Stale refs stay in free slots (signature 0): only slots in use count.
  return lanes_equal(b.ref, ref, ~kOverflow) & ~match_mask(b, 0) & 0xffu;
}

uint32_t FlowTable::find_in(const Bucket& b, uint32_t sig, const FlowKey& key) const noexcept {
  // Signatures first; an entry is read only on a match (a false match is ~2^-31 per slot).
  for (unsigned match = match_mask(b, sig); match != 0; match &= match - 1) {
    const uint32_t ref = b.ref_at(std::countr_zero(match));
    const FlowEntry& e = entries_[ref >> 1];
    if ((ref & 1) == 0 ? e.fwd == key : e.reverse_key() == key) return ref;
  }
  return kNoSlot;
}

uint32_t FlowTable::find_ref(const FlowKey& key, uint64_t hash) const noexcept {
  const uint32_t sig = signature(hash);
  const uint32_t b1 = primary_bucket(hash);
  const uint32_t ref = find_in(buckets_[b1], sig, key);
  if (ref != kNoSlot || !buckets_[b1].overflowed()) return ref;
  return find_in(buckets_[alt_bucket(b1, sig)], sig, key);
}

bool FlowTable::prefetch_entry(uint64_t hash) const noexcept {
  // The first slot with the key's signature, primary bucket first (where nearly every key
  // sits at sane loads), the alternate only if the primary overflowed. A false signature
  // match (~2^-31 per slot) hiding the real slot only costs this prefetch and the hint:
  // lookup() then scans the buckets.
  const uint32_t sig = signature(hash);
  const uint32_t b1 = primary_bucket(hash);
  const Bucket* bk = &buckets_[b1];
  unsigned match = match_mask(*bk, sig);
  if (match == 0) {
    if (!bk->overflowed()) return false;
    bk = &buckets_[alt_bucket(b1, sig)];
    match = match_mask(*bk, sig);
    if (match == 0) return false;
  }
  const uint32_t ref = bk->ref_at(std::countr_zero(match));
  __builtin_prefetch(&entries_[ref >> 1]);
  hints_[hash & (kHints - 1)] = Hint{hash, ref};
  return true;
}

FlowHit FlowTable::peek(const FlowKey& key, uint64_t hash) const noexcept {
  const uint32_t ref = find_ref(key, hash);
  if (ref == kNoSlot) return {};
  return {&entries_[ref >> 1], static_cast<FlowDir>(ref & 1)};
}

FlowHit FlowTable::lookup_slow(const FlowKey& key, uint64_t hash, uint32_t now_s) noexcept {
  const uint32_t ref = find_ref(key, hash);
  if (ref == kNoSlot) return {};
  FlowEntry* e = &entries_[ref >> 1];
  if (expired(*e, now_s)) {
    remove(e);
    return {};
  }
  return {e, static_cast<FlowDir>(ref & 1)};
}

// Breadth-first search for a chain of moves ending in a free slot (Li et al., "Algorithmic
// Improvements for Fast Concurrent Cuckoo Hashing", EuroSys 2014): searching
// before moving anything means a failure leaves the index as it was, and BFS finds the
// shortest chain. Buckets on one chain are distinct, so each slot moves at most once.
bool FlowTable::make_room(uint32_t b1, uint32_t b2, uint32_t* bucket, uint32_t* slot) noexcept {
  struct Node {
    uint32_t bucket;
    int16_t parent;  // index in `queue`, -1 for a candidate bucket of the new key
    uint8_t slot;    // slot of the parent bucket whose key would move into `bucket`
  };
  // 2 + 16 + 128 nodes cover every chain of two moves; the rest gets part of the third level.
  constexpr int kMaxNodes = 512;
  Node queue[kMaxNodes];
  int tail = 0;
  queue[tail++] = {b1, -1, 0};
  if (b2 != b1) queue[tail++] = {b2, -1, 0};

  for (int head = 0; head < tail; ++head) {
    const Bucket& from = buckets_[queue[head].bucket];
    for (uint32_t s = 0; s < kSlotsPerBucket; ++s) {
      const uint32_t to = alt_bucket(queue[head].bucket, from.sig[s]);
      bool on_chain = false;
      for (int n = head; n >= 0; n = queue[n].parent) on_chain |= queue[n].bucket == to;
      if (on_chain) continue;
      const Bucket& tb = buckets_[to];
      uint32_t free_slot = kSlotsPerBucket;
      for (uint32_t t = 0; t < kSlotsPerBucket; ++t) {
        if (tb.sig[t] == 0) {
          free_slot = t;
          break;
        }
      }
      if (free_slot == kSlotsPerBucket) {
        if (tail < kMaxNodes) {
          queue[tail++] = {to, static_cast<int16_t>(head), static_cast<uint8_t>(s)};
        }
        continue;
      }
      // Found: move keys from the end of the chain back to its start, each into the slot
      // its successor just vacated. A key leaving a bucket may be leaving its primary:
      // flag the bucket it leaves (harmless when it was the alternate).
      uint32_t dst_bucket = to;
      uint32_t dst_slot = free_slot;
      uint32_t src_slot = s;
      for (int n = head; n >= 0; n = queue[n].parent) {
        Bucket& src = buckets_[queue[n].bucket];
        buckets_[dst_bucket].put(dst_slot, src.sig[src_slot], src.ref_at(src_slot));
        src.sig[src_slot] = 0;
        src.mark_overflowed();
        dst_bucket = queue[n].bucket;
        dst_slot = src_slot;
        src_slot = queue[n].slot;
      }
      *bucket = dst_bucket;
      *slot = dst_slot;
      return true;
    }
  }
  return false;
}

bool FlowTable::index_add(uint64_t hash, uint32_t ref) noexcept {
  const uint32_t sig = signature(hash);
  const uint32_t b1 = primary_bucket(hash);
  // Primary bucket first: most keys then sit there and a hit reads a single bucket.
  if (const unsigned free = match_mask(buckets_[b1], 0); free != 0) {
    buckets_[b1].put(std::countr_zero(free), sig, ref);
    return true;
  }
  const uint32_t b2 = alt_bucket(b1, sig);
  if (const unsigned free = match_mask(buckets_[b2], 0); free != 0) {
    buckets_[b2].put(std::countr_zero(free), sig, ref);
    buckets_[b1].mark_overflowed();
    return true;
  }
  uint32_t b = 0;
  uint32_t s = 0;
  if (!make_room(b1, b2, &b, &s)) return false;
  buckets_[b].put(s, sig, ref);
  if (b != b1) buckets_[b1].mark_overflowed();
  return true;
}

void FlowTable::index_del(uint64_t hash, uint32_t ref) noexcept {
  const uint32_t sig = signature(hash);
  const uint32_t b1 = primary_bucket(hash);
  for (uint32_t b : {b1, alt_bucket(b1, sig)}) {
    Bucket& bk = buckets_[b];
    for (uint32_t s = 0; s < kSlotsPerBucket; ++s) {
      if (bk.sig[s] == sig && bk.ref_at(s) == ref) {
        bk.sig[s] = 0;
        return;
      }
    }
  }
  assert(false && "flow key missing from the index");
}

FlowEntry* FlowTable::insert(const FlowKey& fwd, uint64_t fwd_hash, const FlowNat& nat,
                             uint8_t tcp_flags, uint32_t now_s) noexcept {
  assert(fwd_hash == hash_flow_key(fwd, ClientEnd::kSource) && "forward key hashed as such");
  assert(find_ref(fwd, fwd_hash) == kNoSlot && "caller inserts only after a miss");
  const FlowKey rev{nat.backend_ip, fwd.src_ip, nat.backend_port, fwd.src_port, fwd.proto};
  // A flow whose two keys are equal (client == VIP == backend) cannot be told apart by
  // direction; refuse it rather than NAT it both ways.
  if (rev == fwd) return nullptr;
  // The same client end as the forward key: only the signature half differs.
  const uint64_t rev_hash = (uint64_t{flow_signature(rev)} << 32) | (fwd_hash & 0xffffffffULL);
  const uint32_t other = find_ref(rev, rev_hash);
  if (other != kNoSlot) {
    // An expired holder is as good as gone; a live one keeps its key.
    FlowEntry& holder = entries_[other >> 1];
    if (!expired(holder, now_s)) return nullptr;
    remove(&holder);
  }
  // Taken only now: removing the expired holder above pushes onto the free list.
  if (free_head_ == kNoEntry && !evict_unestablished(fwd_hash, rev_hash, now_s)) return nullptr;
  const uint32_t idx = free_head_;
  FlowEntry& e = entries_[idx];

  const uint32_t fwd_ref = idx << 1 | static_cast<uint32_t>(FlowDir::kForward);
  const uint32_t rev_ref = idx << 1 | static_cast<uint32_t>(FlowDir::kReverse);
  // One eviction per key at most: the victim frees a slot in one of the key's buckets.
  // An eviction pushes its entry on the free list ahead of idx, which stays free.
  if (!index_add(fwd_hash, fwd_ref) &&
      !(evict_unestablished(fwd_hash, fwd_hash, now_s) && index_add(fwd_hash, fwd_ref))) {
    return nullptr;
  }
  if (!index_add(rev_hash, rev_ref) &&
      !(evict_unestablished(rev_hash, rev_hash, now_s) && index_add(rev_hash, rev_ref))) {
    index_del(fwd_hash, fwd_ref);
    return nullptr;
  }
  // Evictions above may have pushed their entries on the free list: idx is still free but
  // no longer necessarily its head. Unlink it wherever it sits (it is near the head).
  if (free_head_ == idx) {
    free_head_ = e.created_s;
  } else {
    uint32_t prev = free_head_;
    while (entries_[prev].created_s != idx) prev = entries_[prev].created_s;
    entries_[prev].created_s = e.created_s;
  }

  ++size_;
  used_span_ = std::max(used_span_, idx + 1);
  e.fwd = fwd;
  e.nat = nat;
  e.created_s = now_s;
  e.last_seen_s = now_s;
  e.route_epoch[0] = e.route_epoch[1] = 0;
  recent_ |= uint64_t{1} << (fwd_hash & 63) | uint64_t{1} << (rev_hash & 63);
  if (fwd.proto != kIpProtoTcp) {
    e.state = FlowState::kUdp;
  } else if ((tcp_flags & (kTcpFin | kTcpRst)) != 0) {
    e.state = FlowState::kClosing;
  } else if ((tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn) {
    e.state = FlowState::kSynSent;
  } else {
    e.state = FlowState::kEstablished;
  }
  return &e;
}

bool FlowTable::evict_unestablished(uint64_t hash_a, uint64_t hash_b, uint32_t now_s) noexcept {
  FlowEntry* victim = nullptr;
  bool victim_expired = false;
  for (uint64_t h : {hash_a, hash_b}) {
    const uint32_t b1 = primary_bucket(h);
    for (uint32_t b : {b1, alt_bucket(b1, signature(h))}) {
      const Bucket& bk = buckets_[b];
      for (uint32_t s = 0; s < kSlotsPerBucket; ++s) {
        if (bk.sig[s] == 0) continue;
        FlowEntry& e = entries_[bk.ref_at(s) >> 1];
        if (e.state == kFreeState) continue;  // the entry insert() is adding right now
        const bool exp = expired(e, now_s);
        const bool transitory = e.state == FlowState::kSynSent ||
                                e.state == FlowState::kSynAckSeen || e.state == FlowState::kClosing;
        if (!exp && !transitory) continue;
        if (victim == nullptr || (exp && !victim_expired) ||
            (exp == victim_expired &&
             static_cast<int32_t>(e.last_seen_s - victim->last_seen_s) < 0)) {
          victim = &e;
          victim_expired = exp;
        }
      }
    }
  }
  if (victim == nullptr) return false;
  remove(victim);
  ++evictions_;
  return true;
}

void FlowTable::update(FlowEntry* e, FlowDir dir, uint8_t tcp_flags, uint32_t now_s) noexcept {
  e->last_seen_s = now_s;
  if (e->state == FlowState::kUdp || e->state == FlowState::kClosing) return;
  if ((tcp_flags & (kTcpFin | kTcpRst)) != 0) {
    e->state = FlowState::kClosing;
  } else if (e->state == FlowState::kSynSent) {
    if (dir == FlowDir::kReverse && (tcp_flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck)) {
      e->state = FlowState::kSynAckSeen;
    }
  } else if (e->state == FlowState::kSynAckSeen) {
    if (dir == FlowDir::kForward && (tcp_flags & (kTcpSyn | kTcpAck)) == kTcpAck) {
      e->state = FlowState::kEstablished;
    }
  }
}

void FlowTable::remove(FlowEntry* e) noexcept {
  assert(e->state != kFreeState && "remove of a free entry");
  const auto idx = static_cast<uint32_t>(e - entries_.get());
  if (on_remove_ != nullptr) on_remove_(on_remove_ctx_, *e);
  // Both keys start in the bucket of the client's end, and nearly always stay there: find
  // their slots by ref, with no signature and so no hash of the whole key; only a key moved
  // to its alternate bucket needs its full hash to find that bucket.
  const uint32_t fwd_ref = idx << 1 | static_cast<uint32_t>(FlowDir::kForward);
  const uint32_t rev_ref = idx << 1 | static_cast<uint32_t>(FlowDir::kReverse);
  Bucket& b1 = buckets_[primary_bucket(hash_client_end(e->fwd, ClientEnd::kSource))];
  if (const unsigned m = ref_mask(b1, fwd_ref); m != 0) {
    b1.sig[std::countr_zero(m)] = 0;
  } else {
    index_del(hash_flow_key(e->fwd, ClientEnd::kSource), fwd_ref);
  }
  if (const unsigned m = ref_mask(b1, rev_ref); m != 0) {
    b1.sig[std::countr_zero(m)] = 0;
  } else {
    index_del(hash_flow_key(e->reverse_key(), ClientEnd::kDestination), rev_ref);
  }
  e->state = kFreeState;
  e->created_s = free_head_;
  free_head_ = idx;
  --size_;
}

uint32_t FlowTable::expire(uint32_t now_s, uint32_t budget) noexcept {
  // In chunks: first find the expired entries of a chunk and start loading the bucket of
  // their keys, then remove them, so the (random, cold) bucket misses of a chunk overlap
  // instead of costing one full miss each, one after the other.
  constexpr uint32_t kChunk = 32;
  uint32_t removed = 0;
  for (uint32_t left = std::min(budget, used_span_); left > 0;) {
    const uint32_t chunk = std::min(left, kChunk);
    left -= chunk;
    uint32_t found[kChunk];
    uint32_t n = 0;
    for (uint32_t k = 0; k < chunk; ++k) {
      const FlowEntry& e = entries_[hand_];
      if (e.state != kFreeState && expired(e, now_s)) {
        prefetch(hash_client_end(e.fwd, ClientEnd::kSource));
        found[n++] = hand_;
      }
      hand_ = hand_ + 1 == used_span_ ? 0 : hand_ + 1;
    }
    for (uint32_t i = 0; i < n; ++i) remove(&entries_[found[i]]);
    removed += n;
  }
  return removed;
}

}  // namespace l4lb
