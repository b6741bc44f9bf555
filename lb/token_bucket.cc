#include "lb/token_bucket.h"

namespace l4lb {

TokenBucket::TokenBucket(uint32_t rate_per_s, uint32_t burst, uint64_t ticks_per_s) noexcept
    : ticks_per_token_(ticks_per_s / (rate_per_s != 0 ? rate_per_s : 1)),
      burst_ticks_(ticks_per_token_ * burst) {
  if (ticks_per_token_ == 0) ticks_per_token_ = 1;
}

// The bucket is a single timestamp: tokens = (now - last_) / ticks_per_token_, capped at the
// burst by never letting last_ fall further than burst_ticks_ behind now. Unsigned
// differences keep it right when last_ wraps below zero at start.
bool TokenBucket::take(uint64_t now_ticks) noexcept {
  if (!started_) {
    started_ = true;
    last_ = now_ticks - burst_ticks_;
  }
  if (now_ticks - last_ > burst_ticks_) last_ = now_ticks - burst_ticks_;
  if (now_ticks - last_ < ticks_per_token_) return false;
  last_ += ticks_per_token_;
  return true;
}

}  // namespace l4lb
