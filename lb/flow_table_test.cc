#include "lb/flow_table.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace l4lb {
namespace {

constexpr uint32_t kVip = hton32(0xac100c64);  // 172.16.12.100
constexpr uint16_t kVipPort = hton16(80);
constexpr uint16_t kTargetPort = hton16(8080);
constexpr uint8_t kSynAck = kTcpSyn | kTcpAck;

// Client 192.168.x.y:port -> the VIP, pinned to backend 10.4.1.b:8080.
struct Flow {
  FlowKey fwd;
  FlowNat nat;
  FlowKey rev() const {
    return FlowKey{nat.backend_ip, fwd.src_ip, nat.backend_port, fwd.src_port, fwd.proto};
  }
};

Flow make_flow(uint32_t client, uint16_t port, uint32_t backend = 1, uint8_t proto = kIpProtoTcp) {
  Flow f;
  f.fwd = FlowKey{hton32(0xc0a80000 | client), kVip, hton16(port), kVipPort, proto};
  f.nat = FlowNat{kVip, hton32(0x0a040100 | backend), kVipPort, kTargetPort, 7};
  return f;
}

// Forward keys here go to kVip, reverse keys to a client: the client's end is the source
// of a key to kVip and the destination of any other (as a worker tells them apart).
uint64_t key_hash(const FlowKey& k) {
  return hash_flow_key(k, k.dst_ip == kVip ? ClientEnd::kSource : ClientEnd::kDestination);
}

FlowHit find(FlowTable& t, const FlowKey& k, uint32_t now) { return t.lookup(k, key_hash(k), now); }

FlowEntry* add(FlowTable& t, const Flow& f, uint8_t flags, uint32_t now) {
  return t.insert(f.fwd, key_hash(f.fwd), f.nat, flags, now);
}

constexpr FlowTimeouts kTimeouts{3600, 30, 60};

TEST(FlowTable, EntryIsOneCacheLine) {
  EXPECT_EQ(sizeof(FlowEntry), 64u);
  EXPECT_EQ(alignof(FlowEntry), 64u);
}

TEST(FlowTable, InsertThenLookupByEitherKey) {
  FlowTable t(64, kTimeouts);
  const Flow f = make_flow(1, 40000);
  FlowEntry* e = add(t, f, kTcpSyn, 100);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(e->fwd, f.fwd);
  EXPECT_EQ(e->reverse_key(), f.rev());
  EXPECT_EQ(e->nat.backend_ip, f.nat.backend_ip);
  EXPECT_EQ(e->nat.service_port_id, 7u);
  EXPECT_EQ(e->created_s, 100u);
  EXPECT_EQ(e->last_seen_s, 100u);

  // The burst passes before a lookup change nothing, for present and absent keys alike.
  for (const FlowKey& k : {f.fwd, f.rev(), make_flow(2, 2).fwd}) {
    t.prefetch(key_hash(k));
    t.prefetch_entry(key_hash(k));
  }
  FlowHit h = find(t, f.fwd, 101);
  EXPECT_EQ(h.entry, e);
  EXPECT_EQ(h.dir, FlowDir::kForward);
  h = find(t, f.rev(), 101);
  EXPECT_EQ(h.entry, e);
  EXPECT_EQ(h.dir, FlowDir::kReverse);
}

TEST(FlowTable, UnknownKeysMiss) {
  FlowTable t(64, kTimeouts);
  const Flow f = make_flow(1, 40000);
  ASSERT_NE(add(t, f, kTcpSyn, 0), nullptr);
  // The mirror image of the forward key is not the reverse key (that comes from the backend).
  EXPECT_EQ(find(t, f.fwd.reversed(), 0).entry, nullptr);
  EXPECT_EQ(find(t, make_flow(1, 40001).fwd, 0).entry, nullptr);
  EXPECT_EQ(find(t, make_flow(2, 40000).fwd, 0).entry, nullptr);
  EXPECT_EQ(find(t, make_flow(1, 40000, 1, kIpProtoUdp).fwd, 0).entry, nullptr);
  EXPECT_EQ(find(t, make_flow(1, 40000, 2).rev(), 0).entry, nullptr);
  FlowTable empty(16, kTimeouts);
  EXPECT_EQ(find(empty, f.fwd, 0).entry, nullptr);
}

// Alive at last_seen + timeout, gone one second later; the miss frees the entry.
void expect_times_out(FlowTable& t, const Flow& f, uint32_t last_seen, uint32_t timeout) {
  const uint32_t size = t.size();
  FlowHit h = find(t, f.fwd, last_seen + timeout);
  ASSERT_NE(h.entry, nullptr);
  EXPECT_FALSE(t.expired(*h.entry, last_seen + timeout));
  EXPECT_TRUE(t.expired(*h.entry, last_seen + timeout + 1));
  EXPECT_EQ(find(t, f.rev(), last_seen + timeout + 1).entry, nullptr);
  EXPECT_EQ(find(t, f.fwd, last_seen + timeout + 1).entry, nullptr);
  EXPECT_EQ(t.size(), size - 1);
}

TEST(FlowTable, SynSentThenTransitoryTimeout) {
  FlowTable t(64, kTimeouts);
  const Flow f = make_flow(1, 40000);
  FlowEntry* e = add(t, f, kTcpSyn, 1000);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->state, FlowState::kSynSent);
  // A retransmitted SYN, a stray ACK from the client or a bare SYN back change nothing.
  t.update(e, FlowDir::kForward, kTcpSyn, 1005);
  t.update(e, FlowDir::kForward, kTcpAck, 1005);
  t.update(e, FlowDir::kReverse, kTcpSyn, 1005);
  EXPECT_EQ(e->state, FlowState::kSynSent);
  EXPECT_EQ(e->last_seen_s, 1005u);
  expect_times_out(t, f, 1005, 30);
}

