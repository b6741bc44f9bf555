// Per-worker IPv4 fragment table: non-first fragments carry no ports, so they follow the
// decision the first fragment of their datagram got (which address to rewrite, to what),
// as Maglev does (Eisenbud et al., NSDI 2016, section 4.3) instead of reassembling. Fragments
// that arrive before their first are held, a few per datagram and a bounded number in all,
// until the first arrives or the entry expires. Fixed size, allocated at construction;
// owned by one worker: worker-safe for that worker only.
#pragma once

#include <cstdint>
#include <memory>

namespace l4lb {

// A datagram: RFC 791 section 3.2 identifies fragments by (source, destination, protocol,
// identification). Addresses and id in network order, as carried.
struct FragKey {
  uint32_t src;
  uint32_t dst;
  uint16_t id;
  uint8_t proto;
  bool operator==(const FragKey&) const = default;
};

// Which address the datagram's packets get: the destination (DNAT to a backend) or the
// source (reverse NAT to a VIP), and the new address (network order).
struct FragDecision {
  bool rewrite_dst = true;
  uint32_t ip = 0;
};

class FragTable {
 public:
  static constexpr uint32_t kWays = 4;          // entries per bucket
  static constexpr uint32_t kHoldPerEntry = 8;  // fragments held for one datagram

  // capacity: datagrams tracked at once (rounded up to a power of two, at least kWays);
  // max_held: fragments held at once over all datagrams; timeout_s: an entry's lifetime
  // after its last fragment.
  FragTable(uint32_t capacity, uint32_t max_held, uint32_t timeout_s);

  enum class Verdict : uint8_t {
    kForward,    // decided: rewrite per *decision
    kHeld,       // kept until the first fragment arrives
    kTableFull,  // no entry free for a new datagram: the caller drops it
    kHoldFull,   // the datagram's or the table's hold limit reached: the caller drops it
  };
  // A non-first fragment. On kHeld the table keeps `pkt` (opaque to it).
  Verdict later(const FragKey& key, uint32_t now_s, void* pkt, FragDecision* decision) noexcept;

  // The first fragment was forwarded with `decision`: records it for the rest of the
  // datagram and moves the fragments held for it to released[] (room for kHoldPerEntry).
  // Returns how many; or -1 when no entry was free (the rest of the datagram then finds no
  // decision and is dropped).
  int first(const FragKey& key, const FragDecision& decision, uint32_t now_s,
            void** released) noexcept;

  // Removes expired entries among the next `budget` (clock hand); each fragment they held
  // is passed to drop(pkt). Returns the number of entries removed.
  template <class Drop>
  uint32_t expire(uint32_t now_s, uint32_t budget, Drop&& drop) noexcept {
    uint32_t removed = 0;
    for (uint32_t n = budget < size_ ? budget : size_; n > 0; --n) {
      Entry& e = entries_[hand_];
      hand_ = (hand_ + 1) & mask_;
      if (e.state == State::kFree || !expired(e, now_s)) continue;
      for (uint8_t i = 0; i < e.held; ++i) drop(e.pkts[i]);
      held_total_ -= e.held;
      e.held = 0;
      e.state = State::kFree;
      --live_;
      ++removed;
    }
    return removed;
  }

  // Fragments an expired entry still held when later()/first() reused it for a new
  // datagram; the caller drops them (as timed out) right after that call.
  void* reclaimed[kHoldPerEntry];
  uint32_t reclaimed_count = 0;

  uint32_t live() const noexcept { return live_; }
  uint32_t held() const noexcept { return held_total_; }
  uint32_t capacity() const noexcept { return size_; }

 private:
  enum class State : uint8_t { kFree, kPending, kDecided };
  struct Entry {
    FragKey key;
    State state = State::kFree;
    uint8_t held = 0;
    uint32_t last_s = 0;
    FragDecision decision;
    void* pkts[kHoldPerEntry];
  };
  bool expired(const Entry& e, uint32_t now_s) const noexcept {
    return static_cast<int32_t>(now_s - e.last_s) > static_cast<int32_t>(timeout_s_);
  }
  // The entry of `key`, or a free or expired one of its bucket claimed for it (an expired
  // one's fragments go to reclaimed[]); nullptr when the bucket is full of live datagrams.
  Entry* find_or_claim(const FragKey& key, uint32_t now_s, bool* found) noexcept;

  std::unique_ptr<Entry[]> entries_;
  uint32_t size_;
  uint32_t mask_;
  uint32_t max_held_;
  uint32_t timeout_s_;
  uint32_t live_ = 0;
  uint32_t held_total_ = 0;
  uint32_t hand_ = 0;
};

}  // namespace l4lb
