#include "lb/expiry_pace.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace l4lb {
namespace {

// Polls every `step` ticks for `total` ticks; returns the slots scanned.
uint64_t run(ExpiryPace& p, uint64_t start, uint64_t step, uint64_t total) {
  uint64_t slots = 0;
  for (uint64_t t = start; t <= start + total; t += step) slots += p.due(t);
  return slots;
}

TEST(ExpiryPace, OneSweepPerPeriodWhateverThePollRate) {
  for (uint64_t step : {7ull, 1000ull, 99991ull}) {
    ExpiryPace p(1u << 20, 200'000'000, 1u << 30);
    const uint64_t slots = run(p, 5, step, 200'000'000);
    // Fractions carry over between polls: within one slot of a sweep (the last partial step
    // may be missing).
    EXPECT_NEAR(double(slots), double(1u << 20), double(step) * (1u << 20) / 2e8 + 1) << step;
  }
}

TEST(ExpiryPace, SmallTablesScanFewSlots) {
  // 65536 slots every 15 s (a 30 s transitory timeout), polled every microsecond at 3 GHz:
  // a slot every ~70 polls, not 32 per poll.
  ExpiryPace p(65536, 45'000'000'000ull, 1024);
  uint64_t slots = 0;
  uint32_t polls_with_work = 0;
  for (uint64_t t = 0; t < 3'000'000'000ull; t += 3000) {
    const uint32_t d = p.due(t);
    slots += d;
    polls_with_work += d != 0;
  }
  EXPECT_NEAR(double(slots), 65536.0 / 15, 2);
  EXPECT_LT(polls_with_work, 5000u);
}

TEST(ExpiryPace, CapPerCallAndBoundedBacklog) {
  ExpiryPace p(1000, 1000, 10);
  EXPECT_EQ(p.due(0), 0u);             // starts the clock
  EXPECT_EQ(p.due(500), 10u);          // 500 owed, 10 allowed
  EXPECT_EQ(p.due(500), 10u);          // the backlog is paid off at the cap
  // A very long gap owes at most one sweep, and never overflows.
  EXPECT_EQ(p.due(UINT64_MAX / 2), 10u);
  uint64_t paid = 0;
  for (int i = 0; i < 200; ++i) paid += p.due(UINT64_MAX / 2);
  EXPECT_LE(paid, 1000u);
  EXPECT_GE(paid, 900u);
}

TEST(ExpiryPace, ZeroCapacityOrPeriodIsHarmless) {
  ExpiryPace empty(0, 1000, 10);
  EXPECT_EQ(run(empty, 0, 1, 10000), 0u);
  ExpiryPace instant(100, 0, 1000);  // treated as one tick: a sweep per tick
  instant.due(0);
  EXPECT_EQ(instant.due(1), 100u);
}

}  // namespace
}  // namespace l4lb