TEST(FlowTable, SynAckSeenThenTransitoryTimeout) {
  FlowTable t(64, kTimeouts);
  const Flow f = make_flow(1, 40000);
  FlowEntry* e = add(t, f, kTcpSyn, 1000);
  ASSERT_NE(e, nullptr);
  t.update(e, FlowDir::kForward, kSynAck, 1001);  // SYN+ACK from the client side: not a reply
  EXPECT_EQ(e->state, FlowState::kSynSent);
  t.update(e, FlowDir::kReverse, kSynAck, 1002);
  EXPECT_EQ(e->state, FlowState::kSynAckSeen);
  t.update(e, FlowDir::kReverse, kTcpAck, 1003);  // backend's ACK does not finish the handshake
  t.update(e, FlowDir::kForward, kSynAck, 1003);  // nor does a client SYN
  EXPECT_EQ(e->state, FlowState::kSynAckSeen);
  expect_times_out(t, f, 1003, 30);
}

TEST(FlowTable, EstablishedAfterHandshakeThenLongTimeout) {
  FlowTable t(64, kTimeouts);
  const Flow f = make_flow(1, 40000);
  FlowEntry* e = add(t, f, kTcpSyn, 1000);
  ASSERT_NE(e, nullptr);
  t.update(e, FlowDir::kReverse, kSynAck, 1000);
  t.update(e, FlowDir::kForward, kTcpAck, 1001);
  EXPECT_EQ(e->state, FlowState::kEstablished);
  t.update(e, FlowDir::kReverse, kTcpAck | kTcpPsh, 1010);
  EXPECT_EQ(e->state, FlowState::kEstablished);
  EXPECT_EQ(e->created_s, 1000u);
  EXPECT_EQ(e->last_seen_s, 1010u);
  expect_times_out(t, f, 1010, 3600);
}

TEST(FlowTable, MidFlowPickupIsEstablished) {
  FlowTable t(64, kTimeouts);
  for (uint8_t flags : {uint8_t{kTcpAck}, uint8_t{kTcpAck | kTcpPsh}, kSynAck, uint8_t{0}}) {
    const Flow f = make_flow(flags, 40000);
    FlowEntry* e = add(t, f, flags, 50);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->state, FlowState::kEstablished) << int{flags};
  }
  expect_times_out(t, make_flow(kTcpAck, 40000), 50, 3600);
}

TEST(FlowTable, FinOrRstFromEitherSideClosesForGood) {
  struct Case {
    FlowDir dir;
    uint8_t flags;
  };
  for (Case c : {Case{FlowDir::kForward, kTcpFin | kTcpAck}, Case{FlowDir::kReverse, kTcpFin},
                 Case{FlowDir::kForward, kTcpRst}, Case{FlowDir::kReverse, kTcpRst | kTcpAck}}) {
    FlowTable t(64, kTimeouts);
    const Flow f = make_flow(1, 40000);
    FlowEntry* e = add(t, f, kTcpAck, 0);
    ASSERT_NE(e, nullptr);
    t.update(e, c.dir, c.flags, 10);
    EXPECT_EQ(e->state, FlowState::kClosing);
    t.update(e, FlowDir::kReverse, kSynAck, 11);
    t.update(e, FlowDir::kForward, kTcpAck, 12);
    EXPECT_EQ(e->state, FlowState::kClosing);
    EXPECT_EQ(e->last_seen_s, 12u);
    expect_times_out(t, f, 12, 30);
  }
  // Closing from the handshake states too, and a first packet with FIN or RST.
  FlowTable t(64, kTimeouts);
  FlowEntry* syn_sent = add(t, make_flow(1, 1), kTcpSyn, 0);
  FlowEntry* syn_ack = add(t, make_flow(1, 2), kTcpSyn, 0);
  ASSERT_NE(syn_sent, nullptr);
  ASSERT_NE(syn_ack, nullptr);
  t.update(syn_ack, FlowDir::kReverse, kSynAck, 0);
  t.update(syn_sent, FlowDir::kReverse, kTcpRst | kTcpAck, 1);
  t.update(syn_ack, FlowDir::kForward, kTcpRst, 1);
  EXPECT_EQ(syn_sent->state, FlowState::kClosing);
  EXPECT_EQ(syn_ack->state, FlowState::kClosing);
  FlowEntry* fin_first = add(t, make_flow(1, 3), kTcpFin | kTcpAck, 0);
  ASSERT_NE(fin_first, nullptr);
  EXPECT_EQ(fin_first->state, FlowState::kClosing);
}

TEST(FlowTable, ForwardSynOnClosingEntryIsReopen) {
  FlowTable t(64, kTimeouts);
  const Flow f = make_flow(1, 40000);
  FlowEntry* e = add(t, f, kTcpAck, 0);
  ASSERT_NE(e, nullptr);
  EXPECT_FALSE(is_reopen(*e, FlowDir::kForward, kTcpSyn));  // established: a retransmit
  t.update(e, FlowDir::kForward, kTcpFin | kTcpAck, 1);
  EXPECT_TRUE(is_reopen(*e, FlowDir::kForward, kTcpSyn));
  EXPECT_FALSE(is_reopen(*e, FlowDir::kReverse, kTcpSyn));
  EXPECT_FALSE(is_reopen(*e, FlowDir::kForward, kSynAck));
  EXPECT_FALSE(is_reopen(*e, FlowDir::kForward, kTcpAck));
  EXPECT_FALSE(is_reopen(*e, FlowDir::kForward, kTcpSyn | kTcpRst));

  // What the worker does with it: remove and insert afresh, possibly to another backend.
  t.remove(e);
  Flow again = f;
  again.nat.backend_ip = hton32(0x0a040102);
  FlowEntry* e2 = add(t, again, kTcpSyn, 2);
  ASSERT_NE(e2, nullptr);
  EXPECT_EQ(e2->state, FlowState::kSynSent);
  EXPECT_EQ(find(t, again.rev(), 2).entry, e2);
  EXPECT_EQ(find(t, f.rev(), 2).entry, nullptr);
}

