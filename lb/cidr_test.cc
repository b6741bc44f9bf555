#include "lb/cidr.h"

#include <gtest/gtest.h>

namespace l4lb {
namespace {

TEST(Cidr, ParsesDottedQuad) {
  EXPECT_EQ(parse_ipv4("10.0.0.1"), 0x0a000001u);
  EXPECT_EQ(parse_ipv4("255.255.255.255"), 0xffffffffu);
  EXPECT_EQ(parse_ipv4("0.0.0.0"), 0u);
}

TEST(Cidr, RejectsMalformedAddresses) {
  for (const char* bad : {"", "10.0.0", "10.0.0.1.", "10.0.0.256", "10.0.0.01", " 10.0.0.1",
                          "10.0.0.1 ", "a.b.c.d", "10..0.1", "10.0.0.-1", "1000.0.0.1"}) {
    EXPECT_FALSE(parse_ipv4(bad).has_value()) << bad;
  }
}

TEST(Cidr, ParsesPrefixesAndKeepsHostBits) {
  auto p = parse_ipv4_prefix("10.0.0.1/24");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->addr, 0x0a000001u);
  EXPECT_EQ(p->len, 24);
  EXPECT_EQ(p->network(), 0x0a000000u);
  EXPECT_TRUE(p->contains(0x0a0000feu));
  EXPECT_FALSE(p->contains(0x0a000100u));
  auto all = parse_ipv4_prefix("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(0xdeadbeefu));
  EXPECT_FALSE(parse_ipv4_prefix("10.0.0.0/33"));
  EXPECT_FALSE(parse_ipv4_prefix("10.0.0.0"));
  EXPECT_FALSE(parse_ipv4_prefix("10.0.0.0/"));
}

TEST(Cidr, MacRoundTrip) {
  auto mac = parse_mac("02:00:00:00:00:FE");
  ASSERT_TRUE(mac);
  EXPECT_EQ(format_mac(*mac), "02:00:00:00:00:fe");
  EXPECT_FALSE(parse_mac("02:00:00:00:00"));
  EXPECT_FALSE(parse_mac("02-00-00-00-00-fe"));
  EXPECT_FALSE(parse_mac("02:00:00:00:00:g0"));
}

TEST(Cidr, FormatsAddresses) {
  EXPECT_EQ(format_ipv4(0xac100c64u), "172.16.12.100");
  EXPECT_EQ(format_prefix(Ipv4Prefix{0xcb007100u, 24}), "203.0.113.0/24");
}

}  // namespace
}  // namespace l4lb
