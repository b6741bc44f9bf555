// The data path's log-line limit: lb/token_bucket at `per_second` lines a second, in bursts
// of at most that many (0: none); what it refuses is counted, so the next line can say how
// many were suppressed. One per worker; worker-safe, no allocation, no clock of its own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "lb/token_bucket.h"

namespace l4lb {

class LogRateLimit {
 public:
  // `hz`: ticks per second of the clock the caller passes to allow() (the TSC).
  void configure(uint32_t per_second, uint64_t hz, uint64_t /*now*/) noexcept {
    per_second_ = per_second;
    bucket_ = TokenBucket(per_second, std::max<uint32_t>(per_second, 1), hz);
  }
  bool allow(uint64_t now) noexcept {
    if (per_second_ != 0 && bucket_.take(now)) return true;
    ++suppressed_;
    return false;
  }
  // Lines refused since the last call.
  uint64_t take_suppressed() noexcept { return std::exchange(suppressed_, 0); }

 private:
  uint32_t per_second_ = 0;
  TokenBucket bucket_{1, 1, 1};
  uint64_t suppressed_ = 0;
};

}  // namespace l4lb
