#include "lb/expiry_pace.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace l4lb {
namespace {

// Polls every `step` ticks for `total` ticks; returns the slots scanned.
uint64_t run(ExpiryPace& p, uint32_t span, uint64_t start, uint64_t step, uint64_t total) {
  uint64_t slots = 0;
  for (uint64_t t = start; t <= start + total; t += step) slots += p.due(t, span);
  return slots;
}

TEST(ExpiryPace, OneSweepPerPeriodWhateverThePollRate) {
  for (uint64_t step : {7ull, 1000ull, 99991ull}) {
    ExpiryPace p(200'000'000, 1u << 30);
    const uint64_t slots = run(p, 1u << 20, 5, step, 200'000'000);
    // Fractions carry over between polls: within one slot of a sweep (the last partial step
    // may be missing).
    EXPECT_NEAR(double(slots), double(1u << 20), double(step) * (1u << 20) / 2e8 + 1) << step;
  }
}

TEST(ExpiryPace, SmallTablesScanFewSlots) {
  // 65536 slots every 15 s (a 30 s transitory timeout), polled every microsecond at 3 GHz:
  // a slot every ~70 polls, not 32 per poll.
  ExpiryPace p(45'000'000'000ull, 1024);
  uint64_t slots = 0;
  uint32_t polls_with_work = 0;
  for (uint64_t t = 0; t < 3'000'000'000ull; t += 3000) {
    const uint32_t d = p.due(t, 65536);
    slots += d;
    polls_with_work += d != 0;
  }
  EXPECT_NEAR(double(slots), 65536.0 / 15, 2);
  EXPECT_LT(polls_with_work, 5000u);
}

TEST(ExpiryPace, CapPerCallAndBoundedBacklog) {
  ExpiryPace p(1000, 10);
  EXPECT_EQ(p.due(0, 1000), 0u);     // starts the clock
  EXPECT_EQ(p.due(500, 1000), 10u);  // 500 owed, 10 allowed
  EXPECT_EQ(p.due(500, 1000), 10u);  // the backlog is paid off at the cap
  // A very long gap owes at most one sweep, and never overflows.
  EXPECT_EQ(p.due(UINT64_MAX / 2, 1000), 10u);
  uint64_t paid = 0;
  for (int i = 0; i < 200; ++i) paid += p.due(UINT64_MAX / 2, 1000);
  EXPECT_LE(paid, 1000u);
  EXPECT_GE(paid, 900u);
}

TEST(ExpiryPace, ZeroCapacityOrPeriodIsHarmless) {
  ExpiryPace empty(1000, 10);
  EXPECT_EQ(run(empty, 0, 0, 1, 10000), 0u);
  ExpiryPace instant(0, 1000);  // treated as one tick: a sweep per tick
  instant.due(0, 100);
  EXPECT_EQ(instant.due(1, 100), 100u);
}

TEST(ExpiryPace, TheRateFollowsTheSpan) {
  // A table whose used span grows from 1,000 to 4,000 slots halfway through a period:
  // half a sweep of each, at the rate of the span of the moment.
  ExpiryPace p(1'000'000, 1u << 30);
  const uint64_t first = run(p, 1000, 0, 1000, 500'000);
  const uint64_t second = run(p, 4000, 501'000, 1000, 499'000);
  EXPECT_NEAR(double(first), 500.0, 1);
  EXPECT_NEAR(double(second), 2000.0, 5);
}

}  // namespace
}  // namespace l4lb
