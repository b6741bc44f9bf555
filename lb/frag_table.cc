#include "lb/frag_table.h"

#include <bit>

#include "lb/flow_key.h"

namespace l4lb {

FragTable::FragTable(uint32_t capacity, uint32_t max_held, uint32_t timeout_s)
    : size_(std::bit_ceil(capacity < kWays ? kWays : capacity)),
      mask_(size_ - 1),
      max_held_(max_held),
      timeout_s_(timeout_s) {
  entries_ = std::make_unique<Entry[]>(size_);
}

FragTable::Entry* FragTable::find_or_claim(const FragKey& key, uint32_t now_s,
                                           bool* found) noexcept {
  reclaimed_count = 0;
  const uint64_t h =
      mix64((uint64_t{key.src} << 32 | key.dst) ^ (uint64_t{key.id} << 8 | key.proto));
  Entry* bucket = &entries_[(static_cast<uint32_t>(h) * kWays) & mask_];
  Entry* spare = nullptr;
  for (uint32_t w = 0; w < kWays; ++w) {
    Entry& e = bucket[w];
    if (e.state != State::kFree && e.key == key) {
      if (!expired(e, now_s)) {
        *found = true;
        return &e;
      }
      spare = &e;  // the same datagram id reused after a timeout: a new datagram
      break;
    }
    if (spare == nullptr && (e.state == State::kFree || expired(e, now_s))) spare = &e;
  }
  *found = false;
  if (spare == nullptr) return nullptr;
  if (spare->state != State::kFree) {
    for (uint8_t i = 0; i < spare->held; ++i) reclaimed[reclaimed_count++] = spare->pkts[i];
    held_total_ -= spare->held;
    --live_;
  }
  spare->key = key;
  spare->state = State::kPending;
  spare->held = 0;
  spare->last_s = now_s;
  ++live_;
  return spare;
}

FragTable::Verdict FragTable::later(const FragKey& key, uint32_t now_s, void* pkt,
                                    FragDecision* decision) noexcept {
  bool found = false;
  Entry* e = find_or_claim(key, now_s, &found);
  if (e == nullptr) return Verdict::kTableFull;
  e->last_s = now_s;
  if (e->state == State::kDecided) {
    *decision = e->decision;
    return Verdict::kForward;
  }
  if (e->held == kHoldPerEntry || held_total_ >= max_held_) return Verdict::kHoldFull;
  e->pkts[e->held++] = pkt;
  ++held_total_;
  return Verdict::kHeld;
}

int FragTable::first(const FragKey& key, const FragDecision& decision, uint32_t now_s,
                     void** released) noexcept {
  bool found = false;
  Entry* e = find_or_claim(key, now_s, &found);
  if (e == nullptr) return -1;
  e->last_s = now_s;
  e->decision = decision;
  e->state = State::kDecided;
  const int n = e->held;
  for (int i = 0; i < n; ++i) released[i] = e->pkts[i];
  held_total_ -= e->held;
  e->held = 0;
  return n;
}

}  // namespace l4lb
