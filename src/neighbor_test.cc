// NeighborTable's slot hint (resolved_at), which the worker's fast lane uses instead of a
// hash probe: it must never name a MAC that lookup() would not.
#include "src/neighbor.h"

#include <gtest/gtest.h>

namespace l4lb {
namespace {

constexpr uint64_t kHz = 1'000'000;  // a 1 MHz "TSC": reachable for 60 s = 60e6 ticks
constexpr uint32_t kIp = 0x0a80000b;
constexpr MacAddr kMac{{0x02, 0, 0, 0, 0, 0x0b}};
constexpr MacAddr kOtherMac{{0x02, 0, 0, 0, 0, 0x0c}};

TEST(NeighborTable, ResolvedAtFollowsTheEntry) {
  NeighborTable t(kHz);
  t.learn(kIp, kMac, true, 0, nullptr);
  const NeighborTable::Lookup l = t.lookup(kIp, 1);
  ASSERT_NE(l.mac, nullptr);
  ASSERT_EQ(*l.mac, kMac);
  const MacAddr* m = t.resolved_at(l.slot, kIp, 2);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(*m, kMac);
  // Another address, or the slot of nothing: no answer.
  EXPECT_EQ(t.resolved_at(l.slot, kIp + 1, 2), nullptr);
  EXPECT_EQ(t.resolved_at(static_cast<uint16_t>(l.slot + 1), kIp, 2), nullptr);
  // A new MAC for the address is seen through the hint at once.
  t.learn(kIp, kOtherMac, false, 3, nullptr);
  m = t.resolved_at(l.slot, kIp, 4);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(*m, kOtherMac);
}

TEST(NeighborTable, ResolvedAtLeavesTheRefreshToLookup) {
  NeighborTable t(kHz);
  t.learn(kIp, kMac, true, 0, nullptr);
  const uint16_t slot = t.lookup(kIp, 1).slot;
  const uint64_t stale = 61 * kHz;  // past the reachable time
  EXPECT_EQ(t.resolved_at(slot, kIp, stale), nullptr);
  const NeighborTable::Lookup l = t.lookup(kIp, stale);
  ASSERT_NE(l.mac, nullptr);
  EXPECT_TRUE(l.refresh);
}

TEST(NeighborTable, StaticEntriesNeverGoStale) {
  NeighborTable t(kHz);
  t.set_static(kIp, kMac, nullptr);
  const uint16_t slot = t.lookup(kIp, 1).slot;
  const MacAddr* m = t.resolved_at(slot, kIp, 1000 * kHz);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(*m, kMac);
}

}  // namespace
}  // namespace l4lb
