#include "lb/steering_plan.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace l4lb {
namespace {

using M = SteeringMode;

TEST(SteeringOrder, OneQueueHasNothingToSteer) {
  EXPECT_EQ(steering_order({1, true, true}, PortSide::kClients), std::vector<M>{M::kSingleQueue});
  EXPECT_EQ(steering_order({1, false, false}, PortSide::kBoth), std::vector<M>{M::kSingleQueue});
}

TEST(SteeringOrder, FieldSelectionFirstWhenAdvertised) {
  const std::vector<M> want{M::kRssFields, M::kFlowRule, M::kSoftware};
  EXPECT_EQ(steering_order({4, true, true}, PortSide::kClients), want);
  EXPECT_EQ(steering_order({4, true, true}, PortSide::kPods), want);
}

TEST(SteeringOrder, FlowRuleThenSoftwareWithoutFieldSelection) {
  const std::vector<M> want{M::kFlowRule, M::kSoftware};
  // net_tap: IPv4 TCP/UDP RSS but no SRC_ONLY/DST_ONLY.
  EXPECT_EQ(steering_order({2, true, false}, PortSide::kClients), want);
  // net_af_packet: no RSS at all; rte_flow is still asked (it answers "not supported").
  EXPECT_EQ(steering_order({2, false, false}, PortSide::kPods), want);
  // Field selection without IPv4 TCP/UDP hashing is no use.
  EXPECT_EQ(steering_order({2, false, true}, PortSide::kPods), want);
}

TEST(SteeringOrder, OneArmedIsSoftware) {
  EXPECT_EQ(steering_order({4, true, true}, PortSide::kBoth), std::vector<M>{M::kSoftware});
}

TEST(SteeringOrder, LastChoiceCannotFail) {
  for (uint16_t q : {1, 2, 8}) {
    for (int bits = 0; bits < 4; ++bits) {
      for (PortSide s : {PortSide::kClients, PortSide::kPods, PortSide::kBoth}) {
        auto order = steering_order({q, (bits & 1) != 0, (bits & 2) != 0}, s);
        ASSERT_FALSE(order.empty());
        EXPECT_TRUE(order.back() == M::kSoftware || order.back() == M::kSingleQueue);
      }
    }
  }
}

TEST(PortSides, TwoArmedFromRoutes) {
  EXPECT_EQ(port_sides({false, true}),
            (std::vector<PortSide>{PortSide::kClients, PortSide::kPods}));
  EXPECT_EQ(port_sides({true, false}),
            (std::vector<PortSide>{PortSide::kPods, PortSide::kClients}));
}

TEST(PortSides, AnythingElseIsBoth) {
  EXPECT_EQ(port_sides({true}), std::vector<PortSide>{PortSide::kBoth});
  EXPECT_EQ(port_sides({false, false}), (std::vector<PortSide>(2, PortSide::kBoth)));
  EXPECT_EQ(port_sides({true, true}), (std::vector<PortSide>(2, PortSide::kBoth)));
  EXPECT_EQ(port_sides({true, false, false}), (std::vector<PortSide>(3, PortSide::kBoth)));
}

TEST(SteeringNames, Distinct) {
  EXPECT_STREQ(steering_mode_name(M::kSoftware), "software");
  EXPECT_STREQ(steering_mode_name(M::kRssFields), "rss-fields");
  EXPECT_STREQ(steering_mode_name(M::kFlowRule), "flow-rule");
  EXPECT_STREQ(steering_mode_name(M::kSingleQueue), "single-queue");
}

// The verification vectors of Microsoft's RSS specification ("Verifying the RSS Hash
// Calculation"), IPv4 rows: source 66.9.149.187:2794, destination 161.142.100.80:1766.
TEST(Toeplitz, MicrosoftVerificationVectors) {
  const uint8_t ip_pair[] = {66, 9, 149, 187, 161, 142, 100, 80};
  EXPECT_EQ(toeplitz(kRssKey.data(), kRssKey.size(), ip_pair, sizeof ip_pair), 0x323e8fc2u);
  const uint8_t four_tuple[] = {66,  9,  149,       187,         161,       142,
                                100, 80, 2794 >> 8, 2794 & 0xff, 1766 >> 8, 1766 & 0xff};
  EXPECT_EQ(toeplitz(kRssKey.data(), kRssKey.size(), four_tuple, sizeof four_tuple), 0x51ccc178u);
}

TEST(OwnerHash, TablesMatchTheReference) {
  OwnerHash h(3);
  std::mt19937 rng(7);
  for (int i = 0; i < 10000; ++i) {
    const uint32_t ip_be = rng();
    const auto port_be = static_cast<uint16_t>(rng());
    uint8_t in[6];
    std::memcpy(in, &ip_be, 4);
    std::memcpy(in + 4, &port_be, 2);
    ASSERT_EQ(h.hash(ip_be, port_be), toeplitz(kRssKey.data(), kRssKey.size(), in, 6));
  }
}

TEST(OwnerHash, OwnerIsTheRetaQueueOfTheLowBits) {
  for (uint16_t workers : {1, 2, 3, 4, 7}) {
    OwnerHash h(workers);
    std::mt19937 rng(workers);
    std::vector<uint32_t> per_worker(workers);
    for (int i = 0; i < 20000; ++i) {
      const uint32_t ip = rng();
      const auto port = static_cast<uint16_t>(rng());
      const uint16_t w = h.owner(ip, port);
      ASSERT_LT(w, workers);
      // A NIC with a 512-entry RETA filled by reta_queue() picks the same queue.
      ASSERT_EQ(w, h.reta_queue(h.hash(ip, port) & 511));
      per_worker[w]++;
    }
    // 64 slots over `workers`: each worker owns at least floor(64 / workers) of them.
    for (uint32_t n : per_worker) EXPECT_GT(n, 20000 / workers * 6 / 10) << workers;
  }
}

TEST(OwnerHash, RejectsZeroWorkersAndShortKeys) {
  EXPECT_THROW(OwnerHash(0), std::invalid_argument);
  const uint8_t key[8] = {};
  EXPECT_THROW(OwnerHash(2, key, sizeof key), std::invalid_argument);
}

}  // namespace
}  // namespace l4lb
