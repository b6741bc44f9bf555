// A token bucket for the data path's log lines: at most `per_second` lines a second, in
// bursts of at most that many; what it refuses is counted, so the next line can say how
// many were suppressed. One per worker; worker-safe, no allocation, no clock of its own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

namespace l4lb {

class LogRateLimit {
 public:
  // `hz`: ticks per second of the clock the caller passes to allow() (the TSC).
  void configure(uint32_t per_second, uint64_t hz, uint64_t now) noexcept {
    capacity_ = hz;
    cost_ = per_second == 0 ? hz + 1 : hz / per_second;
    tokens_ = capacity_;
    last_ = now;
  }
  bool allow(uint64_t now) noexcept {
    if (now > last_) tokens_ = std::min(capacity_, tokens_ + (now - last_));
    last_ = std::max(last_, now);
    if (tokens_ >= cost_) {
      tokens_ -= cost_;
      return true;
    }
    ++suppressed_;
    return false;
  }
  // Lines refused since the last call.
  uint64_t take_suppressed() noexcept { return std::exchange(suppressed_, 0); }

 private:
  uint64_t capacity_ = 0;
  uint64_t cost_ = 1;
  uint64_t tokens_ = 0;
  uint64_t last_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace l4lb
