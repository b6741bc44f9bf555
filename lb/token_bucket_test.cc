#include "lb/token_bucket.h"

#include <gtest/gtest.h>

namespace l4lb {
namespace {

TEST(TokenBucket, BurstThenRate) {
  TokenBucket b(10, 5, 1000);  // 10/s, burst 5, clock in ms
  uint64_t t = 1'000'000;
  int n = 0;
  while (b.take(t)) ++n;
  EXPECT_EQ(n, 5);
  EXPECT_FALSE(b.take(t + 99));
  EXPECT_TRUE(b.take(t + 100));
  EXPECT_FALSE(b.take(t + 100));
  // Over 10 s of constant demand: 10 per second.
  n = 0;
  for (uint64_t ms = 101; ms <= 10'100; ++ms) n += b.take(t + ms);
  EXPECT_EQ(n, 100);
}

TEST(TokenBucket, RefillIsCappedAtTheBurst) {
  TokenBucket b(100, 3, 1'000'000);
  uint64_t t = 5;
  while (b.take(t)) {
  }
  t += 60'000'000;  // a minute idle
  int n = 0;
  while (b.take(t)) ++n;
  EXPECT_EQ(n, 3);
}

}  // namespace
}  // namespace l4lb
