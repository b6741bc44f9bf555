#include "lb/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <random>
#include <vector>

namespace l4lb {
namespace {

constexpr uint32_t ipv4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return a << 24 | b << 16 | c << 8 | d;
}

// 10.0.0.1 .. 10.0.0.n, or 10.0.x.y beyond 254, all weight 1.
std::vector<MaglevBackend> pool(uint32_t n) {
  std::vector<MaglevBackend> v;
  for (uint32_t i = 1; i <= n; ++i) v.push_back({ipv4(10, 0, i / 256, i % 256), 1});
  return v;
}

uint32_t owner_ip(const MaglevTable& t, uint32_t slot) { return t.backends()[t.slots()[slot]].ip; }

// Slots owned before by a backend that is still in `after`, whose owner changed: the
// disruption the paper's section 3.4 calls "minimal". Slots of a removed backend must move
// and are not counted.
uint32_t moved_survivor_slots(const MaglevTable& before, const MaglevTable& after) {
  uint32_t moved = 0;
  for (uint32_t s = 0; s < before.size(); ++s) {
    const uint32_t ip = owner_ip(before, s);
    const bool survives = std::any_of(after.backends().begin(), after.backends().end(),
                                      [ip](const MaglevBackend& b) { return b.ip == ip; });
    if (survives && owner_ip(after, s) != ip) ++moved;
  }
  return moved;
}

void expect_full(const MaglevTable& t) {
  ASSERT_FALSE(t.empty());
  for (uint16_t s : t.slots()) {
    ASSERT_NE(s, MaglevTable::kEmptySlot);
    ASSERT_LT(s, t.backends().size());
  }
}

TEST(Maglev, NoEmptySlotsAtDefaultAndSmallPrimes) {
  for (uint32_t m : {13u, 251u, MaglevTable::kDefaultSize}) {
    for (uint32_t n : {1u, 2u, 3u, 10u}) {
      SCOPED_TRACE(testing::Message() << "M=" << m << " N=" << n);
      MaglevTable t(pool(n), m);
      EXPECT_EQ(t.size(), m);
      ASSERT_EQ(t.slots().size(), m);
      expect_full(t);
    }
  }
  // More backends than slots: still full, some backends just own nothing.
  MaglevTable crowded(pool(20), 13);
  expect_full(crowded);
}

TEST(Maglev, DefaultSizeIs65537) {
  MaglevTable t(pool(3));
  EXPECT_EQ(t.size(), 65537u);
}

TEST(Maglev, EqualWeightsWithinOneSlot) {
  for (uint32_t n : {3u, 7u, 10u, 100u}) {
    SCOPED_TRACE(testing::Message() << "N=" << n);
    MaglevTable t(pool(n));
    const auto counts = t.slot_counts();
    ASSERT_EQ(counts.size(), n);
    const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
    EXPECT_LE(*hi - *lo, 1u);
  }
}

TEST(Maglev, EqualNonUnitWeightsBehaveLikeUnitWeights) {
  auto heavy = pool(7);
  for (auto& b : heavy) b.weight = 5;
  MaglevTable a(pool(7));
  MaglevTable b(heavy);
  EXPECT_TRUE(std::ranges::equal(a.slots(), b.slots()));
}

void expect_shares_follow_weights(const std::vector<uint32_t>& weights) {
  std::vector<MaglevBackend> backends;
  uint64_t total = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    backends.push_back({ipv4(10, 1, 0, static_cast<uint32_t>(i + 1)), weights[i]});
    total += weights[i];
  }
  MaglevTable t(backends);
  expect_full(t);
  const auto counts = t.slot_counts();
  for (size_t i = 0; i < weights.size(); ++i) {
    const double share = static_cast<double>(counts[i]) / t.size();
    const double want = static_cast<double>(weights[i]) / total;
    EXPECT_NEAR(share, want, 0.01) << "weight " << weights[i];
  }
}

TEST(Maglev, WeightedSharesWithinOnePercent) {
  expect_shares_follow_weights({1, 2, 3, 4});
  expect_shares_follow_weights({1, 10});
  expect_shares_follow_weights({1000, 1, 1, 500});
}