TEST(FlowTable, UdpHasItsOwnTimeoutAndNoStateMachine) {
  FlowTable t(64, kTimeouts);
  const Flow f = make_flow(1, 5353, 1, kIpProtoUdp);
  FlowEntry* e = add(t, f, kTcpSyn, 100);  // flags mean nothing for UDP
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->state, FlowState::kUdp);
  t.update(e, FlowDir::kReverse, kTcpFin | kTcpRst, 120);
  EXPECT_EQ(e->state, FlowState::kUdp);
  EXPECT_EQ(find(t, f.rev(), 120).dir, FlowDir::kReverse);
  expect_times_out(t, f, 120, 60);
}

TEST(FlowTable, ClockWrapDoesNotExpire) {
  FlowTable t(64, kTimeouts);
  const Flow f = make_flow(1, 5353, 1, kIpProtoUdp);
  ASSERT_NE(add(t, f, 0, 0xfffffff0u), nullptr);
  EXPECT_NE(find(t, f.fwd, 0xfffffff0u + 60).entry, nullptr);  // wrapped to 44
  EXPECT_EQ(find(t, f.fwd, 0xfffffff0u + 61).entry, nullptr);
}

TEST(FlowTable, ExpiredLookupMissesAndFreesTheSlot) {
  FlowTable t(1, kTimeouts);
  const Flow a = make_flow(1, 1, 1, kIpProtoUdp);
  const Flow b = make_flow(2, 2, 1, kIpProtoUdp);
  ASSERT_NE(add(t, a, 0, 0), nullptr);
  EXPECT_EQ(add(t, b, 0, 10), nullptr);  // full, and a is still alive
  EXPECT_EQ(find(t, a.rev(), 61).entry, nullptr);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(find(t, a.fwd, 61).entry, nullptr);
  FlowEntry* e = add(t, b, 0, 61);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(find(t, b.fwd, 61).entry, e);
}

TEST(FlowTable, ExpireWithBudgetRemovesOnlyExpired) {
  constexpr uint32_t kCap = 64;
  FlowTable t(kCap, kTimeouts);
  std::vector<Flow> live;
  std::vector<Flow> dead;
  for (uint32_t i = 0; i < 50; ++i) {
    // Alternate: UDP idle since 0 (dead at 100), TCP established (alive at 100).
    const bool udp = i % 2 == 0;
    const Flow f = make_flow(i, 1000, 1, udp ? kIpProtoUdp : kIpProtoTcp);
    ASSERT_NE(add(t, f, kTcpAck, 0), nullptr);
    (udp ? dead : live).push_back(f);
  }
  EXPECT_EQ(t.expire(50, kCap), 0u);  // nothing is due yet
  uint32_t removed = 0;
  uint32_t calls = 0;
  while (removed < dead.size() && calls < 100) {
    const uint32_t n = t.expire(100, 10);
    EXPECT_LE(n, 10u);
    removed += n;
    ++calls;
  }
  EXPECT_EQ(removed, dead.size());
  EXPECT_GE(calls, 5u);  // 50 used slots at 10 per call: the hand really is incremental
  EXPECT_EQ(t.size(), live.size());
  EXPECT_EQ(t.expire(100, 1000), 0u);
  for (const Flow& f : live) {
    EXPECT_NE(find(t, f.fwd, 100).entry, nullptr);
    EXPECT_NE(find(t, f.rev(), 100).entry, nullptr);
  }
  for (const Flow& f : dead) {
    EXPECT_EQ(find(t, f.fwd, 100).entry, nullptr);
    EXPECT_EQ(find(t, f.rev(), 100).entry, nullptr);
  }
  uint32_t seen = 0;
  t.for_each([&](const FlowEntry& e) {
    EXPECT_EQ(e.state, FlowState::kEstablished);
    return ++seen < 5;
  });
  EXPECT_EQ(seen, 5u);  // stopped when asked
}

TEST(FlowTable, FullTableRefusesThenAcceptsAfterRemove) {
  constexpr uint32_t kCap = 1024;
  FlowTable t(kCap, kTimeouts);
  std::vector<Flow> flows;
  std::vector<FlowEntry*> entries;
  for (uint32_t i = 0; i < kCap; ++i) {
    flows.push_back(make_flow(i, static_cast<uint16_t>(1024 + i), i % 7));
    entries.push_back(add(t, flows.back(), kTcpAck, 0));  // established: never evicted
    ASSERT_NE(entries.back(), nullptr) << i;
  }
  EXPECT_EQ(t.size(), kCap);
  const Flow extra = make_flow(5000, 5000);
  EXPECT_EQ(add(t, extra, kTcpSyn, 0), nullptr);
  EXPECT_EQ(t.size(), kCap);
  for (uint32_t i = 0; i < kCap; ++i) {
    EXPECT_EQ(find(t, flows[i].fwd, 1).entry, entries[i]);
    EXPECT_EQ(find(t, flows[i].rev(), 1).entry, entries[i]);
  }
  EXPECT_EQ(find(t, extra.fwd, 1).entry, nullptr);
  t.remove(entries[500]);
  EXPECT_EQ(t.size(), kCap - 1);
  FlowEntry* e = add(t, extra, kTcpSyn, 1);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(find(t, extra.rev(), 1).entry, e);
  EXPECT_EQ(t.size(), kCap);
}

// A full table of half-open flows (a SYN flood) makes room for a new flow by evicting one;
// established flows, UDP flows and the newest half-open ones stay.
TEST(FlowTable, FullTableEvictsUnestablishedOnly) {
  constexpr uint32_t kCap = 1024;
  FlowTable t(kCap, kTimeouts);
  std::vector<Flow> live;
  for (uint32_t i = 0; i < 64; ++i) {
    live.push_back(make_flow(i, static_cast<uint16_t>(1024 + i), i % 7, i % 2 ? kIpProtoUdp : kIpProtoTcp));
    ASSERT_NE(add(t, live.back(), kTcpAck, 0), nullptr);
  }
  // The flood, then more of it: every insert succeeds, evicting half-open entries.
  std::mt19937 rng(3);
  uint32_t inserted = 0;
  for (uint32_t i = 0; i < 20 * kCap; ++i) {
    Flow f = make_flow(0x10000 + i, static_cast<uint16_t>(rng()), i % 7);
    inserted += add(t, f, kTcpSyn, 1 + i / kCap) != nullptr;
  }
  EXPECT_EQ(t.size(), kCap);
  EXPECT_GT(inserted, 19 * kCap);
  EXPECT_EQ(t.evictions(), inserted - (kCap - 64));
  for (const Flow& f : live) {
    const FlowHit h = find(t, f.fwd, 21);
    ASSERT_NE(h.entry, nullptr);
    EXPECT_EQ(h.entry->state, f.fwd.proto == kIpProtoUdp ? FlowState::kUdp : FlowState::kEstablished);
    EXPECT_NE(find(t, f.rev(), 21).entry, nullptr);
  }
  // Every entry is still found by both keys after all the evictions.
  uint32_t n = 0;
  t.for_each([&](const FlowEntry& e) {
    EXPECT_EQ(find(t, e.fwd, 21).entry, &e);
    EXPECT_EQ(find(t, e.reverse_key(), 21).entry, &e);
    return ++n > 0;
  });
  EXPECT_EQ(n, kCap);
}

