#include "lb/acl.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "lb/cidr.h"
#include "nat/headers.h"

namespace l4lb {
namespace {

Ipv4Prefix pfx(const char* text) {
  auto p = parse_ipv4_prefix(text);
  EXPECT_TRUE(p) << text;
  return p.value_or(Ipv4Prefix{});
}

// Addresses as they come from the packet: network order.
uint32_t be(const char* text) {
  auto a = parse_ipv4(text);
  EXPECT_TRUE(a) << text;
  return hton32(a.value_or(0));
}

// The obvious answer: scan every prefix, keep the longest, the first one on a tie.
int brute_force(const std::vector<Ipv4Prefix>& prefixes, uint32_t ip_be) {
  uint32_t ip = ntoh32(ip_be);
  int best = -1;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    if (prefixes[i].contains(ip) && (best < 0 || prefixes[i].len > prefixes[best].len)) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

TEST(SourceRanges, EmptySetMatchesNothing) {
  SourceRanges none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.size(), 0u);
  EXPECT_EQ(none.match(be("0.0.0.0")), -1);
  EXPECT_EQ(none.match(be("255.255.255.255")), -1);
  EXPECT_FALSE(none.contains(be("10.0.0.1")));

  SourceRanges from_empty_span(std::vector<Ipv4Prefix>{});
  EXPECT_TRUE(from_empty_span.empty());
  EXPECT_FALSE(from_empty_span.contains(be("10.0.0.1")));
}

TEST(SourceRanges, LongestMatchWinsWhateverTheOrder) {
  std::vector<Ipv4Prefix> in = {pfx("10.0.0.0/8"), pfx("10.1.2.0/24"), pfx("10.1.0.0/16"),
                                pfx("10.1.2.3/32"), pfx("192.168.0.0/16")};
  SourceRanges acl(in);
  EXPECT_FALSE(acl.empty());
  EXPECT_EQ(acl.size(), 5u);
  EXPECT_EQ(acl.match(be("10.1.2.3")), 3);
  EXPECT_EQ(acl.match(be("10.1.2.4")), 1);
  EXPECT_EQ(acl.match(be("10.1.3.4")), 2);
  EXPECT_EQ(acl.match(be("10.2.0.0")), 0);
  EXPECT_EQ(acl.match(be("10.255.255.255")), 0);
  EXPECT_EQ(acl.match(be("192.168.255.1")), 4);
  EXPECT_EQ(acl.match(be("11.0.0.0")), -1);
  EXPECT_EQ(acl.match(be("9.255.255.255")), -1);
  EXPECT_TRUE(acl.contains(be("10.9.9.9")));
  EXPECT_FALSE(acl.contains(be("172.16.0.1")));
}

TEST(SourceRanges, DefaultRouteMatchesEverythingElse) {
  SourceRanges acl(std::vector<Ipv4Prefix>{pfx("203.0.113.0/24"), pfx("0.0.0.0/0")});
  EXPECT_EQ(acl.match(be("203.0.113.200")), 0);
  EXPECT_EQ(acl.match(be("0.0.0.0")), 1);
  EXPECT_EQ(acl.match(be("8.8.8.8")), 1);
  EXPECT_EQ(acl.match(be("255.255.255.255")), 1);
}

TEST(SourceRanges, HostRouteMatchesOnlyThatAddress) {
  SourceRanges acl(std::vector<Ipv4Prefix>{pfx("198.51.100.7/32"), pfx("255.255.255.255/32"),
                                           pfx("0.0.0.0/32")});
  EXPECT_EQ(acl.match(be("198.51.100.7")), 0);
  EXPECT_EQ(acl.match(be("198.51.100.6")), -1);
  EXPECT_EQ(acl.match(be("198.51.100.8")), -1);
  EXPECT_EQ(acl.match(be("255.255.255.255")), 1);
  EXPECT_EQ(acl.match(be("0.0.0.0")), 2);
  EXPECT_EQ(acl.match(be("0.0.0.1")), -1);
}

TEST(SourceRanges, EdgesOfNestedAndAdjacentPrefixes) {
  // Inner prefixes flush with the start and the end of their outer prefix, and two halves
  // that meet: every first and last address must land on the right side.
  SourceRanges acl(std::vector<Ipv4Prefix>{pfx("10.0.0.0/24"), pfx("10.0.0.0/26"),
                                           pfx("10.0.0.192/26"), pfx("10.0.1.0/25"),
                                           pfx("10.0.1.128/25"), pfx("255.255.255.0/24")});
  EXPECT_EQ(acl.match(be("9.255.255.255")), -1);
  EXPECT_EQ(acl.match(be("10.0.0.0")), 1);
  EXPECT_EQ(acl.match(be("10.0.0.63")), 1);
  EXPECT_EQ(acl.match(be("10.0.0.64")), 0);
  EXPECT_EQ(acl.match(be("10.0.0.191")), 0);
  EXPECT_EQ(acl.match(be("10.0.0.192")), 2);
  EXPECT_EQ(acl.match(be("10.0.0.255")), 2);
  EXPECT_EQ(acl.match(be("10.0.1.0")), 3);
  EXPECT_EQ(acl.match(be("10.0.1.127")), 3);
  EXPECT_EQ(acl.match(be("10.0.1.128")), 4);
  EXPECT_EQ(acl.match(be("10.0.1.255")), 4);
  EXPECT_EQ(acl.match(be("10.0.2.0")), -1);
  EXPECT_EQ(acl.match(be("255.255.254.255")), -1);
  EXPECT_EQ(acl.match(be("255.255.255.0")), 5);
  EXPECT_EQ(acl.match(be("255.255.255.255")), 5);
}

TEST(SourceRanges, HostBitsInTheInputAreIgnored) {
  // 10.1.2.3/8 is 10.0.0.0/8; a port-style address/len must not narrow the range.
  SourceRanges acl(
      std::vector<Ipv4Prefix>{pfx("10.1.2.3/8"), pfx("192.168.77.77/17"), pfx("1.2.3.4/0")});
  EXPECT_EQ(acl.match(be("10.200.0.1")), 0);
  EXPECT_EQ(acl.match(be("192.168.0.1")), 1);
  EXPECT_EQ(acl.match(be("192.168.127.255")), 1);
  EXPECT_EQ(acl.match(be("192.168.128.0")), 2);
  EXPECT_EQ(acl.match(be("4.3.2.1")), 2);
}

TEST(SourceRanges, DuplicatesReportTheFirstAndStillCount) {
  std::vector<Ipv4Prefix> in = {pfx("10.0.0.0/8"), pfx("172.16.0.0/12"), pfx("10.9.9.9/8"),
                                pfx("10.0.0.0/8")};
  SourceRanges acl(in);
  EXPECT_EQ(acl.size(), 4u);
  EXPECT_EQ(acl.match(be("10.1.1.1")), 0);
  EXPECT_EQ(acl.match(be("172.31.255.255")), 1);
  EXPECT_EQ(acl.match(be("172.32.0.0")), -1);
}

TEST(SourceRanges, EveryLengthOnOneAddress) {
  // A chain of 33 nested prefixes of the same address: each address falls to the longest
  // one that still contains it.
  const uint32_t base = 0xc0a80101;  // 192.168.1.1
  std::vector<Ipv4Prefix> in;
  for (int len = 0; len <= 32; ++len) in.push_back({base, static_cast<uint8_t>(len)});
  SourceRanges acl(in);
  EXPECT_EQ(acl.match(hton32(base)), 32);
  for (int bit = 0; bit < 32; ++bit) {
    // Flipping bit b (0 = least significant) leaves prefixes up to /(31 - b) containing it.
    uint32_t ip = base ^ (uint32_t{1} << bit);
    EXPECT_EQ(acl.match(hton32(ip)), 31 - bit) << bit;
  }
}

TEST(SourceRanges, ThousandRandomPrefixesAgreeWithBruteForce) {
  std::mt19937_64 rng(42);
  for (bool with_default : {false, true}) {
    std::vector<Ipv4Prefix> in;
    for (int i = 0; i < 1000; ++i) {
      // Mixed lengths, most between /8 and /32 as real ranges are, a few very short.
      uint8_t len = rng() % 10 == 0 ? static_cast<uint8_t>(1 + rng() % 7)
                                    : static_cast<uint8_t>(8 + rng() % 25);
      uint32_t addr = static_cast<uint32_t>(rng());
      // Nest some prefixes inside earlier ones so that overlaps are common.
      if (!in.empty() && rng() % 3 == 0) {
        const Ipv4Prefix& outer = in[rng() % in.size()];
        len = static_cast<uint8_t>(outer.len + rng() % (33 - outer.len));
        addr = outer.network() | (addr & ~outer.mask());
      }
      in.push_back({addr, len});
    }
    if (with_default) in.push_back({static_cast<uint32_t>(rng()), 0});
    SourceRanges acl(in);
    ASSERT_EQ(acl.size(), in.size());

    int hits = 0;
    for (int n = 0; n < 100000; ++n) {
      uint32_t ip = static_cast<uint32_t>(rng());
      // Half the addresses are drawn near a prefix, or there would be almost no hits.
      if (n % 2 == 0) {
        const Ipv4Prefix& p = in[rng() % in.size()];
        ip = p.network() | (ip & ~p.mask());
      }
      uint32_t ip_be = hton32(ip);
      int want = brute_force(in, ip_be);
      ASSERT_EQ(acl.match(ip_be), want) << format_ipv4(ip);
      ASSERT_EQ(acl.contains(ip_be), want >= 0);
      hits += want >= 0;
    }
    EXPECT_GT(hits, 50000);
    if (with_default) {
      EXPECT_EQ(hits, 100000);
    }
  }
}

TEST(SourceRanges, CopiesAreIndependentAndEqual) {
  std::vector<Ipv4Prefix> in = {pfx("10.0.0.0/8"), pfx("10.1.0.0/16")};
  SourceRanges a(in);
  SourceRanges b = a;
  SourceRanges c = std::move(a);
  EXPECT_EQ(b.match(be("10.1.1.1")), 1);
  EXPECT_EQ(c.match(be("10.1.1.1")), 1);
  EXPECT_EQ(c.size(), 2u);
}

}  // namespace
}  // namespace l4lb