TEST(Maglev, RemovingOneOfTenMovesFewSurvivorSlots) {
  auto all = pool(10);
  auto survivors = all;
  survivors.erase(survivors.begin() + 4);  // drop 10.0.0.5
  MaglevTable before(all);
  MaglevTable after(survivors);
  expect_full(after);
  const uint32_t moved = moved_survivor_slots(before, after);
  const uint32_t removed_owned = before.slot_counts()[4];
  std::printf(
      "remove 1 of 10, M=65537: %u surviving slots moved, %u slots of the removed "
      "backend, %u changed in all\n",
      moved, removed_owned, maglev_slots_changed(before, after));
  EXPECT_EQ(moved, 154u);
  EXPECT_EQ(removed_owned, 6554u);
  EXPECT_LT(moved, before.size() / 50);
  EXPECT_EQ(maglev_slots_changed(before, after), moved + removed_owned);
}

TEST(Maglev, AddingOneToTenMovesFewSlots) {
  auto all = pool(10);
  auto grown = all;
  grown.push_back({ipv4(10, 0, 0, 11), 1});
  MaglevTable before(all);
  MaglevTable after(grown);
  // Slots the new backend takes must change; count only moves between old backends.
  uint32_t moved = 0;
  for (uint32_t s = 0; s < before.size(); ++s) {
    if (owner_ip(after, s) != ipv4(10, 0, 0, 11) && owner_ip(after, s) != owner_ip(before, s)) {
      ++moved;
    }
  }
  const uint32_t new_owned = after.slot_counts()[10];
  std::printf(
      "add 1 to 10, M=65537: %u slots moved between old backends, %u to the new one, "
      "%u changed in all\n",
      moved, new_owned, maglev_slots_changed(before, after));
  EXPECT_EQ(moved, 152u);
  EXPECT_EQ(new_owned, 5957u);
  EXPECT_LT(moved, before.size() / 50);
  EXPECT_EQ(maglev_slots_changed(before, after), moved + new_owned);
}

TEST(Maglev, GoldenTableM13) {
  const std::vector<MaglevBackend> backends = {
      {ipv4(10, 0, 0, 1), 1}, {ipv4(10, 0, 0, 2), 1}, {ipv4(10, 0, 0, 3), 1}};
  MaglevTable t(backends, 13);
  // Pinned: a change here re-maps live flows on upgrade and breaks agreement between
  // instances of different versions behind ECMP. Shares 5/4/4: the 13th slot goes to the
  // first backend of the final, partial round.
  const std::array<uint16_t, 13> golden = {0, 0, 1, 0, 0, 1, 0, 2, 2, 1, 1, 2, 2};
  ASSERT_EQ(t.slots().size(), golden.size());
  for (size_t i = 0; i < golden.size(); ++i) EXPECT_EQ(t.slots()[i], golden[i]) << "slot " << i;
}

TEST(Maglev, IndependentOfInputOrder) {
  auto backends = pool(50);
  backends[3].weight = 7;
  backends[17].weight = 0;
  backends[30].weight = 3;
  MaglevTable canonical(backends);
  std::mt19937 rng(42);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(backends.begin(), backends.end(), rng);
    MaglevTable t(backends);
    EXPECT_EQ(t.backends(), canonical.backends());
    EXPECT_TRUE(std::ranges::equal(t.slots(), canonical.slots()));
  }
}

TEST(Maglev, BackendsInCanonicalOrder) {
  const std::vector<MaglevBackend> in = {
      {ipv4(10, 0, 0, 9), 2}, {ipv4(10, 0, 0, 1), 0}, {ipv4(9, 255, 0, 1), 1}};
  MaglevTable t(in, 251);
  const std::vector<MaglevBackend> want = {
      {ipv4(9, 255, 0, 1), 1}, {ipv4(10, 0, 0, 1), 0}, {ipv4(10, 0, 0, 9), 2}};
  EXPECT_EQ(t.backends(), want);
}

TEST(Maglev, WeightZeroTakesNoSlots) {
  auto backends = pool(4);
  backends[2].weight = 0;
  MaglevTable t(backends);
  expect_full(t);
  EXPECT_EQ(t.backends().size(), 4u);
  EXPECT_EQ(t.slot_counts()[2], 0u);
  const auto [lo, hi] = std::minmax({t.slot_counts()[0], t.slot_counts()[1], t.slot_counts()[3]});
  EXPECT_LE(hi - lo, 1u);
}