// The least recently seen half-open entry goes first; an expired one before any of them.
TEST(FlowTable, EvictionPrefersExpiredThenOldest) {
  FlowTable t(16, kTimeouts);
  std::vector<Flow> flows;
  std::vector<FlowEntry*> entries;
  for (uint32_t i = 0; i < 16; ++i) {
    flows.push_back(make_flow(i, static_cast<uint16_t>(100 + i)));
    // Half-open, each seen at a different time; entry 9 is also long past its timeout.
    entries.push_back(add(t, flows.back(), i == 5 ? kTcpAck : kTcpSyn, 1000 + i));
    ASSERT_NE(entries.back(), nullptr);
  }
  entries[9]->last_seen_s = 900;  // expired at 1016 (transitory timeout 30)
  // A new flow whose candidate buckets include both of entry 9's forward key, so the
  // victim search surely sees it.
  auto buckets_of = [&](const Flow& f) {
    auto [a1, a2] = t.candidate_buckets(key_hash(f.fwd));
    auto [b1, b2] = t.candidate_buckets(key_hash(f.rev()));
    return std::unordered_set<uint32_t>{a1, a2, b1, b2};
  };
  const auto [n1, n2] = t.candidate_buckets(key_hash(flows[9].fwd));
  Flow a{};
  for (uint32_t i = 100; i < 100000; ++i) {
    a = make_flow(i, static_cast<uint16_t>(i));
    const auto bs = buckets_of(a);
    if (bs.contains(n1) && bs.contains(n2)) break;
  }
  ASSERT_TRUE(buckets_of(a).contains(n1) && buckets_of(a).contains(n2));
  const Flow b = make_flow(51, 51);
  ASSERT_NE(add(t, a, kTcpSyn, 1016), nullptr);
  EXPECT_EQ(t.evictions(), 1u);
  EXPECT_EQ(find(t, flows[9].fwd, 1016).entry, nullptr) << "the expired entry goes first";
  ASSERT_NE(add(t, b, kTcpSyn, 1016), nullptr);
  EXPECT_EQ(t.evictions(), 2u);
  EXPECT_NE(find(t, flows[5].fwd, 1016).entry, nullptr) << "established stays";
  uint32_t gone = 0;
  for (uint32_t i = 0; i < 16; ++i) gone += find(t, flows[i].fwd, 1016).entry == nullptr;
  EXPECT_EQ(gone, 2u);
}

// A table full of established flows refuses: nothing may be evicted.
TEST(FlowTable, FullOfEstablishedRefusesSyn) {
  FlowTable t(64, kTimeouts);
  for (uint32_t i = 0; i < 64; ++i) ASSERT_NE(add(t, make_flow(i, 7), kTcpAck, 0), nullptr);
  EXPECT_EQ(add(t, make_flow(99, 99), kTcpSyn, 1), nullptr);
  EXPECT_EQ(t.evictions(), 0u);
  EXPECT_EQ(t.size(), 64u);
}

TEST(FlowTable, RemoveMakesBothKeysMiss) {
  FlowTable t(64, kTimeouts);
  const Flow a = make_flow(1, 1);
  const Flow b = make_flow(2, 2);
  FlowEntry* ea = add(t, a, kTcpSyn, 0);
  FlowEntry* eb = add(t, b, kTcpSyn, 0);
  ASSERT_NE(ea, nullptr);
  ASSERT_NE(eb, nullptr);
  t.remove(ea);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(find(t, a.fwd, 0).entry, nullptr);
  EXPECT_EQ(find(t, a.rev(), 0).entry, nullptr);
  EXPECT_EQ(find(t, b.fwd, 0).entry, eb);
  EXPECT_EQ(find(t, b.rev(), 0).entry, eb);
  uint32_t n = 0;
  t.for_each([&](const FlowEntry& e) {
    EXPECT_EQ(&e, eb);
    ++n;
    return true;
  });
  EXPECT_EQ(n, 1u);
}

TEST(FlowTable, StaleHintOfAReusedEntryIsNotTrusted) {
  // prefetch_entry() leaves a hint (the slot it found) for the lookup later in the burst;
  // in between, the flow may end and its entry be reused by another flow.
  FlowTable t(16, {});
  const Flow a = make_flow(1, 1000), b = make_flow(2, 2000);
  FlowEntry* ea = add(t, a, kTcpSyn, 10);
  ASSERT_NE(ea, nullptr);
  EXPECT_TRUE(t.prefetch_entry(key_hash(a.fwd)));
  EXPECT_TRUE(t.prefetch_entry(key_hash(a.rev())));
  t.remove(ea);
  FlowEntry* eb = add(t, b, kTcpSyn, 10);
  ASSERT_EQ(eb, ea);  // the free list hands the same entry back
  EXPECT_EQ(find(t, a.fwd, 10).entry, nullptr);
  EXPECT_EQ(find(t, a.rev(), 10).entry, nullptr);
  EXPECT_EQ(find(t, b.fwd, 10).entry, eb);
  // And a hint of a key that is then freed outright misses too.
  EXPECT_TRUE(t.prefetch_entry(key_hash(b.fwd)));
  t.remove(eb);
  EXPECT_EQ(find(t, b.fwd, 10).entry, nullptr);
  EXPECT_FALSE(t.prefetch_entry(key_hash(b.fwd)));  // certainly absent now
}

