// How many flow-table slots the expiry hand scans on each poll: enough to sweep the table's
// used span once per period, in slices proportional to the time since the last poll. A fixed
// number per poll would sweep a small table thousands of times a second and a large one
// too slowly under a flood of short-lived flows; this costs the same per second whatever
// the packet rate. Worker-safe (one per worker).
#pragma once

#include <algorithm>
#include <cstdint>

namespace l4lb {

class ExpiryPace {
 public:
  // period_ticks > 0: one full sweep per period. At most max_per_call slots per call; a
  // backlog beyond one full sweep is dropped (expired entries are also reclaimed by the
  // lookups and inserts that meet them).
  ExpiryPace(uint64_t period_ticks, uint32_t max_per_call) noexcept
      : period_(std::max<uint64_t>(period_ticks, 1)), max_per_call_(max_per_call) {}

  // now_ticks: a clock that does not go back (the TSC). The first call starts the clock.
  // span: the slots one sweep covers now (the table's used span: it only grows, so the
  // rate is recomputed, a division, only when it does).
  uint32_t due(uint64_t now_ticks, uint32_t span) noexcept {
    if (span != span_) {
      span_ = span;
      rate_ = (uint64_t{span} << 32) / period_;  // slots per tick, 32.32; span < 2^32 fits
    }
    if (!started_) {
      started_ = true;
      last_ = now_ticks;
      return 0;
    }
    // Clamped so elapsed * rate stays below span << 32 (no overflow after long gaps).
    const uint64_t elapsed = std::min(now_ticks - last_, period_);
    last_ = now_ticks;
    acc_ = std::min(acc_ + elapsed * rate_, uint64_t{span} << 32);
    const auto slots = static_cast<uint32_t>(std::min<uint64_t>(acc_ >> 32, max_per_call_));
    acc_ -= uint64_t{slots} << 32;
    return slots;
  }

 private:
  uint64_t period_;
  uint32_t max_per_call_;
  uint32_t span_ = 0;
  uint64_t rate_ = 0;
  uint64_t acc_ = 0;  // slots owed, 32.32 fixed point
  uint64_t last_ = 0;
  bool started_ = false;
};

}  // namespace l4lb
