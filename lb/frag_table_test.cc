#include "lb/frag_table.h"

#include <gtest/gtest.h>

#include <vector>

namespace l4lb {
namespace {

FragKey key(uint16_t id, uint32_t src = 0x0a000001) { return FragKey{src, 0x64000001, id, 17}; }
void* pkt(uintptr_t n) { return reinterpret_cast<void*>(n); }

TEST(FragTable, InOrderLaterFragmentsFollowTheFirst) {
  FragTable t(64, 256, 5);
  void* released[FragTable::kHoldPerEntry];
  ASSERT_EQ(t.first(key(1), FragDecision{true, 0x0b}, 100, released), 0);
  FragDecision d;
  EXPECT_EQ(t.later(key(1), 100, pkt(1), &d), FragTable::Verdict::kForward);
  EXPECT_TRUE(d.rewrite_dst);
  EXPECT_EQ(d.ip, 0x0bu);
  EXPECT_EQ(t.later(key(1), 101, pkt(2), &d), FragTable::Verdict::kForward);
  EXPECT_EQ(t.held(), 0u);
  EXPECT_EQ(t.live(), 1u);
}

TEST(FragTable, OutOfOrderFragmentsAreHeldThenReleasedInArrivalOrder) {
  FragTable t(64, 256, 5);
  FragDecision d;
  EXPECT_EQ(t.later(key(7), 10, pkt(3), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.later(key(7), 10, pkt(2), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.held(), 2u);
  void* released[FragTable::kHoldPerEntry];
  ASSERT_EQ(t.first(key(7), FragDecision{false, 0x0c}, 11, released), 2);
  EXPECT_EQ(released[0], pkt(3));
  EXPECT_EQ(released[1], pkt(2));
  EXPECT_EQ(t.held(), 0u);
  EXPECT_EQ(t.later(key(7), 11, pkt(4), &d), FragTable::Verdict::kForward);
  EXPECT_FALSE(d.rewrite_dst);
}

TEST(FragTable, DatagramsAreKeyedBySrcDstIdProto) {
  FragTable t(64, 256, 5);
  void* released[FragTable::kHoldPerEntry];
  ASSERT_EQ(t.first(key(1), FragDecision{true, 0x0b}, 0, released), 0);
  FragDecision d;
  EXPECT_EQ(t.later(key(2), 0, pkt(1), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.later(key(1, 0x0a000002), 0, pkt(2), &d), FragTable::Verdict::kHeld);
  FragKey other_proto = key(1);
  other_proto.proto = 6;
  EXPECT_EQ(t.later(other_proto, 0, pkt(3), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.live(), 4u);
}

TEST(FragTable, HoldIsBoundedPerDatagramAndInAll) {
  FragTable t(64, 10, 5);
  FragDecision d;
  for (uintptr_t i = 0; i < FragTable::kHoldPerEntry; ++i) {
    EXPECT_EQ(t.later(key(1), 0, pkt(i + 1), &d), FragTable::Verdict::kHeld);
  }
  EXPECT_EQ(t.later(key(1), 0, pkt(99), &d), FragTable::Verdict::kHoldFull);
  EXPECT_EQ(t.later(key(2), 0, pkt(100), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.later(key(3), 0, pkt(101), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.held(), 10u);
  EXPECT_EQ(t.later(key(4), 0, pkt(102), &d), FragTable::Verdict::kHoldFull);
}

TEST(FragTable, FullBucketRefusesNewDatagramsUntilTheyExpire) {
  FragTable t(4, 256, 5);  // one bucket of 4
  void* released[FragTable::kHoldPerEntry];
  for (uint16_t id = 0; id < 4; ++id) ASSERT_EQ(t.first(key(id), {}, 0, released), 0);
  FragDecision d;
  EXPECT_EQ(t.later(key(9), 5, pkt(1), &d), FragTable::Verdict::kTableFull);
  EXPECT_EQ(t.first(key(9), {}, 5, released), -1);
  // Past the timeout an old entry is reused.
  EXPECT_EQ(t.later(key(9), 6, pkt(1), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.live(), 4u);
}

TEST(FragTable, ExpiryDropsHeldFragments) {
  FragTable t(64, 256, 5);
  FragDecision d;
  EXPECT_EQ(t.later(key(1), 0, pkt(1), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.later(key(1), 1, pkt(2), &d), FragTable::Verdict::kHeld);
  EXPECT_EQ(t.later(key(2), 4, pkt(3), &d), FragTable::Verdict::kHeld);
  std::vector<void*> dropped;
  auto drop = [&](void* p) { dropped.push_back(p); };
  EXPECT_EQ(t.expire(6, 64, drop), 0u);  // 5 s after the last fragment: still alive
  EXPECT_EQ(t.expire(7, 64, drop), 1u);
  EXPECT_EQ(dropped, (std::vector<void*>{pkt(1), pkt(2)}));
  EXPECT_EQ(t.held(), 1u);
  EXPECT_EQ(t.live(), 1u);
  EXPECT_EQ(t.expire(100, 64, drop), 1u);
  EXPECT_EQ(t.held(), 0u);
  EXPECT_EQ(t.live(), 0u);
}

TEST(FragTable, ReusingAnExpiredEntryHandsBackItsFragments) {
  FragTable t(4, 256, 5);
  FragDecision d;
  for (uint16_t id = 0; id < 4; ++id) {
    ASSERT_EQ(t.later(key(id), 0, pkt(id + 1), &d), FragTable::Verdict::kHeld);
  }
  EXPECT_EQ(t.later(key(9), 10, pkt(50), &d), FragTable::Verdict::kHeld);
  ASSERT_EQ(t.reclaimed_count, 1u);
  EXPECT_EQ(t.reclaimed[0], pkt(1));
  EXPECT_EQ(t.held(), 4u);
}

}  // namespace
}  // namespace l4lb
