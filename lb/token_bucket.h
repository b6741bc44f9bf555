// Token bucket rate limiter (RFC 1812 section 4.3.2.8 asks routers to limit the ICMP errors
// they send): `rate` tokens per second up to `burst`, time passed in by the caller (TSC
// cycles in the data path, anything monotonic in tests). One per worker: no locks.
#pragma once

#include <cstdint>

namespace l4lb {

class TokenBucket {
 public:
  // ticks_per_s: the clock's frequency; starts full.
  TokenBucket(uint32_t rate_per_s, uint32_t burst, uint64_t ticks_per_s) noexcept;
  // Takes one token if there is one.
  bool take(uint64_t now_ticks) noexcept;

 private:
  uint64_t ticks_per_token_;
  uint64_t burst_ticks_;  // the span of time a full bucket stands for
  uint64_t last_ = 0;     // the time at which the bucket held zero tokens, shifted by use
  bool started_ = false;
};

}  // namespace l4lb