TEST(FlowTable, InsertsSinceClearRecentAreFlaggedForBothKeys) {
  // The worker trusts prefetch_entry()'s "certainly absent" for a later packet of the
  // burst only while no insert may have added its key: both keys of every insert count.
  FlowTable t(64, kTimeouts);
  const Flow a = make_flow(1, 1000), b = make_flow(2, 2000);
  EXPECT_FALSE(t.prefetch_entry(key_hash(a.fwd)));
  t.clear_recent();
  EXPECT_FALSE(t.maybe_inserted(key_hash(a.fwd)));
  EXPECT_FALSE(t.maybe_inserted(key_hash(a.rev())));
  ASSERT_NE(add(t, a, kTcpSyn, 1), nullptr);
  EXPECT_TRUE(t.maybe_inserted(key_hash(a.fwd)));
  EXPECT_TRUE(t.maybe_inserted(key_hash(a.rev())));
  t.clear_recent();
  EXPECT_FALSE(t.maybe_inserted(key_hash(a.fwd)));
  // Every later insert is flagged again.
  ASSERT_NE(add(t, b, kTcpSyn, 1), nullptr);
  EXPECT_TRUE(t.maybe_inserted(key_hash(b.fwd)));
}

TEST(FlowTable, ReverseKeyOfALiveFlowIsNotTakenOver) {
  FlowTable t(64, kTimeouts);
  // Same client address and port towards two VIP ports, both pinned to the same pod:port.
  const Flow a = make_flow(1, 40000);
  Flow b = a;
  b.fwd.dst_port = hton16(443);
  ASSERT_EQ(a.rev(), b.rev());
  FlowEntry* ea = add(t, a, kTcpSyn, 0);
  ASSERT_NE(ea, nullptr);
  EXPECT_EQ(add(t, b, kTcpSyn, 10), nullptr);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(find(t, b.fwd, 10).entry, nullptr);
  EXPECT_EQ(find(t, a.rev(), 10).entry, ea);
  // Once the holder has timed out its reverse key is free.
  FlowEntry* eb = add(t, b, kTcpSyn, 41);
  ASSERT_NE(eb, nullptr);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(find(t, b.rev(), 41).entry, eb);
  EXPECT_EQ(find(t, a.fwd, 41).entry, nullptr);
}

// Flows whose two keys both hash into the same pair of buckets: once 8 of them fill that
// pair (16 slots), no move can help and the next one must fail without leaving a trace.
TEST(FlowTable, BothBucketsFullFailsWithoutPartialState) {
  FlowTable t(16, kTimeouts);
  ASSERT_EQ(t.index_buckets(), 8u);  // 16 entries: 32 keys at most 90% of 8 buckets x 8 slots
  auto pair_of = [&](const FlowKey& k) {
    auto [a, b] = t.candidate_buckets(key_hash(k));
    return std::make_pair(std::min(a, b), std::max(a, b));
  };
  std::pair<uint32_t, uint32_t> target{0, 0};
  std::vector<Flow> closed;  // both keys in the target pair
  Flow fwd_elsewhere{};      // forward key outside the pair, reverse key inside
  bool have_elsewhere = false;
  for (uint32_t i = 0; i < 1000000 && (closed.size() < 9 || !have_elsewhere); ++i) {
    const Flow f = make_flow(i, static_cast<uint16_t>(i * 7919));
    const auto pf = pair_of(f.fwd);
    const auto pr = pair_of(f.rev());
    if (pf.first == pf.second) continue;
    if (closed.empty()) {
      if (pf != pr) continue;
      target = pf;
    }
    if (pr != target) continue;
    if (pf == target) {
      if (closed.size() < 9) closed.push_back(f);
    } else if (!have_elsewhere) {
      fwd_elsewhere = f;
      have_elsewhere = true;
    }
  }
  ASSERT_EQ(closed.size(), 9u);
  ASSERT_TRUE(have_elsewhere);

  std::vector<FlowEntry*> entries;
  for (uint32_t i = 0; i < 8; ++i) {
    entries.push_back(add(t, closed[i], kTcpAck, 0));
    ASSERT_NE(entries.back(), nullptr) << i;
  }
  EXPECT_EQ(add(t, closed[8], kTcpSyn, 0), nullptr);
  // The forward key fits elsewhere but the reverse key does not: the forward slot is undone.
  EXPECT_EQ(add(t, fwd_elsewhere, kTcpSyn, 0), nullptr);
  EXPECT_EQ(t.size(), 8u);
  EXPECT_EQ(find(t, closed[8].fwd, 0).entry, nullptr);
  EXPECT_EQ(find(t, fwd_elsewhere.fwd, 0).entry, nullptr);
  for (uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(find(t, closed[i].fwd, 0).entry, entries[i]);
    EXPECT_EQ(find(t, closed[i].rev(), 0).entry, entries[i]);
  }
  // Room again after a remove.
  t.remove(entries[3]);
  FlowEntry* e = add(t, fwd_elsewhere, kTcpSyn, 0);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(find(t, fwd_elsewhere.fwd, 0).entry, e);
  EXPECT_EQ(find(t, fwd_elsewhere.rev(), 0).entry, e);
}

// The model: what the table should hold, by forward key, plus which flow each key belongs to.
struct KeyHash {
  size_t operator()(const FlowKey& k) const { return hash_flow(k); }
};
struct ModelFlow {
  FlowNat nat;
  FlowState state;
  uint32_t created_s;
  uint32_t last_seen_s;
};
struct ModelRef {
  FlowKey fwd;
  FlowDir dir;
};

class Model {
 public:
  Model(uint32_t capacity, FlowTimeouts to) : capacity_(capacity), to_(to) {}