TEST(Maglev, AllWeightsZeroIsEmpty) {
  auto backends = pool(3);
  for (auto& b : backends) b.weight = 0;
  MaglevTable t(backends, 251);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.size(), 251u);
  EXPECT_EQ(t.backends().size(), 3u);
  for (uint64_t h : {0ull, 1ull, 250ull, 0xffffffffffffffffull}) EXPECT_EQ(t.lookup(h), -1);
  EXPECT_TRUE(
      std::ranges::all_of(t.slots(), [](uint16_t s) { return s == MaglevTable::kEmptySlot; }));
  EXPECT_EQ(t.slot_counts(), (std::vector<uint32_t>{0, 0, 0}));
}

TEST(Maglev, NoBackendsIsEmpty) {
  MaglevTable t(std::span<const MaglevBackend>{});
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.size(), MaglevTable::kDefaultSize);
  EXPECT_EQ(t.lookup(12345), -1);

  MaglevTable d;
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(d.lookup(12345), -1);
  EXPECT_TRUE(d.backends().empty());
}

TEST(Maglev, LookupIsTheSlotOfTheHashsHighBits) {
  MaglevTable t(pool(10));
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t h = rng();
    EXPECT_EQ(t.lookup(h), t.slots()[(h >> 32) * t.size() >> 32]);
  }
  EXPECT_EQ(t.slot_of(0), 0u);
  EXPECT_EQ(t.slot_of(0xffffffffULL), 0u);  // the low half does not choose
  EXPECT_EQ(t.slot_of(~uint64_t{0}), t.size() - 1);
  EXPECT_EQ(t.lookup(~uint64_t{0}), t.slots()[t.size() - 1]);
}

// Every slot is reachable and equally likely: over 2^32 high halves each of the 65,537
// slots takes 65,535 or 65,536 of them (checked by counting on a stride).
TEST(Maglev, SlotOfIsUniform) {
  MaglevTable t(pool(3));
  std::vector<uint32_t> hits(t.size());
  constexpr uint64_t kStride = 4099;  // coprime with 2^32: visits a spread sample
  uint64_t n = 0;
  for (uint64_t hi = 0; hi < (uint64_t{1} << 32); hi += kStride, ++n) ++hits[t.slot_of(hi << 32)];
  const double mean = double(n) / t.size();
  const auto [lo, hi] = std::minmax_element(hits.begin(), hits.end());
  EXPECT_GE(*lo, mean - 1.5);
  EXPECT_LE(*hi, mean + 1.5);
}

TEST(Maglev, SlotsChangedComparesByIpNotIndex) {
  // Adding a backend with the lowest ip shifts every index by one; owners are unchanged
  // where the newcomer did not take over, so those slots must not count.
  auto backends = pool(5);
  MaglevTable before(backends, 251);
  backends.push_back({ipv4(1, 0, 0, 1), 1});
  MaglevTable after(backends, 251);
  EXPECT_EQ(maglev_slots_changed(before, before), 0u);
  uint32_t by_ip = 0;
  for (uint32_t s = 0; s < 251; ++s) by_ip += owner_ip(before, s) != owner_ip(after, s);
  EXPECT_EQ(maglev_slots_changed(before, after), by_ip);
  EXPECT_LT(by_ip, 251u);

  MaglevTable drained(std::span<const MaglevBackend>{}, 251);
  EXPECT_EQ(maglev_slots_changed(before, drained), 251u);
  EXPECT_EQ(maglev_slots_changed(drained, drained), 0u);
}

TEST(MaglevDeathTest, SizeMustBePrime) {
  // The config loader rejects non-prime sizes; the assert catches a caller that skipped it.
  EXPECT_DEBUG_DEATH(MaglevTable(pool(3), 65536), "prime");
}

TEST(MaglevDeathTest, DuplicateIpIsCallerError) {
  std::vector<MaglevBackend> dup = {{ipv4(10, 0, 0, 1), 1}, {ipv4(10, 0, 0, 1), 2}};
  EXPECT_DEBUG_DEATH(MaglevTable(dup, 13), "duplicate");
}

}  // namespace
}  // namespace l4lb
