#include "lb/flow_key.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <random>
#include <set>
#include <vector>

namespace l4lb {
namespace {

// Pinned values: every instance (behind ECMP, across restarts) must hash a flow alike, so a
// change here re-maps flows and must be deliberate.
TEST(FlowKey, HashIsPinned) {
  const FlowKey k{0x01020304u, 0x0a0b0c0du, 0x1234, 0x5678, 6};
  const FlowKey r = k.reversed();
  EXPECT_EQ(hash_flow(k), 0x46fee599908ddd44ULL) << std::hex << hash_flow(k);
  EXPECT_EQ(hash_flow(r), 0x94d8d6ae2341b5f7ULL) << std::hex << hash_flow(r);
}

// What the flow table needs: for keys as traffic has them (one VIP, clients differing in
// address and port), low bits (bucket) spread evenly and the high 32 bits (signature) of
// keys sharing a bucket rarely agree; no two keys hash alike.
TEST(FlowKey, BucketsEvenAndSignaturesDistinctForClientKeys) {
  constexpr uint32_t kBuckets = 1 << 12;
  std::vector<uint32_t> load(kBuckets);
  std::set<uint64_t> hashes;
  std::set<uint64_t> bucket_sig;
  uint32_t n = 0;
  for (uint32_t client = 0; client < 256; ++client) {
    for (uint32_t port = 1024; port < 1024 + 1024; ++port) {
      const FlowKey k{0x0a000000u | client, 0xac100c64u, static_cast<uint16_t>(port), 80, 6};
      const uint64_t h = hash_flow_key(k, ClientEnd::kSource);  // what the table uses
      hashes.insert(h);
      bucket_sig.insert((h & (kBuckets - 1)) << 32 | (h >> 32));
      ++load[h & (kBuckets - 1)];
      ++n;
    }
  }
  EXPECT_EQ(hashes.size(), n);
  EXPECT_EQ(bucket_sig.size(), n);  // nothing a lookup must resolve by reading entries
  const double mean = double(n) / kBuckets;  // 64
  uint32_t lo = n;
  uint32_t hi = 0;
  for (uint32_t l : load) {
    lo = std::min(lo, l);
    hi = std::max(hi, l);
  }
  // Poisson(64) stays within about +-5 sigma (40) over 4096 buckets.
  EXPECT_GT(lo, mean - 40);
  EXPECT_LT(hi, mean + 40);
}

// The table hash's high half is the whole key's signature, and a flow's two keys get one
// low half (bucket): that of its client's end, whichever key carries it.
TEST(FlowKey, TableHashSharesTheClientsBucketAndKeepsTheSignature) {
  std::mt19937 rng(11);
  std::set<uint32_t> lows, sigs;
  for (int i = 0; i < 10000; ++i) {
    const FlowKey fwd{static_cast<uint32_t>(rng()), 0xac100c64u, static_cast<uint16_t>(rng()), 80,
                      i % 2 ? uint8_t{6} : uint8_t{17}};
    const FlowKey rev{static_cast<uint32_t>(rng()), fwd.src_ip, 8080, fwd.src_port, fwd.proto};
    const uint64_t hf = hash_flow_key(fwd, ClientEnd::kSource);
    const uint64_t hr = hash_flow_key(rev, ClientEnd::kDestination);
    ASSERT_EQ(hf >> 32, flow_signature(fwd));
    ASSERT_EQ(hr >> 32, flow_signature(rev));
    sigs.insert(flow_signature(fwd));
    ASSERT_EQ(static_cast<uint32_t>(hf), static_cast<uint32_t>(hr));
    ASSERT_EQ(static_cast<uint32_t>(hf), hash_client_end(fwd, ClientEnd::kSource));
    lows.insert(static_cast<uint32_t>(hf));
  }
  EXPECT_GT(lows.size(), 9990u);  // distinct clients, distinct buckets (birthday: ~0.01 pairs)
  EXPECT_GT(sigs.size(), 9990u);
  // The client's port and protocol count, not only its address.
  const FlowKey a{0x0a000001u, 0xac100c64u, 1000, 80, 6};
  FlowKey b = a;
  b.src_port = 1001;
  FlowKey c = a;
  c.proto = 17;
  EXPECT_NE(hash_client_end(a, ClientEnd::kSource), hash_client_end(b, ClientEnd::kSource));
  EXPECT_NE(hash_client_end(a, ClientEnd::kSource), hash_client_end(c, ClientEnd::kSource));
  // The other end does not.
  FlowKey d = a;
  d.dst_ip = 0xac100c65u;
  d.dst_port = 443;
  EXPECT_EQ(hash_client_end(a, ClientEnd::kSource), hash_client_end(d, ClientEnd::kSource));
}

// Each input bit flips about half of the output bits (and of the bucket bits alone).
TEST(FlowKey, EveryKeyBitReachesTheWholeHash) {
  std::mt19937_64 rng(11);
  for (int field = 0; field < 5; ++field) {
    const int width = field < 2 ? 32 : field < 4 ? 16 : 8;
    for (int bit = 0; bit < width; ++bit) {
      double flipped = 0;
      double flipped_low = 0;
      constexpr int kTrials = 200;
      for (int t = 0; t < kTrials; ++t) {
        FlowKey k{static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
                  static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng()),
                  static_cast<uint8_t>(rng())};
        FlowKey m = k;
        switch (field) {
          case 0: m.src_ip ^= 1u << bit; break;
          case 1: m.dst_ip ^= 1u << bit; break;
          case 2: m.src_port = static_cast<uint16_t>(m.src_port ^ (1u << bit)); break;
          case 3: m.dst_port = static_cast<uint16_t>(m.dst_port ^ (1u << bit)); break;
          default: m.proto = static_cast<uint8_t>(m.proto ^ (1u << bit)); break;
        }
        const uint64_t d = hash_flow(k) ^ hash_flow(m);
        flipped += std::popcount(d);
        flipped_low += std::popcount(d & 0xfffff);
      }
      EXPECT_NEAR(flipped / kTrials, 32, 3) << "field " << field << " bit " << bit;
      EXPECT_NEAR(flipped_low / kTrials, 10, 1.5) << "field " << field << " bit " << bit;
    }
  }
}

}  // namespace
}  // namespace l4lb