  uint32_t timeout(FlowState s) const {
    switch (s) {
      case FlowState::kEstablished:
        return to_.tcp_established_s;
      case FlowState::kUdp:
        return to_.udp_s;
      case FlowState::kSynSent:
      case FlowState::kSynAckSeen:
      case FlowState::kClosing:
        break;
    }
    return to_.tcp_transitory_s;
  }
  bool expired(const ModelFlow& f, uint32_t now) const {
    return now - f.last_seen_s > timeout(f.state);
  }
  static FlowKey rev_of(const FlowKey& fwd, const FlowNat& nat) {
    return FlowKey{nat.backend_ip, fwd.src_ip, nat.backend_port, fwd.src_port, fwd.proto};
  }

  const ModelRef* lookup(const FlowKey& k, uint32_t now) {
    auto it = keys_.find(k);
    if (it == keys_.end()) return nullptr;
    if (expired(flows_.at(it->second.fwd), now)) {
      erase(it->second.fwd);
      return nullptr;
    }
    return &it->second;
  }
  bool insert(const FlowKey& fwd, const FlowNat& nat, uint8_t flags, uint32_t now) {
    const FlowKey rev = rev_of(fwd, nat);
    auto it = keys_.find(rev);
    if (it != keys_.end()) {
      if (!expired(flows_.at(it->second.fwd), now)) return false;
      erase(it->second.fwd);
    }
    if (flows_.size() == capacity_) return false;
    FlowState s = FlowState::kEstablished;
    if (fwd.proto != kIpProtoTcp) {
      s = FlowState::kUdp;
    } else if (flags & (kTcpFin | kTcpRst)) {
      s = FlowState::kClosing;
    } else if ((flags & (kTcpSyn | kTcpAck)) == kTcpSyn) {
      s = FlowState::kSynSent;
    }
    flows_[fwd] = ModelFlow{nat, s, now, now};
    keys_[fwd] = ModelRef{fwd, FlowDir::kForward};
    keys_[rev] = ModelRef{fwd, FlowDir::kReverse};
    return true;
  }
  void update(const FlowKey& fwd, FlowDir dir, uint8_t flags, uint32_t now) {
    ModelFlow& f = flows_.at(fwd);
    f.last_seen_s = now;
    if (f.state == FlowState::kUdp || f.state == FlowState::kClosing) return;
    const bool syn = flags & kTcpSyn;
    const bool ack = flags & kTcpAck;
    if (flags & (kTcpFin | kTcpRst)) {
      f.state = FlowState::kClosing;
    } else if (f.state == FlowState::kSynSent && dir == FlowDir::kReverse && syn && ack) {
      f.state = FlowState::kSynAckSeen;
    } else if (f.state == FlowState::kSynAckSeen && dir == FlowDir::kForward && ack && !syn) {
      f.state = FlowState::kEstablished;
    }
  }
  void erase(FlowKey fwd) {
    const ModelFlow& f = flows_.at(fwd);
    keys_.erase(rev_of(fwd, f.nat));
    keys_.erase(fwd);
    flows_.erase(fwd);
  }
  const std::unordered_map<FlowKey, ModelFlow, KeyHash>& flows() const { return flows_; }

 private:
  uint32_t capacity_;
  FlowTimeouts to_;
  std::unordered_map<FlowKey, ModelFlow, KeyHash> flows_;
  std::unordered_map<FlowKey, ModelRef, KeyHash> keys_;
};

void expect_same_contents(const FlowTable& t, const Model& m) {
  ASSERT_EQ(t.size(), m.flows().size());
  uint32_t n = 0;
  t.for_each([&](const FlowEntry& e) {
    ++n;
    auto it = m.flows().find(e.fwd);
    EXPECT_NE(it, m.flows().end());
    if (it == m.flows().end()) return false;
    EXPECT_EQ(e.nat.backend_ip, it->second.nat.backend_ip);
    EXPECT_EQ(e.nat.vip_port, it->second.nat.vip_port);
    EXPECT_EQ(e.state, it->second.state);
    EXPECT_EQ(e.created_s, it->second.created_s);
    EXPECT_EQ(e.last_seen_s, it->second.last_seen_s);
    return true;
  });
  EXPECT_EQ(n, m.flows().size());
}

struct RandomRunStats {
  uint32_t evicted = 0;
  uint32_t hits = 0;
  uint32_t inserts = 0;
  uint32_t refused_full = 0;
  uint32_t refused_taken = 0;
  uint32_t expired_by_hand = 0;
};

// The forward keys of every entry the table holds (expired or not).
std::unordered_set<FlowKey, KeyHash> live_keys(const FlowTable& t) {
  std::unordered_set<FlowKey, KeyHash> keys;
  t.for_each([&](const FlowEntry& e) {
    keys.insert(e.fwd);
    return true;
  });
  return keys;
}

// Erases from the model the flows the table evicted, checking each was evictable.
uint32_t reconcile_evictions(const FlowTable& t, Model& m, uint32_t now) {
  const std::unordered_set<FlowKey, KeyHash> present = live_keys(t);
  std::vector<FlowKey> gone;
  for (const auto& [k, f] : m.flows()) {
    if (present.contains(k)) continue;
    EXPECT_TRUE(m.expired(f, now) || f.state == FlowState::kSynSent ||
                f.state == FlowState::kSynAckSeen || f.state == FlowState::kClosing);
    gone.push_back(k);
  }
  for (const FlowKey& k : gone) m.erase(k);
  return static_cast<uint32_t>(gone.size());
}

