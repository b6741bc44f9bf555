// Not a test: the new-flow insert path of a large FlowTable in bursts of 32 as the worker
// runs it (bucket prefetch, entry prefetch, lookup, insert; the reverse key shares the
// forward key's first bucket, so there is nothing more to prefetch). Thread CPU time
// (preemption by other processes not counted), best of several rounds.
//   build/lb/flow_table_bench [capacity] [flows per round]
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "lb/flow_table.h"

namespace {

using namespace l4lb;

double thread_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

constexpr uint32_t kVip = 0x640c10ac;  // 172.16.12.100, network order
constexpr uint32_t kBurst = 32;

// One round: `flows` SYNs of never-seen clients in bursts; returns CPU ns per new flow.
double round_ns(FlowTable& t, uint32_t& next_client, uint32_t flows, uint32_t now) {
  const double t0 = thread_ns();
  for (uint32_t done = 0; done < flows; done += kBurst) {
    FlowKey keys[kBurst];
    uint64_t hashes[kBurst];
    FlowNat nats[kBurst];
    for (uint32_t i = 0; i < kBurst; ++i) {
      const uint32_t c = next_client++;
      keys[i] = FlowKey{__builtin_bswap32(0xc6120000u + (c >> 16)), kVip, static_cast<uint16_t>(c),
                        0x5000, kIpProtoTcp};
      hashes[i] = hash_flow_key(keys[i], ClientEnd::kSource);
      // Backend: a stand-in for the Maglev pick (10 backends).
      nats[i] = FlowNat{kVip, __builtin_bswap32(0x0a04010b + hashes[i] % 10), 0x5000, 0x901f, 1};
      t.prefetch(hashes[i]);
    }
    for (uint32_t i = 0; i < kBurst; ++i) t.prefetch_entry(hashes[i]);
    for (uint32_t i = 0; i < kBurst; ++i) {
      if (t.lookup(keys[i], hashes[i], now).entry == nullptr) {
        t.insert(keys[i], hashes[i], nats[i], kTcpSyn, now);
      }
    }
  }
  return (thread_ns() - t0) / flows;
}

}  // namespace

int main(int argc, char** argv) {
  const uint32_t capacity = argc > 1 ? static_cast<uint32_t>(std::atol(argv[1])) : 1u << 23;
  const uint32_t per_round = argc > 2 ? static_cast<uint32_t>(std::atol(argv[2])) : 1u << 18;
  FlowTable t(capacity, FlowTimeouts{});
  uint32_t client = 1;
  double best = 1e18;
  // Rounds while the table fills to ~80%.
  const uint32_t rounds = std::max<uint32_t>(2, capacity / 10 * 8 / per_round);
  for (uint32_t r = 0; r < rounds; ++r) best = std::min(best, round_ns(t, client, per_round, 100));
  std::printf("capacity %u, %u rounds of %u new flows each, table now %u entries\n", capacity,
              rounds, per_round, t.size());
  std::printf("insert: %.0f ns per new flow (best round)\n", best);
  return 0;
}