// 100k packets, closes, clock steps and expiry passes, each checked against the model. A
// small key space (`clients` x 12 ports x 2 VIP ports x TCP/UDP) makes flows collide on
// reverse keys, fill the table and come back.
void run_random_ops(uint32_t capacity, uint32_t clients, uint32_t seed, RandomRunStats* st) {
  constexpr FlowTimeouts kShort{50, 10, 20};
  FlowTable t(capacity, kShort);
  ASSERT_LE(2.0 * capacity / (8 * t.index_buckets()), 0.9);
  Model m(capacity, kShort);
  std::mt19937 rng(seed);
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  constexpr uint8_t kFlags[] = {kTcpSyn,           kSynAck, kTcpAck, kTcpAck | kTcpPsh,
                                kTcpFin | kTcpAck, kTcpRst, 0};
  uint32_t now = 1000;

  for (int op = 0; op < 100000; ++op) {
    const uint32_t client = 1 + pick(clients);
    const auto cport = static_cast<uint16_t>(1 + pick(12));
    const uint16_t vport = pick(2) == 0 ? kVipPort : hton16(443);
    const uint8_t proto = pick(4) == 0 ? kIpProtoUdp : kIpProtoTcp;
    const FlowKey fwd{hton32(0xc0a80000 | client), kVip, hton16(cport), vport, proto};
    const FlowNat nat{kVip, hton32(0x0a040100 | (1 + pick(3))), vport, kTargetPort, vport};
    const uint8_t flags = kFlags[pick(sizeof(kFlags))];
    const uint32_t r = pick(100);

    if (r < 70) {  // a packet, forward or reverse, as the worker handles it
      const bool forward = r < 45;
      const FlowKey key = forward ? fwd : Model::rev_of(fwd, nat);
      const uint64_t hash = key_hash(key);
      t.prefetch(hash);
      t.prefetch_entry(hash);
      const FlowHit h = t.lookup(key, hash, now);
      const ModelRef* ref = m.lookup(key, now);
      ASSERT_EQ(h.entry != nullptr, ref != nullptr) << "op " << op;
      if (h.entry != nullptr) {
        ++st->hits;
        ASSERT_EQ(h.dir, ref->dir);
        ASSERT_EQ(h.entry->fwd, ref->fwd);
        const FlowKey owner = ref->fwd;
        if (is_reopen(*h.entry, h.dir, flags)) {
          t.remove(h.entry);
          m.erase(owner);
          FlowEntry* e = t.insert(owner, key_hash(owner), nat, flags, now);
          ASSERT_EQ(e != nullptr, m.insert(owner, nat, flags, now)) << "op " << op;
        } else {
          t.update(h.entry, h.dir, flags, now);
          m.update(owner, h.dir, flags, now);
        }
      } else if (forward) {
        const bool was_full = t.size() == capacity;
        const uint64_t evictions = t.evictions();
        FlowEntry* e = t.insert(fwd, key_hash(fwd), nat, flags, now);
        if (t.evictions() != evictions) {
          // Whatever went must have been expired or not established in the model.
          st->evicted += reconcile_evictions(t, m, now);
          if (e == nullptr) m.insert(fwd, nat, flags, now) && (m.erase(fwd), true);
        }
        const bool ok = e != nullptr ? m.insert(fwd, nat, flags, now) : false;
        ASSERT_EQ(e != nullptr, ok) << "op " << op;
        ++(ok ? st->inserts : was_full ? st->refused_full : st->refused_taken);
      }
    } else if (r < 80) {  // close from the control side
      const FlowHit h = t.lookup(fwd, key_hash(fwd), now);
      ASSERT_EQ(h.entry != nullptr, m.lookup(fwd, now) != nullptr);
      if (h.entry != nullptr) {
        t.remove(h.entry);
        m.erase(fwd);
      }
    } else if (r < 92) {
      now += pick(4);
    } else {  // incremental expiry: whatever the hand removed must have been expired
      const uint32_t n = t.expire(now, 1 + pick(40));
      const std::unordered_set<FlowKey, KeyHash> present = live_keys(t);
      std::vector<FlowKey> gone;
      for (const auto& [k, f] : m.flows()) {
        if (!present.contains(k)) {
          EXPECT_TRUE(m.expired(f, now));
          gone.push_back(k);
        }
      }
      ASSERT_EQ(gone.size(), n);
      for (const FlowKey& k : gone) m.erase(k);
      st->expired_by_hand += n;
    }
    if (op % 1000 == 0) {
      expect_same_contents(t, m);
      uint32_t beyond_span = 0;
      t.for_each_in(t.used_span(), t.capacity(),
                    [&](const FlowEntry&) { return ++beyond_span, true; });
      ASSERT_EQ(beyond_span, 0u) << "op " << op;
      ASSERT_EQ(t.index_slots_used(), 2 * t.size()) << "op " << op;
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  expect_same_contents(t, m);
}

void expect_every_path_taken(const RandomRunStats& st) {
  std::printf("hits %u inserts %u refused: full %u, reverse key taken %u; expired by hand %u; "
              "evicted %u\n",
              st.hits, st.inserts, st.refused_full, st.refused_taken, st.expired_by_hand,
              st.evicted);
  EXPECT_GT(st.hits, 5000u);
  EXPECT_GT(st.inserts, 1000u);
  EXPECT_GT(st.refused_full, 20u);  // rarer since evictions make room
  EXPECT_GT(st.refused_taken, 100u);
  EXPECT_GT(st.expired_by_hand, 100u);
  EXPECT_GT(st.evicted, 100u);
}

TEST(FlowTable, RandomOperationsAgreeWithModel) {
  RandomRunStats st;
  run_random_ops(64, 6, 12345, &st);
  expect_every_path_taken(st);
}

// 115 entries: 230 keys in 32 buckets of 8, a 90% loaded index, so inserts keep moving keys
// to their other bucket and lookups and removes must still find them.
TEST(FlowTable, RandomOperationsAgreeWithModelOnATightIndex) {
  RandomRunStats st;
  run_random_ops(115, 11, 777, &st);
  expect_every_path_taken(st);
}

// The n-th flow of a fill: a distinct client address per flow keeps all keys distinct.
Flow fill_flow(std::mt19937& rng, uint32_t n) {
  Flow f;
  f.fwd =
      FlowKey{hton32(0x0a000000 + n), kVip, static_cast<uint16_t>(rng()), kVipPort, kIpProtoTcp};
  f.nat = FlowNat{kVip, static_cast<uint32_t>(rng()), kVipPort, kTargetPort, 1};
  return f;
}

// Inserts distinct random flows until the first refusal, checks that every one is still
// found by both keys (after all the moves the later inserts made), returns how many fit.
uint32_t fill_and_check(FlowTable& t, uint32_t seed) {
  std::mt19937 rng(seed);
  uint32_t n = 0;
  while (n <= t.capacity() && add(t, fill_flow(rng, n), kTcpAck, 0) != nullptr) ++n;
  std::printf("fill: %u of %u entries (%.2f%%), index load %.1f%%\n", n, t.capacity(),
              100.0 * n / t.capacity(), 100.0 * 2 * n / (8.0 * t.index_buckets()));
  rng.seed(seed);
  uint32_t lost = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const Flow f = fill_flow(rng, i);
    const FlowHit fh = find(t, f.fwd, 1);
    const FlowHit rh = find(t, f.rev(), 1);
    lost += fh.entry == nullptr || fh.entry != rh.entry || rh.dir != FlowDir::kReverse;
  }
  EXPECT_EQ(lost, 0u);
  return n;
}

TEST(FlowTable, MillionEntryTableFillsCompletely) {
  FlowTable t(1u << 20, kTimeouts);
  const uint32_t n = fill_and_check(t, 1);
  EXPECT_GE(n, t.capacity() * 99ull / 100);
  EXPECT_EQ(n, t.capacity());  // the entries run out before the index does
  EXPECT_EQ(t.size(), n);
}

// Just under a power of two: the index is as full (90%) as the sizing ever lets it get.
TEST(FlowTable, TightestIndexStillFillsCompletely) {
  FlowTable t(943718, kTimeouts);
  ASSERT_EQ(t.index_buckets(), 1u << 18);
  EXPECT_EQ(fill_and_check(t, 2), t.capacity());
}

// The overflow flags: at the load a table sized for twice its flows has when half full
// (index ~25% loaded), hardly any bucket ever overflowed, so a lookup (hit or certain
// miss) reads one bucket; near full, many did, and every key is still found (fill_and_check).
TEST(FlowTable, BucketsOverflowOnlyWhenCrowded) {
  FlowTable t(1u << 16, kTimeouts);
  std::mt19937 rng(3);
  uint32_t n = 0;
  while (n < t.capacity() / 2 && add(t, fill_flow(rng, n), kTcpAck, 0) != nullptr) ++n;
  ASSERT_EQ(n, t.capacity() / 2);
  const double low = double(t.overflowed_buckets()) / t.index_buckets();
  std::printf("half full: %.2f%% of buckets overflowed\n", 100 * low);
  EXPECT_LT(low, 0.01);
  while (n < t.capacity() && add(t, fill_flow(rng, n), kTcpAck, 0) != nullptr) ++n;
  EXPECT_GT(t.overflowed_buckets(), t.index_buckets() / 100);
  // Every key still found by lookup and by the burst pass (no key hidden behind a bucket
  // that claims nothing overflowed).
  rng.seed(3);
  uint32_t missed = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const Flow f = fill_flow(rng, i);
    missed += !t.prefetch_entry(key_hash(f.fwd)) || !t.prefetch_entry(key_hash(f.rev()));
    missed += find(t, f.fwd, 1).entry == nullptr;
  }
  EXPECT_EQ(missed, 0u);
  // Removal finds most keys in their first bucket by ref alone, the moved ones through
  // their full hash: every slot is freed either way, by remove() and by expiry alike.
  EXPECT_EQ(t.index_slots_used(), 2 * n);
  rng.seed(3);
  for (uint32_t i = 0; i < n; i += 2) {
    const Flow f = fill_flow(rng, i);
    fill_flow(rng, i + 1);
    FlowEntry* e = find(t, i % 4 == 0 ? f.fwd : f.rev(), 1).entry;
    ASSERT_NE(e, nullptr);
    t.remove(e);
  }
  EXPECT_EQ(t.index_slots_used(), 2 * t.size());
  EXPECT_EQ(t.expire(kTimeouts.tcp_established_s + 1, t.used_span()), n - n / 2);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.index_slots_used(), 0u);
}

// Live entries never sit beyond the used span, and the span grows only to the peak number
// of flows held at once, so the expiry hand sweeps what traffic reached, not the capacity.
TEST(FlowTable, UsedSpanFollowsThePeakNotTheCapacity) {
  FlowTable t(1000, kTimeouts);
  EXPECT_EQ(t.used_span(), 0u);
  EXPECT_EQ(t.expire(0, 100), 0u);
  uint32_t next = 0;
  std::vector<Flow> held;
  for (; next < 40; ++next) {
    held.push_back(make_flow(next, 1000, 1, kIpProtoUdp));
    ASSERT_NE(add(t, held.back(), 0, 0), nullptr);
  }
  EXPECT_EQ(t.used_span(), 40u);
  // Churn: flows come and go, never more than 40 at once.
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 10; ++k) {
      t.remove(find(t, held.front().fwd, 0).entry);
      held.erase(held.begin());
    }
    for (int k = 0; k < 10; ++k, ++next) {
      held.push_back(make_flow(next, 1000, 1, kIpProtoUdp));
      ASSERT_NE(add(t, held.back(), 0, 0), nullptr);
    }
  }
  EXPECT_EQ(t.used_span(), 40u);
  uint32_t beyond = 0;
  t.for_each_in(t.used_span(), t.capacity(), [&](const FlowEntry&) { return ++beyond, true; });
  EXPECT_EQ(beyond, 0u);
  // The hand's turn is the span, not the capacity: from slot 30, a budget of 40 slots wraps
  // at 40 and covers every flow.
  EXPECT_EQ(t.expire(0, 30), 0u);
  EXPECT_EQ(t.expire(kTimeouts.udp_s + 1, 40), 40u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(FlowTable, ZeroCapacityRefusesEverything) {
  FlowTable t(0, kTimeouts);
  EXPECT_EQ(t.capacity(), 0u);
  EXPECT_EQ(add(t, make_flow(1, 1), kTcpSyn, 0), nullptr);
  EXPECT_EQ(find(t, make_flow(1, 1).fwd, 0).entry, nullptr);
  EXPECT_EQ(t.expire(0, 100), 0u);
}

}  // namespace
}  // namespace l4lb
